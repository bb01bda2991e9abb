"""The Dask worker: each submission is one task on a Dask cluster.

The dispatcher opens one :class:`~ramp_fleet.dask.connection.DaskConnection`
(``open_shared``) that every slot shares. A slot packs its submission folder
(``setup``), submits :func:`ramp_fleet.dask.task.run_submission` as a single
task (``launch_submission``), wakes up the moment the task ends (``wait``),
and writes the returned log and ``training_output`` to ``logs_dir/S/log`` and
``predictions_dir/S`` (``collect_results``).

One task per submission and nothing else: ``n`` single-thread Dask workers
(or workers advertising ``n`` units of the ``ramp-slot`` resource) serve
``n`` dispatcher slots. The timeout is enforced on the Dask worker host; a
run the dispatcher stops (its own deadline, ``kill_submission``, teardown)
is killed there through the run's cancel event. A lost Dask worker, a lost
scheduler or a task that never starts means ``retry``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ramp_fleet.dask import archive
from ramp_fleet.dask.connection import SLOT_RESOURCE, DaskConnection
from ramp_fleet.dask.task import RunResult, RunSpec, run_submission
from ramp_fleet.errors import RampFleetError
from ramp_fleet.process import TIMEOUT_RETURNCODE
from ramp_fleet.workers.base import BaseWorker
from ramp_fleet.workers.status import WorkerStatus

logger = logging.getLogger("ramp_fleet.workers.dask")

#: The Dask worker enforces the timeout; the dispatcher waits this much longer
#: for its answer before stopping the run itself.
TIMEOUT_GRACE = 30.0
#: After setting the cancel event, how long to wait for the task's log.
KILL_GRACE = 10.0
#: How often ``wait`` looks at the stop event while the task runs.
WAKE_SECONDS = 0.2


class DaskWorker(BaseWorker):
    """Train one submission as one task of a Dask cluster."""

    def __init__(self, config: Mapping[str, Any], submission: str):
        super().__init__(config, submission)
        self._own_connection: DaskConnection | None = None
        self._archive: bytes | None = None
        self._spec: RunSpec | None = None
        self._future: Any = None
        self._done = threading.Event()
        self._result: RunResult | None = None
        #: Why the status is ``retry`` / ``error`` (read by the dispatcher).
        self.retry_reason = ""
        self.error_reason = ""
        self._started_at: float | None = None
        self._next_started_check = 0.0

    # -- shared by every slot of the dispatcher ------------------------------

    @classmethod
    def open_shared(cls, config: Mapping[str, Any], event: Any) -> DaskConnection:
        connection = DaskConnection.from_config(config)
        connection.client()  # fail now, at start-up, if the scheduler is unreachable
        return connection

    @classmethod
    def close_shared(cls, shared: Any) -> None:
        if isinstance(shared, DaskConnection):
            shared.close()

    @property
    def connection(self) -> DaskConnection:
        if isinstance(self.shared, DaskConnection):
            return self.shared
        if self._own_connection is None:  # used on its own, outside a dispatcher
            self._own_connection = DaskConnection.from_config(self.config)
        return self._own_connection

    @property
    def run_result(self) -> RunResult | None:
        """What the task returned (host, duration, log...), once it has."""
        return self._result

    # -- the guide's API -----------------------------------------------------------

    def setup(self) -> None:
        folder = Path(self.config["submissions_dir"]) / self.submission
        try:
            self._archive = archive.pack(folder)
        except (OSError, archive.UnsafeArchive) as exc:
            self._error(f"cannot pack {folder}: {exc}")
            raise RampFleetError(f"{self.submission}: {self.error_reason}") from exc
        self.connection.client()
        super().setup()

    def launch_submission(self) -> None:
        if self._archive is None:
            raise RuntimeError("launch_submission() before setup()")
        self._spec = RunSpec(
            submission=self.submission,
            run_id=_run_id(self.config.get("event_name"), self.submission),
            kit_dir=str(self.config["kit_dir"]),
            data_dir=str(self.config["data_dir"]),
            conda_env=self.config.get("conda_env"),
            timeout=self.timeout,
            n_threads=self.config.get("n_threads"),
        )
        connection = self.connection
        resources = {SLOT_RESOURCE: 1} if connection.uses_slot_resource() else None
        self._future = connection.client().submit(
            run_submission, self._spec, self._archive,
            key=self._spec.run_id, pure=False, resources=resources, retries=0,
        )
        self._future.add_done_callback(lambda _future: self._done.set())
        super().launch_submission()

    def _is_submission_finished(self) -> bool:
        return self._future is not None and bool(self._future.done())

    def poll(self) -> str:
        if self._status == WorkerStatus.RUNNING and self._is_submission_finished():
            self._settle()
        return self.status

    def wait(self, poll_interval: float, stop: threading.Event) -> str:
        """Wake up the moment the task ends; stop the run past its deadline."""
        while self.poll() == WorkerStatus.RUNNING:
            if self._past_deadline(poll_interval):
                break
            if stop.is_set():
                break
            self._done.wait(min(WAKE_SECONDS, poll_interval))
        return self.status

    def kill_submission(self, timed_out: bool = False) -> None:
        """Stop the run on the Dask worker host (not just forget its future)."""
        if self._status != WorkerStatus.RUNNING:
            return
        self._set_cancel()
        if not timed_out:
            self.status = "killed"
            return
        self._done.wait(KILL_GRACE)  # the task returns its log once it has killed the run
        if self._future.done() and self._future.status == "finished":
            self._settle()
        if self._status == WorkerStatus.RUNNING:
            self.status = "timeout"

    def collect_results(self) -> tuple[int, str]:
        if self._status == WorkerStatus.RUNNING:
            self.wait(1.0, threading.Event())
        if self._status in (WorkerStatus.FINISHED, WorkerStatus.TIMEOUT):
            returncode, error_msg = self._write_outputs()
        elif self._status == WorkerStatus.RETRY:
            returncode, error_msg = 1, self.retry_reason
        else:
            returncode, error_msg = 1, self.error_reason or f"no result (status {self.status})"
        super().collect_results()
        return returncode, error_msg

    def teardown(self) -> None:
        try:
            self._release()
        finally:
            if self._own_connection is not None:
                self._own_connection.close()
                self._own_connection = None
            super().teardown()

    # -- helpers -------------------------------------------------------------------

    def _settle(self) -> None:
        """Turn the finished future into a status and keep its result."""
        future = self._future
        if future.status == "finished":
            try:
                result: RunResult = future.result(timeout=60)
            except Exception as exc:  # the result was lost with its worker
                self._retry(f"the result was lost ({exc.__class__.__name__}: {exc})")
                return
            self._result = result
            if result.lost:
                self._retry(result.error or "the Dask worker was lost")
            elif result.error:
                self._error(result.error)
            elif result.timed_out:
                self.status = "timeout"
            else:
                self.status = "finished"
        elif future.status == "error":
            error = future.exception(timeout=60)
            if error.__class__.__name__ in ("KilledWorker", "CommClosedError"):
                self._retry(f"the Dask worker was lost ({error})")
            else:
                self._error(f"the Dask task failed: {error.__class__.__name__}: {error}")
        else:  # cancelled or lost: the scheduler went away
            self._retry(f"the Dask task was {future.status} (scheduler restarted?)")

    def _retry(self, why: str) -> None:
        logger.warning("%s: %s; will retry", self.submission, why)
        self.retry_reason = why
        self.status = "retry"

    def _error(self, why: str) -> None:
        logger.error("%s: %s", self.submission, why)
        self.error_reason = why
        self.status = "error"

    def _past_deadline(self, poll_interval: float) -> bool:
        """True (and the run stopped) when the worker host did not answer in time."""
        now = time.monotonic()
        if self._started_at is None and now >= self._next_started_check:
            self._next_started_check = now + poll_interval
            if self._run_started():
                self._started_at = now
        if self._started_at is None:
            if self.elapsed() > self.timeout + TIMEOUT_GRACE:
                self._set_cancel()
                self._retry("no Dask worker started the run (are any workers connected?)")
                return True
            return False
        if now - self._started_at > self.timeout + TIMEOUT_GRACE:
            self.kill_submission(timed_out=True)
            return True
        return False

    def _write_outputs(self) -> tuple[int, str]:
        result = self._result
        if result is None:  # our own deadline: the worker host never answered
            log = (f"ramp-fleet: the run was stopped after {self.timeout:g} s "
                   "without an answer from the Dask worker\n").encode()
            result = RunResult(returncode=TIMEOUT_RETURNCODE, log=log, timed_out=True)
        returncode = TIMEOUT_RETURNCODE if result.timed_out else result.returncode
        _write_log(Path(self.config["logs_dir"]) / self.submission, result.log)
        predictions = Path(self.config["predictions_dir"]) / self.submission
        if returncode == 0 and result.training_output is not None:
            _write_predictions(predictions, result.training_output)
        elif predictions.exists():
            shutil.rmtree(predictions)
        if returncode == 0:
            return 0, ""
        error_msg = error_message(result.log.decode("utf-8", "replace"))
        if result.timed_out:
            error_msg += f"\nWorker killed due to timeout after {self.timeout:g}s."
        return returncode, error_msg

    def _set_cancel(self) -> None:
        if self._spec is None:
            return
        try:
            self._event(self._spec.cancel_event).set()
        except Exception as exc:
            logger.error("%s: could not ask the Dask worker to stop the run: %s",
                         self.submission, exc)

    def _run_started(self) -> bool:
        if self._spec is None:
            return False
        try:
            return bool(self._event(self._spec.started_event).is_set())
        except Exception:  # a disconnected client: try again next time
            return False

    def _event(self, name: str) -> Any:
        from distributed import Event

        return Event(name, client=self.connection.client())

    def _release(self) -> None:
        future, self._future = self._future, None
        if future is None or self._spec is None:
            return
        if not future.done():
            self._set_cancel()  # the task kills the run and clears the events itself
            future.cancel()
            return
        future.release()
        client = self.connection.current()
        if client is None:
            return
        from distributed import Event

        for name in (self._spec.cancel_event, self._spec.started_event):
            try:
                Event(name, client=client).clear()
            except Exception as exc:
                logger.debug("clearing Dask event %s: %s", name, exc)


def error_message(log: str) -> str:
    """What RAMP shows a participant: the log from its last traceback on."""
    start = log.rfind("Traceback (most recent call last)")
    return log[start:] if start >= 0 else log[-4000:]


def _run_id(event_name: str | None, submission: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{event_name or 'event'}-{submission}")
    return f"ramp-fleet-{safe}-{uuid.uuid4().hex[:12]}"


def _write_log(folder: Path, log: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".log.{uuid.uuid4().hex}.tmp"
    temporary.write_bytes(log)
    os.replace(temporary, folder / "log")


def _write_predictions(destination: Path, packed: bytes) -> None:
    """Extract into a temporary sibling, then swap it in with renames."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.tmp")
    try:
        archive.extract(packed, temporary)
        if destination.exists():
            old = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.old")
            destination.rename(old)
            temporary.rename(destination)
            shutil.rmtree(old, ignore_errors=True)
        else:
            temporary.rename(destination)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
