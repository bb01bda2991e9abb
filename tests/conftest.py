"""Fixtures shared by every test: a private copy of the iris event, ready to run.

Tests run real ``ramp-test`` on the example kit; each gets its own copy so
runs, logs and stores never meet.
"""

from __future__ import annotations

import concurrent.futures.thread
import contextlib
import os
import shutil
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from tests.real_parts import SWITCH, required

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "iris"

#: A quick, correct submission (a couple of seconds in ramp-test).
QUICK_ESTIMATOR = (EXAMPLE / "submissions" / "logreg" / "estimator.py").read_text()


def write_submission(submissions_dir: Path, name: str, source: str = QUICK_ESTIMATOR) -> Path:
    folder = submissions_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "estimator.py").write_text(textwrap.dedent(source))
    return folder


def hanging_estimator(child_ignores_sigterm: bool = True, marker: str = "ramp-fleet-hang") -> str:
    """An estimator whose fit starts a child that ignores SIGTERM, then hangs.

    The child's command line ends with ``marker``, so a test finds the run and
    its child from outside with :func:`hanging_run` — the run is sandboxed: it
    can write nothing outside its own folder, and the pids it sees are those
    of its PID namespace. (rampwf refuses submissions that mention its
    blacklisted words, hence ``posix_spawn``.)
    """
    ignore = "signal.signal(signal.SIGTERM, signal.SIG_IGN); " if child_ignores_sigterm else ""
    return f'''
        import os, sys, time
        from sklearn.linear_model import LogisticRegression

        class Hang(LogisticRegression):
            def fit(self, X, y):
                code = "import signal, time; {ignore}time.sleep(600)"
                os.posix_spawn(sys.executable, [sys.executable, "-c", code, {marker!r}], os.environ)
                time.sleep(600)

        def get_estimator():
            return Hang()
    '''


def hanging_run(marker: str, running: Callable[[], bool] = lambda: True,
                deadline: float = 120.0) -> list[int]:
    """The pids of a run of :func:`hanging_estimator` and of its child, once the child exists.

    ``running`` says whether what drives the run is still going (waiting stops if not).
    """
    end = time.monotonic() + deadline
    while True:
        for proc in psutil.process_iter(["cmdline", "ppid"]):
            if (proc.info["cmdline"] or [])[-1:] == [marker]:
                return [proc.info["ppid"], proc.pid]
        assert time.monotonic() < end and running(), f"no process with {marker!r} started"
        time.sleep(0.2)


def alive(pids: list[int], deadline: float = 20.0) -> list[int]:
    """Those of ``pids`` still running once ``deadline`` s have passed (or none is left)."""

    def running(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    end = time.monotonic() + deadline
    while (left := [pid for pid in pids if running(pid)]) and time.monotonic() < end:
        time.sleep(0.2)
    return left


def _bwrap_works() -> bool:
    from ramp_fleet.sandbox.probe import check

    return check().works


#: For tests of the sandbox itself: they need a bubblewrap that works (make test installs it;
#: under it a missing one fails them, see pytest_runtest_makereport below).
needs_bwrap = pytest.mark.skipif(not _bwrap_works(), reason="bubblewrap does not work here "
                                 "(make test installs Debian's bubblewrap)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Under ``make test`` (RAMP_FLEET_REQUIRE_REAL_PARTS=1) a skip is a failure: every real
    part was installed, so a test that does not run is a test that proves nothing."""
    report = yield
    if report.skipped and required() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under {SWITCH}=1, which allows no skip: {reason}"
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    skipped = len(terminalreporter.stats.get("skipped", []))
    terminalreporter.write_line(f"real parts: {skipped} test(s) skipped"
                                + (f" ({SWITCH}=1: none allowed)" if required() else ""))

#: How long a thread a test started may take to end once the test has ended.
THREAD_GRACE = 30.0


def threads_that_hold_the_exit() -> set[threading.Thread]:
    """The live threads Python waits for before it exits: not daemons, not the main thread,
    not an executor's workers (told to stop at exit: asyncio's default executor's
    ``asyncio_N`` that Pulumi's mocks leave, a ``ThreadPoolExecutor``'s)."""
    return {thread for thread in threading.enumerate()
            if thread.is_alive() and not thread.daemon
            and thread is not threading.main_thread()
            and getattr(thread, "_target", None) is not concurrent.futures.thread._worker}


@pytest.fixture(autouse=True)
def no_thread_outlives_its_test() -> Iterator[None]:
    """A test that leaves a thread running fails here, naming it: such a thread (a
    dispatcher a failed test never stopped) would otherwise keep pytest from exiting
    after its summary, and CI would run into its time limit instead of failing."""
    before = threads_that_hold_the_exit()
    yield
    deadline = time.monotonic() + THREAD_GRACE
    left = threads_that_hold_the_exit() - before
    for thread in left:
        thread.join(max(0.0, deadline - time.monotonic()))
    left = {thread for thread in left if thread.is_alive()}
    if left:
        pytest.fail(f"threads still running {THREAD_GRACE:.0f} s after the test: "
                    + ", ".join(sorted(thread.name for thread in left)))


_exit_status = 0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    """The last guard against a hang after the summary: a thread still running now is
    named, and the run ends with a failure rather than waiting for it forever."""
    left = threads_that_hold_the_exit()
    if left:
        sys.stderr.write("threads still running after the session, exiting without them: "
                         + ", ".join(sorted(thread.name for thread in left)) + "\n")
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(_exit_status or 1)


#: How long a bwrap of a test's run may take to go once the test has ended.
BWRAP_GRACE = 10.0


def bwraps_under(folder: Path, since: float = 0.0) -> list[psutil.Process]:
    """The bwrap processes started since ``since`` (epoch s) that name ``folder`` or a path
    in it in their arguments, or work in it: a run's, whatever is left of it."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "create_time"]):
        with contextlib.suppress(psutil.Error, OSError):
            if proc.info["name"] != "bwrap" or proc.info["create_time"] < since - 1:
                continue
            if any(str(folder) in arg for arg in proc.info["cmdline"] or []) or \
                    Path(proc.cwd()).is_relative_to(folder):
                found.append(proc)
    return found


@pytest.fixture(autouse=True)
def _no_bwrap_outlives_its_test(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No process outlives its submission: a bwrap of this test's runs (any run folder under
    pytest's temporary folders) still there once the test has ended fails it, and is killed
    (a lone one, blocked in bwrap's setup, would wait forever)."""
    began = time.time()
    yield
    base = tmp_path_factory.getbasetemp()
    deadline = time.monotonic() + BWRAP_GRACE
    while (left := bwraps_under(base, began)) and time.monotonic() < deadline:
        time.sleep(0.2)
    described = []
    for proc in left:
        with contextlib.suppress(psutil.Error):
            described.append(f"pid {proc.pid} (parent {proc.ppid()}, "
                             f"{len(proc.children())} children, in {proc.cwd()})")
            proc.kill()
    assert not described, f"bwrap outlived its test: {'; '.join(described)}"


EventFactory = Callable[..., Path]


@pytest.fixture
def make_event(tmp_path: Path) -> EventFactory:
    """Build an event folder from the iris example and return its config path.

    ``submissions`` names the example submissions to copy (default: none);
    keyword sections update the config (``worker={...}``, ``dispatcher={...}``).
    """

    def build(
        submissions: tuple[str, ...] = (),
        *,
        worker: dict[str, Any] | None = None,
        dispatcher: dict[str, Any] | None = None,
        ramp: dict[str, Any] | None = None,
        **sections: Any,
    ) -> Path:
        root = tmp_path / "event"
        if not root.exists():
            shutil.copytree(EXAMPLE / "ramp-kits", root / "ramp-kits")
            shutil.copytree(EXAMPLE / "ramp-data", root / "ramp-data")
            (root / "submissions").mkdir()
        for name in submissions:
            shutil.copytree(EXAMPLE / "submissions" / name, root / "submissions" / name,
                            dirs_exist_ok=True)
        config = {
            "ramp": {"problem_name": "iris", "event_name": "iris_test",
                     "event_title": "Iris test", "event_is_public": True,
                     "submissions_dir": "submissions", **(ramp or {})},
            "worker": {"worker_type": "conda", "timeout": 120, **(worker or {})},
            "dispatcher": {"hunger_policy": "exit", "n_workers": 2, "n_threads": 1,
                           "retry_backoff": 0.1, **(dispatcher or {})},
            **sections,
        }
        path = root / "config.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return build


# Real parts shared by several suites (one instance each per session).
from tests.fixtures.aws import (  # noqa: E402
    aws,
    aws_event,
    aws_worker_keys,
    ec2,
    image_id,
    instance_hosts,
    loopback_only,
    moto_server,
    remote_kit,
    sshd,
)
from tests.fixtures.dask import iris, plain_cluster, tls_cluster  # noqa: E402
from tests.fixtures.reference import reference_event  # noqa: E402

__all__ = ["aws", "aws_event", "aws_worker_keys", "ec2", "image_id", "instance_hosts", "iris",
           "loopback_only",
           "moto_server", "plain_cluster", "reference_event", "remote_kit", "sshd", "tls_cluster"]
