"""The one Dask task that trains one submission on a Dask worker host.

:func:`run_submission` receives the submission folder as bytes, writes it
into a scratch folder of its own (through :mod:`ramp_fleet.archive`), starts
the runner of :mod:`ramp_fleet.ramp_test` (through :mod:`ramp_fleet.dask.guard`)
on the worker host (``mode: required`` without a working bwrap here: the run
is refused), which keeps the sandbox, the limits and the timeout and packs
``training_output``, and returns plain values only — the return code, the
log (bounded), the runner's report and its ``.tar.gz`` as bytes — so the
dispatcher never has to unpickle what a worker host sends.

While the run goes on, the task watches three things, so that a run the
dispatcher gave up on never keeps a CPU busy: the deadline, the cancel
event the dispatcher sets (``kill_submission``, its own timeout, its
teardown, a restarted dispatcher's reconciliation), and the state of the
Dask worker. A run is stopped by killing its whole process tree.

A Dask worker lost mid-run makes the scheduler start the task again
elsewhere; the task sees from the ``started`` event that it ran before and
returns at once with ``lost``, which the dispatcher turns into a retry.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ramp_fleet import archive
from ramp_fleet.process import TIMEOUT_RETURNCODE, kill_tree, spawn_group
from ramp_fleet.ramp_test import Collect, IsolationUnavailable, ramp_test_command
from ramp_fleet.results import LogSource, bounded_chunks
from ramp_fleet.sandbox.spec import Isolation, Report, ResultCaps

logger = logging.getLogger("ramp_fleet.dask.task")

#: How often the task checks the cancel event and the worker's state.
CHECK_SECONDS = 0.5
#: Return code of a run stopped on the dispatcher's request (SIGKILL's, as a shell shows it).
KILLED_RETURNCODE = 137
#: The runner stops a run at its timeout; the task, this much later, if it did not.
RUNNER_GRACE = 15.0


@dataclass(frozen=True)
class RunSpec:
    """What the task needs to know; small, and pickled with the task (dispatcher → host)."""

    submission: str
    #: Unique per launch; names the Dask key, the events and the scratch folder.
    run_id: str
    kit_dir: str
    data_dir: str
    conda_env: str | None
    timeout: float
    n_threads: int | None = None
    max_log_bytes: int = 4 << 20
    max_bytes: int = 1 << 30
    max_files: int = 10_000
    max_file_bytes: int = 512 << 20
    #: ``worker.isolation``; None: not isolated (an older dispatcher).
    isolation: Isolation | None = None

    @property
    def cancel_event(self) -> str:
        return f"{self.run_id}-cancel"

    @property
    def started_event(self) -> str:
        return f"{self.run_id}-started"

    @property
    def caps(self) -> ResultCaps:
        return ResultCaps(self.max_bytes, self.max_files, self.max_file_bytes)


def reply(returncode: int, *, log: bytes = b"", training_output: bytes | None = None,
          timed_out: bool = False, lost: bool = False, error: str | None = None,
          unsafe: bool = False, host: str = "", duration: float = 0.0,
          report: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the task returns: plain values that msgpack carries, never a pickled object.

    ``error`` is a problem of the worker host (no ramp-test, no sandbox where one
    is required...) or, with ``unsafe``, a result that broke a rule; ``lost`` asks
    the dispatcher to retry; ``report``: the runner's (limits, peak, outcome).
    """
    return {"returncode": returncode, "log": log, "training_output": training_output,
            "timed_out": timed_out, "lost": lost, "error": error, "unsafe": unsafe,
            "host": host, "duration": duration, "report": report}


def run_submission(spec: RunSpec, submission_archive: bytes) -> dict[str, Any]:
    """Train ``spec.submission`` on this Dask worker; the function Dask runs."""
    host = socket.gethostname()
    events = _Events(spec)
    if events.already_started():
        return reply(1, lost=True, host=host, error="the Dask worker running this submission was lost")
    try:
        if events.cancelled():
            return reply(KILLED_RETURNCODE, host=host)
        try:
            executable = find_ramp_test(spec.conda_env)
        except FileNotFoundError as exc:
            return reply(1, error=str(exc), host=host)
        scratch = Path(tempfile.mkdtemp(prefix=f"{spec.run_id}-", dir=_scratch_root()))
        try:
            return _run_in(scratch, executable, spec, submission_archive, events, host)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        events.clear()


def _run_in(scratch: Path, executable: Path, spec: RunSpec, data: bytes, events: _Events,
            host: str) -> dict[str, Any]:
    submissions_dir = scratch / "submissions"
    submissions_dir.mkdir()
    archive.receive_archive(data, submissions_dir / spec.submission, archive.Limits.unbounded())
    results = scratch / "results.tar.gz"
    try:
        command = ramp_test_command(executable, spec.submission, spec.kit_dir, spec.data_dir,
                                    submissions_dir, n_threads=spec.n_threads,
                                    isolation=spec.isolation or Isolation(mode="off"),
                                    report=scratch / "sandbox.json", timeout=spec.timeout,
                                    collect=Collect(results, "archive", spec.caps))
    except IsolationUnavailable as exc:
        return reply(1, error=f"{exc} (Dask worker host {host})", host=host)
    guarded = [sys.executable, "-m", "ramp_fleet.dask.guard", str(os.getpid()), "--", *command.argv]
    log_fd = os.open(scratch / "log", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    started = time.monotonic()
    try:
        if command.note:
            os.write(log_fd, f"ramp-fleet: {command.note} (Dask worker host {host})\n".encode())
        proc = spawn_group(guarded, cwd=scratch, env=command.environment(), output=log_fd)
        try:
            outcome = _watch(proc.pid, proc.wait, spec.timeout + RUNNER_GRACE, started, events)
        finally:
            if proc.poll() is None:
                kill_tree(proc.pid)
                proc.wait()
        log = b"".join(bounded_chunks(LogSource.from_fd(log_fd), spec.max_log_bytes))
    finally:
        os.close(log_fd)
    report = Report.read(scratch / "sandbox.json")
    timed_out = outcome == "timeout" or (report is not None and report.timed_out)
    returncode = {"timeout": TIMEOUT_RETURNCODE, "done": proc.returncode}.get(outcome,
                                                                           KILLED_RETURNCODE)
    if outcome == "done" and report is not None and report.returncode is not None:
        returncode = report.returncode
    said = None if report is None else report.to_json()
    if report is not None and report.results_refused:
        return reply(returncode, log=log, error=report.results_refused, unsafe=True, host=host,
                     report=said)
    packed = results.read_bytes() if report is not None and report.has_results else None
    return reply(returncode, log=log, training_output=packed, timed_out=timed_out,
                 host=host, duration=time.monotonic() - started, report=said)


def _watch(pid: int, wait: Any, timeout: float, started: float, events: _Events) -> str:
    """Wait for the run; stop it at the deadline, on cancel, or when the worker closes."""
    while True:
        remaining = timeout - (time.monotonic() - started)
        if remaining <= 0:
            kill_tree(pid)
            return "timeout"
        try:
            wait(timeout=min(CHECK_SECONDS, remaining))
            return "done"
        except subprocess.TimeoutExpired:
            pass
        if events.cancelled():
            kill_tree(pid)
            return "cancelled"
        if _worker_closing():
            kill_tree(pid)
            return "worker-closing"


class _Events:
    """The dispatcher's ``started`` and ``cancel`` events for one run, as seen from a task."""

    def __init__(self, spec: RunSpec):
        self._spec = spec
        self._cancel: Any = None
        self._started: Any = None
        with contextlib.suppress(ImportError, ValueError):  # not in a Dask task: no events
            from distributed import Event, get_client, get_worker

            get_worker()
            client = get_client()
            self._cancel = Event(spec.cancel_event, client=client)
            self._started = Event(spec.started_event, client=client)

    def already_started(self) -> bool:
        """True if an earlier attempt of this task started; else mark this one started."""
        if self._started is None:
            return False
        if self._started.is_set():
            return True
        self._started.set()
        return False

    def clear(self) -> None:
        """Forget both events on the scheduler (they would otherwise stay there)."""
        for event in (self._cancel, self._started):
            if event is not None:
                with contextlib.suppress(Exception):
                    event.clear()

    def cancelled(self) -> bool:
        if self._cancel is None:
            return False
        try:
            return bool(self._cancel.is_set())
        except Exception as exc:  # the scheduler is unreachable: keep running, check again
            logger.warning("%s: cannot read the cancel event (%s)", self._spec.submission, exc)
            return False


def _worker_closing() -> bool:
    try:
        from distributed import get_worker

        status = get_worker().status
    except (ImportError, ValueError):
        return False
    return status.name not in ("running", "paused", "init")


def _scratch_root() -> Path:
    """A per-worker folder for scratch data: the Dask worker's own local directory."""
    try:
        from distributed import get_worker

        root = Path(get_worker().local_directory) / "ramp-fleet"
    except (ImportError, ValueError):
        root = Path(tempfile.gettempdir()) / "ramp-fleet"
    root.mkdir(parents=True, exist_ok=True)
    return root


def find_ramp_test(conda_env: str | None) -> Path:
    """The ``ramp-test`` of ``conda_env`` (a name or a prefix) on this host.

    Unset: the one next to this Python (the Dask worker's own environment).
    """
    if not conda_env:
        candidates = [Path(sys.executable).parent / "ramp-test"]
    elif "/" in conda_env or conda_env.startswith("~"):
        candidates = [Path(conda_env).expanduser() / "bin" / "ramp-test"]
    else:
        candidates = [root / "bin" / "ramp-test" for root in _env_prefixes(conda_env)]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    looked = ", ".join(str(c) for c in candidates) or "nowhere"
    raise FileNotFoundError(
        f"no ramp-test for conda_env {conda_env!r} on {socket.gethostname()} (looked at {looked})"
    )


def _env_prefixes(name: str) -> list[Path]:
    """Where a conda environment called ``name`` may live on this host."""
    roots: list[Path] = []
    for variable in ("CONDA_ENVS_PATH", "CONDA_ENVS_DIRS"):
        roots.extend(Path(p) for p in os.environ.get(variable, "").split(os.pathsep) if p)
    for variable in ("CONDA_ROOT", "MAMBA_ROOT_PREFIX", "CONDA_PREFIX"):
        if os.environ.get(variable):
            roots.append(Path(os.environ[variable]) / "envs")
    prefix = Path(sys.prefix)
    roots.extend([prefix / "envs", prefix.parent] if prefix.parent.name == "envs"
                 else [prefix / "envs"])
    home = Path.home()
    for base in ("miniforge3", "miniconda3", "mambaforge", "anaconda3", "micromamba", ".conda"):
        roots.append(home / base / "envs")
    roots.append(Path("/opt/conda/envs"))
    prefixes = [root / name for root in dict.fromkeys(roots)]
    if name == "base":
        prefixes.insert(0, prefix.parent.parent if prefix.parent.name == "envs" else prefix)
    return prefixes
