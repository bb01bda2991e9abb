"""The one Dask task: a submission's run on a Dask worker host, through the runner.

:func:`run_submission` receives the run's inputs as plain values (the
spec's JSON and the submission's archive), puts them into a run folder in
the Dask worker's local directory, starts the runner on it
(:func:`ramp_fleet.sandbox.runner.start`) and returns plain values only — the
runner's report, the log (bounded) and its ``results.tar.gz`` as bytes — so
the dispatcher never has to unpickle what a worker host sends.

The runner keeps the run's deadline and limits. While it works, the task
watches what only a task can see: the cancel event the dispatcher sets
(``kill_submission``, its own deadline, its teardown, a restarted
dispatcher's reconciliation) and the state of the Dask worker; on either,
the runner is stopped (it kills its whole run). A Dask worker that dies
without running any clean-up takes the run with it: the runner watches its
parent.

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
import stat
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from ramp_fleet.sandbox import runner
from ramp_fleet.sandbox.logs import LogSource, bounded_chunks
from ramp_fleet.sandbox.spec import (
    HANDED_FILE,
    LOG,
    REPORT,
    RESULTS,
    SPEC,
    SUBMISSION,
    Report,
    RunSpec,
)

logger = logging.getLogger("ramp_fleet.host.dask_task")

#: How often the task checks the cancel event and the worker's state.
CHECK_SECONDS = 0.5
#: The keys of the task's reply (what the dispatcher's side checks it against).
REPLY_KEYS = frozenset({"report", "log", "results", "exit_status", "host", "lost"})


def cancel_event(run_id: str) -> str:
    return f"{run_id}-cancel"


def started_event(run_id: str) -> str:
    return f"{run_id}-started"


def reply(*, host: str, report: dict[str, Any] | None = None, log: bytes = b"",
          results: bytes | None = None, exit_status: int | None = None,
          lost: bool = False) -> dict[str, Any]:
    """What the task returns: plain values that msgpack carries, never a pickled object.

    ``lost`` asks the dispatcher to retry (the task had started before, on a
    worker since lost); ``report`` is the runner's.
    """
    return {"report": report, "log": log, "results": results, "exit_status": exit_status,
            "host": host, "lost": lost}


def run_submission(spec_json: str, submission: bytes, run_id: str,
                   handed: bytes | None = None) -> dict[str, Any]:
    """Run the submission of ``spec_json`` on this Dask worker; the function Dask runs.
    ``handed``: with ``labels: hidden``, what the trusted scorer hands the run."""
    host = socket.gethostname()
    events = _Events(run_id)
    if events.already_started():
        return reply(host=host, lost=True)
    try:
        if events.cancelled():
            return reply(host=host)
        folder = Path(tempfile.mkdtemp(prefix=f"{run_id}-", dir=_scratch_root()))
        try:
            if handed is not None:
                (folder / HANDED_FILE).write_bytes(handed)
            return _run_in(folder, RunSpec.from_json(spec_json), submission, events, host)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        events.clear()


def _run_in(folder: Path, spec: RunSpec, submission: bytes, events: _Events,
            host: str) -> dict[str, Any]:
    if spec.python_env is None and os.sep not in spec.ramp_test:  # the Dask worker's own env
        spec = replace(spec, ramp_test=os.path.join(os.path.dirname(sys.executable),
                                                    spec.ramp_test))
    spec = replace(spec, watch_parent=True, log_in_folder=True)
    (folder / SPEC).write_text(spec.to_json(), encoding="utf-8")
    (folder / SUBMISSION).write_bytes(submission)
    process = runner.start(str(folder))
    try:
        _watch(process, events)
    finally:
        runner.stop(process)
    report = Report.read(folder / REPORT)
    log = b"".join(bounded_chunks(LogSource.from_path(folder / LOG, spec.max_log_bytes),
                                  spec.max_log_bytes))
    results = None
    if report is not None and report.has_results:
        results = _read_bounded(folder / RESULTS, spec.limits.max_bytes)
    return reply(host=host, report=None if report is None else report.to_json(), log=log,
                 results=results, exit_status=process.returncode)


def _watch(process: subprocess.Popen[bytes], events: _Events) -> None:
    """Until the runner ends; it is stopped on cancel, or when the Dask worker closes."""
    while True:
        try:
            process.wait(timeout=CHECK_SECONDS)
            return
        except subprocess.TimeoutExpired:
            pass
        if events.cancelled() or _worker_closing():
            runner.stop(process)
            return


def _read_bounded(path: Path, max_bytes: int) -> bytes | None:
    """The runner's archive, if it is a regular file no larger than it may be. Opened as
    the dispatcher opens one: never following a link, never blocking on a FIFO — with
    isolation off, what survived a run could have put either in its place."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as archive:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = archive.read(max_bytes + 1)
    return data if len(data) <= max_bytes else None


class _Events:
    """The dispatcher's ``started`` and ``cancel`` events for one run, as seen from a task."""

    def __init__(self, run_id: str):
        self._run_id = run_id
        self._cancel: Any = None
        self._started: Any = None
        with contextlib.suppress(ImportError, ValueError):  # not in a Dask task: no events
            from distributed import Event, get_client, get_worker

            get_worker()
            client = get_client()
            self._cancel = Event(cancel_event(run_id), client=client)
            self._started = Event(started_event(run_id), client=client)

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
            logger.warning("%s: cannot read the cancel event (%s)", self._run_id, exc)
            return False


def _worker_closing() -> bool:
    try:
        from distributed import get_worker

        status = get_worker().status
    except (ImportError, ValueError):
        return False
    return status.name not in ("running", "paused", "init")


def _scratch_root() -> Path:
    """A per-worker folder for run folders: the Dask worker's own local directory."""
    try:
        from distributed import get_worker

        root = Path(get_worker().local_directory) / "ramp-fleet"
    except (ImportError, ValueError):
        root = Path(tempfile.gettempdir()) / "ramp-fleet"
    root.mkdir(parents=True, exist_ok=True)
    return root
