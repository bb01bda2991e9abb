"""The Dask worker: each submission is one task on a Dask cluster.

The dispatcher opens one :class:`~ramp_fleet.dask.connection.DaskConnection`
(``open_shared``) that every slot shares. A slot builds its run's inputs
(``setup``), submits :func:`ramp_fleet.host.dask_task.run_submission` with them
as a single task (``launch_submission``): the task runs the runner on its host.
The slot wakes up the moment the task ends, and hands the runner's report,
log and results to the base class to receive (``fetch_output``).

One task per submission and nothing else: ``n`` single-thread Dask workers
(or workers advertising ``n`` units of the ``ramp-slot`` resource) serve
``n`` dispatcher slots. The timeout is enforced on the Dask worker host; a
run the dispatcher stops (its own deadline, the operator, teardown, a
restarted dispatcher) is killed there through the run's cancel event. A lost
Dask worker, a lost scheduler or a task that never starts means a retry.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

from ramp_fleet.config import EventConfig
from ramp_fleet.config.sections import DaskWorkerSection
from ramp_fleet.dask.connection import SLOT_RESOURCE, DaskConnection
from ramp_fleet.errors import RampFleetError
from ramp_fleet.extras import require
from ramp_fleet.host.dask_task import (
    REPLY_KEYS,
    cancel_event,
    run_submission,
    started_event,
)
from ramp_fleet.results import RunOutput
from ramp_fleet.sandbox.logs import LogSource
from ramp_fleet.sandbox.spec import Report
from ramp_fleet.workers.base import BaseWorker, InterruptedRun, WorkerRetry
from ramp_fleet.workers.inputs import RunInputs

logger = logging.getLogger("ramp_fleet.workers.dask")

#: The Dask worker enforces the timeout; the dispatcher waits this much longer
#: for its answer before stopping the run itself.
TIMEOUT_GRACE = 30.0
#: After setting the cancel event at the timeout, how long to wait for the task's log.
KILL_GRACE = 10.0


class DaskWorker(BaseWorker):
    """Train one submission as one task of a Dask cluster."""

    section_type: ClassVar[type[DaskWorkerSection]] = DaskWorkerSection
    settings: DaskWorkerSection
    deadline_grace: ClassVar[float] = TIMEOUT_GRACE
    wake_interval: ClassVar[float | None] = 0.2
    #: Runs start on the Dask worker hosts; the sandbox is built (and bwrap checked) there.
    runs_on_this_machine: ClassVar[bool] = False

    def __init__(self, config: EventConfig, submission: str):
        super().__init__(config, submission)
        self._inputs: RunInputs | None = None
        self._run_id: str | None = None
        self._future: Any = None
        self._done = threading.Event()
        self._reply: dict[str, Any] | None = None
        self._started_at: float | None = None
        self._next_started_check = 0.0

    # -- shared by every slot of the dispatcher, and what a dead one left ---------------

    @classmethod
    def open_shared(cls, event: EventConfig) -> DaskConnection:
        settings = event.worker
        assert isinstance(settings, DaskWorkerSection)
        if settings.dask_cluster is not None:  # elastic: opened here, closed with the connection
            require("elastic", "worker.dask_cluster (an elastic Dask cluster on EC2)")
            from ramp_fleet.dask.elastic import open_connection

            return open_connection(settings, event)
        connection = DaskConnection.from_settings(settings)
        connection.client()  # fail now, at start-up, if the scheduler is unreachable
        return connection

    @classmethod
    def reconcile(cls, shared: Any, event: EventConfig,
                  interrupted: Sequence[InterruptedRun]) -> None:
        """Cancel the tasks a dead dispatcher left: each kills its run on its host."""
        from distributed import Event

        for run in interrupted:
            if run.run_state and isinstance(shared, DaskConnection):
                try:
                    Event(cancel_event(run.run_state), client=shared.client()).set()
                except Exception as exc:
                    logger.warning("could not cancel the stale run of %s: %s", run.submission, exc)

    @classmethod
    def close_shared(cls, shared: Any) -> None:
        if isinstance(shared, DaskConnection):
            shared.close()

    @property
    def connection(self) -> DaskConnection:
        connection: DaskConnection = self.shared_resources()
        return connection

    # -- the run ------------------------------------------------------------------------

    def setup(self) -> None:
        self._inputs = self.inputs(python_env=self.settings.conda_env)
        self.connection.client()
        super().setup()

    def launch_submission(self) -> None:
        if self._inputs is None:
            raise RuntimeError("launch_submission() before setup()")
        self._run_id = _run_id(self.event.event_name, self.submission)
        connection = self.connection
        resources = {SLOT_RESOURCE: 1} if connection.uses_slot_resource() else None
        self._future = connection.client().submit(
            run_submission, self._inputs.spec.to_json(), self._inputs.submission, self._run_id,
            None if self._inputs.handed is None else self._inputs.handed.read_bytes(),
            key=self._run_id, pure=False, resources=resources, retries=0,
        )
        self._future.add_done_callback(lambda _future: self._done.set())
        self.run_state = self._run_id
        super().launch_submission()

    def _is_submission_finished(self) -> bool:
        if self._future is None:
            return False
        if self._future.done():
            self._settle()
            return True
        self._check_started()
        return False

    def _wait_for_end(self, seconds: float) -> None:
        self._done.wait(seconds)

    def _run_started_at(self) -> float | None:
        """The timeout counts from when a Dask worker started the run, not from queueing."""
        return self._started_at

    def _stop_run(self, timed_out: bool) -> None:
        """Stop the run on the Dask worker host (not just forget its future)."""
        self._set_cancel()
        if timed_out and self._future is not None:
            self._done.wait(KILL_GRACE)  # the task returns its log once it has killed the run
            if self._future.done():
                self._settle()

    def fetch_output(self) -> RunOutput:
        reply = self._reply
        if reply is None:  # our own deadline: the worker host never answered
            log = (f"ramp-fleet: no answer from the Dask worker within {self.timeout:g} s "
                   f"(+{TIMEOUT_GRACE:g} s)\n").encode()
            return RunOutput(None, LogSource.from_bytes(log))
        return RunOutput(Report.from_data(reply["report"]), LogSource.from_bytes(reply["log"] or b""),
                         reply["results"], reply["exit_status"])

    def teardown(self) -> None:
        try:
            self._release()
        finally:
            super().teardown()

    # -- helpers -------------------------------------------------------------------

    def _settle(self) -> None:
        """Read the finished future once: its reply, or why it must run again."""
        if self._reply is not None:
            return
        future = self._future
        if future.status == "finished":
            try:
                reply: dict[str, Any] = future.result(timeout=60)
            except TypeError as exc:  # not plain data: refused, never unpickled
                raise RampFleetError("the Dask worker's reply is not plain data (refused: the "
                                     f"dispatcher never unpickles what a cluster sends): {exc}"
                                     ) from exc
            except Exception as exc:  # the result was lost with its worker
                raise WorkerRetry(f"the result was lost ({exc.__class__.__name__}: {exc})") from exc
            if not _plain_reply(reply):
                raise RampFleetError("the Dask worker's reply is not what the task returns")
            self.place.dask_worker = reply.get("host") or None
            if reply["lost"]:
                raise WorkerRetry("the Dask worker running this submission was lost")
            self._reply = reply
        elif future.status == "error":
            error = future.exception(timeout=60)
            if _is_lost_worker(error):
                raise WorkerRetry(f"the Dask worker was lost ({error})")
            raise RampFleetError(f"the Dask task failed: {error.__class__.__name__}: {error}")
        else:  # cancelled or lost: the scheduler went away
            raise WorkerRetry(f"the Dask task was {future.status} (scheduler restarted?)")

    def _check_started(self) -> None:
        """Note when a Dask worker starts the run; give up if none does in time."""
        now = time.monotonic()
        if self._started_at is not None or now < self._next_started_check:
            return
        self._next_started_check = now + self.event.dispatcher.time_between_collection
        if self._run_started():
            self._started_at = now
        elif self.elapsed() > self.timeout + TIMEOUT_GRACE:
            self._set_cancel()
            raise WorkerRetry("no Dask worker started the run (are any workers connected?)")

    def _set_cancel(self) -> None:
        if self._run_id is None:
            return
        try:
            self._event(cancel_event(self._run_id)).set()
        except Exception as exc:
            logger.error("%s: could not ask the Dask worker to stop the run: %s",
                         self.submission, exc)

    def _run_started(self) -> bool:
        if self._run_id is None:
            return False
        try:
            return bool(self._event(started_event(self._run_id)).is_set())
        except Exception:  # a disconnected client: try again next time
            return False

    def _event(self, name: str) -> Any:
        from distributed import Event

        return Event(name, client=self.connection.client())

    def _release(self) -> None:
        future, self._future = self._future, None
        if future is None or self._run_id is None:
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

        for name in (cancel_event(self._run_id), started_event(self._run_id)):
            try:
                Event(name, client=client).clear()
            except Exception as exc:
                logger.debug("clearing Dask event %s: %s", name, exc)


def _plain_reply(reply: Any) -> bool:
    """The task's reply: a dict of the keys :func:`~ramp_fleet.host.dask_task.reply` sets."""
    return isinstance(reply, dict) and set(reply) == REPLY_KEYS \
        and isinstance(reply["exit_status"], int | None) \
        and all(isinstance(reply[key], bytes | None) for key in ("log", "results")) \
        and isinstance(reply["report"], dict | None) and isinstance(reply["host"], str)


def _is_lost_worker(error: BaseException) -> bool:
    """Whether a task's exception means its Dask worker (or the link to it) was lost."""
    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    return isinstance(error, KilledWorker | CommClosedError)


def _run_id(event_name: str, submission: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{event_name}-{submission}")
    return f"ramp-fleet-{safe}-{uuid.uuid4().hex[:12]}"
