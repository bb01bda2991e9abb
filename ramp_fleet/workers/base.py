"""The worker contract: the RAMP guide's API, and the lifecycle written once.

A worker trains one submission. Custom workers are written as the guide's
"Create your own worker" section shows — ``setup``, ``launch_submission``,
``_is_submission_finished``, ``collect_results``, ``teardown``, each calling
``super()``, reading ``self.config["..."]`` — and may report
``self.status = 'retry'``.

Every run is the runner's (:mod:`ramp_fleet.sandbox.runner`), on the machine
where it runs: it gets the run's inputs (:meth:`BaseWorker.inputs`: the spec
built from the typed config, and the submission), and gives back one report,
the log and the results. A built-in backend only moves those between the
dispatcher and its host, as hooks:

* ``setup`` / ``launch_submission``: ship the inputs and start the runner there;
* ``_is_submission_finished`` and ``_wait_for_end``: know (and wait for) its end;
* ``_stop_run``: stop it (the dispatcher's own deadline, the operator);
* ``fetch_output``: hand back the report, the log and the results;
* ``open_shared`` / ``close_shared`` / ``reconcile``: what all slots share,
  and what a dead dispatcher left behind.

Everything else is here, once: the deadline loop (the runner keeps the
run's own; the dispatcher's is a backstop ``deadline_grace`` later),
receiving the run (:func:`ramp_fleet.results.receive`: log, predictions,
scores, one timeout message) and one retry channel (:class:`WorkerRetry`; a
guide-style ``'retry'`` status is turned into it).

The dispatcher drives :meth:`prepare` → :meth:`start` → :meth:`wait` →
:meth:`collect` → :meth:`release`, and needs nothing else.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ramp_fleet.config import EventConfig
from ramp_fleet.config.sections import CustomWorkerSection, WorkerSection
from ramp_fleet.errors import RampFleetError
from ramp_fleet.faults import log_failure
from ramp_fleet.results import Destination, RunOutput, RunResult, discard_predictions, receive
from ramp_fleet.scoring import ScoreError
from ramp_fleet.scoring.scorer import Scorer
from ramp_fleet.store.records import RunPlace
from ramp_fleet.workers.guide import GuideConfig
from ramp_fleet.workers.inputs import RunInputs, run_inputs
from ramp_fleet.workers.own_results import OwnResults
from ramp_fleet.workers.status import WorkerStatus, check_transition

logger = logging.getLogger("ramp_fleet.workers")


class WorkerRetry(RampFleetError):
    """The run could not end for a reason of the infrastructure (a lost instance or
    Dask worker, no capacity): the submission goes back to the queue."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class InterruptedRun:
    """A run a dead dispatcher left behind: its submission and what its backend stored."""

    submission: str
    run_state: str | None


class BaseWorker:
    """One submission's run; see the module docstring for what to override."""

    #: The config section this worker reads (``worker_type`` picks it).
    section_type: ClassVar[type[WorkerSection]] = CustomWorkerSection
    #: Extra seconds past the timeout before the dispatcher stops a run itself (for
    #: backends whose runner stops the run at the timeout, then packs and reports).
    deadline_grace: ClassVar[float] = 0.0
    #: The longest ``_wait_for_end`` waits at once; None: the poll interval.
    wake_interval: ClassVar[float | None] = None
    #: Runs start on the dispatcher's machine: bubblewrap is checked here, at start.
    #: (Backends whose runs start elsewhere check it there, at each run.)
    runs_on_this_machine: ClassVar[bool] = True

    def __init__(self, config: EventConfig, submission: str):
        #: The event's typed config, and the worker section of it.
        self.event = config
        self.settings: WorkerSection = config.worker
        #: The worker section by key, as the guide's workers read it.
        self.config = GuideConfig(config)
        self.submission = submission
        #: What ``open_shared`` returned, set by the dispatcher before ``setup``.
        self.shared: Any = None
        self._own_shared = False
        #: The dispatcher's trusted scorer: the predictions are scored by it, never read
        #: from the score files the run wrote (None: a worker used on its own, unscored).
        self.scorer: Scorer | None = None
        #: A success is handed back received but unscored (``RunResult.staged``): the
        #: dispatcher scores it while the slot moves on. Only where this class receives
        #: the run itself (a guide-style worker that collects its own results scores
        #: them where it published them).
        self.defer_scoring = False
        #: How the run ended, once received.
        self.result: RunResult | None = None
        #: What this backend needs to find the run again after a dispatcher dies
        #: (stored with the run, handed to ``reconcile``); opaque to everyone else.
        self.run_state: str | None = None
        #: Where the run runs (instance, Dask worker), for its record in the store.
        self.place = RunPlace()
        self._status = WorkerStatus.INITIALIZED
        self._launched_at: float | None = None
        #: A guide-style worker's run, started through :meth:`ramp_test_command`.
        self._own = OwnResults(self)
        #: Set when the run must stop (operator, timeout): backends' own waits watch it.
        self.stopping = threading.Event()

    # -- resources shared by every slot of one dispatcher ----------------------

    @classmethod
    def open_shared(cls, event: EventConfig) -> Any:
        """Open what all runs of one dispatcher share (a Dask client, an instance pool).

        Called once when the dispatcher starts, before any worker exists.
        """
        return None

    @classmethod
    def reconcile(cls, shared: Any, event: EventConfig,
                  interrupted: Sequence[InterruptedRun]) -> None:
        """Stop what a dead dispatcher left running (called once, after ``open_shared``).

        ``interrupted`` are the runs it left, already put back to ``new``.
        """

    @classmethod
    def close_shared(cls, shared: Any) -> None:
        """Release what ``open_shared`` opened; runs in a ``finally``."""

    @classmethod
    def instances_alive(cls, shared: Any) -> int:
        """How many cloud instances the shared resources hold now (for the metrics)."""
        return 0

    @classmethod
    def scoring_python(cls, shared: Any) -> Path:
        """The Python the trusted scorer runs with: one with rampwf and what ``problem.py``
        imports (default: ramp-fleet's own)."""
        import sys

        return Path(sys.executable)

    def shared_resources(self) -> Any:
        """``shared``; a worker driven without a dispatcher opens (and releases) its own."""
        if self.shared is None:
            self.shared = type(self).open_shared(self.event)
            self._own_shared = True
        return self.shared

    # -- status ---------------------------------------------------------------

    @property
    def status(self) -> str:
        """The current status; reading it never polls anything."""
        return self._status.value

    @status.setter
    def status(self, value: str) -> None:
        new = WorkerStatus(value)
        check_transition(self._status, new)
        if new != self._status:
            logger.debug("%s: %s -> %s", self.submission, self._status, new)
        self._status = new

    @property
    def timeout(self) -> float:
        return self.settings.timeout

    # -- the guide's API ----------------------------------------------------------

    def setup(self) -> None:
        """Prepare what the run needs (an environment, an instance...)."""
        self.status = "setup"

    def launch_submission(self) -> None:
        """Start training the submission; must return without waiting for it."""
        self._launched_at = time.monotonic()
        self.status = "running"

    def _is_submission_finished(self) -> bool:
        raise NotImplementedError

    def collect_results(self) -> tuple[int, str] | None:
        """Receive the log and predictions; returns ``(returncode, error_msg)``.

        A guide-style worker overrides this, calls ``super()`` first and does
        its own collecting; a backend implements :meth:`fetch_output` instead.
        """
        if self._status in (WorkerStatus.FINISHED, WorkerStatus.TIMEOUT):
            output = self.fetch_output()
            if output is not None:
                self.result = receive(output, self.destination(),
                                      timed_out=self._status == WorkerStatus.TIMEOUT)
        if self._status in (WorkerStatus.FINISHED, WorkerStatus.RUNNING, WorkerStatus.TIMEOUT):
            self.status = "collected"
        return None if self.result is None else (self.result.returncode, self.result.error)

    def teardown(self) -> None:
        """Release what ``setup`` took. Safe whatever the status, errors included."""
        self.status = "killed"

    # -- hooks of the built-in backends ----------------------------------------------

    def _wait_for_end(self, seconds: float) -> None:
        """Block up to ``seconds``, returning early when the run may have ended."""
        self.stopping.wait(seconds)

    def _run_started_at(self) -> float | None:
        """When the run's clock started (monotonic); None while it has not started yet."""
        return self._launched_at

    def _stop_run(self, timed_out: bool) -> None:
        """Stop the running submission (its whole process tree, wherever it runs).

        Called from any thread; for an operator's stop (``timed_out`` false) it
        must not block for long.
        """

    def fetch_output(self) -> RunOutput | None:
        """The ended run's report, log and results; None if this worker publishes its own
        results (a guide-style ``collect_results``)."""
        return None

    # -- the run's inputs ---------------------------------------------------------------

    def inputs(self, *, handed_later: bool = False, **where: Any) -> RunInputs:
        """This run's inputs (:func:`~ramp_fleet.workers.inputs.run_inputs`); ``where``:
        where things are on the machine of the run. ``handed_later`` (a local run): the
        handed data (labels hidden) is not waited for here; the backend
        :func:`~ramp_fleet.workers.inputs.shelve` s :meth:`handed_data` once the run started."""
        if handed_later and self.settings.isolation.hides_labels:
            return run_inputs(self.event, self.submission, handed_later=True, **where)
        return run_inputs(self.event, self.submission, handed=self.handed_data(), **where)

    def ramp_test_command(self, executable: str | Path | None = None,
                          submissions_dir: str | Path | None = None, *,
                          quick_test: bool = False) -> Any:
        """The runner's command for this submission, on this machine: ramp-test isolated as
        ``worker.isolation`` says, stopped at the timeout — what a custom worker starts
        (``argv``, ``environment()``), with its output going where it wants its log.

        ``executable``: default, the ``ramp-test`` next to this Python; ``submissions_dir``:
        the folder holding the submission's folder (default ``submissions_dir``). Its
        ``training_output`` is put back there by the runner, checked and capped, as
        ramp-test leaves it.
        """
        return self._own.command(executable, submissions_dir, quick_test)

    def handed_data(self) -> Path | None:
        """With ``isolation.labels: hidden``: the file the trusted scorer wrote for the runs
        (the data without the test labels), made at the first run; else None."""
        if not self.settings.isolation.hides_labels:
            return None
        if self.scorer is None:
            raise ScoreError("labels: hidden and no trusted scorer to hand the data over")
        return self.scorer.handed_data(self.event.handed_data_path)

    def scratch_folder(self, prefix: str) -> Path:
        """A new folder for this run in the event's scratch folder, which a restarted
        dispatcher clears (a killed one cannot remove it itself)."""
        self.event.scratch_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{self.submission}.{prefix}",
                                     dir=self.event.scratch_dir))

    def destination(self) -> Destination:
        limits = self.settings.result_limits
        scorer = self.scorer
        return Destination(
            submission=self.submission,
            logs_dir=self.event.dirs.logs.path,
            predictions_dir=self.event.dirs.predictions.path,
            limits=limits.caps(),
            timeout=self.timeout,
            max_log_bytes=limits.max_log_bytes,
            score=None if scorer is None else
            (lambda folder: scorer.score(folder, limits.max_file_bytes, self.submission)),
            defer_scoring=self.defer_scoring and scorer is not None
            and type(self).collect_results is BaseWorker.collect_results,
        )

    # -- what the dispatcher drives ----------------------------------------------------

    def prepare(self) -> None:
        """``setup``, with a guide-style ``'retry'`` or ``'error'`` status raised.

        The folders results go to exist first, as in a ramp-board deployment: a
        worker that publishes its own results renames into them.
        """
        where = self.destination()
        where.logs_dir.mkdir(parents=True, exist_ok=True)
        where.predictions_dir.mkdir(parents=True, exist_ok=True)
        self.setup()
        self._raise_reported()

    def start(self) -> None:
        self.launch_submission()
        self._raise_reported()

    def poll(self) -> str:
        """Check once whether a running submission has finished; returns the status."""
        if self._status == WorkerStatus.RUNNING and self._is_submission_finished():
            self.status = "finished"
        return self.status

    def elapsed(self) -> float:
        return 0.0 if self._launched_at is None else time.monotonic() - self._launched_at

    def wait(self, poll_interval: float, stop: threading.Event) -> str:
        """Block until the run ends, times out or ``stop`` is set; returns the status.

        The deadline is ``timeout`` (plus ``deadline_grace``) from when the run
        started; past it the run is stopped and its status is ``timeout``.
        """
        self.deliver()
        step = self.wake_interval or poll_interval
        while self.poll() == WorkerStatus.RUNNING and not stop.is_set():
            started = self._run_started_at()
            remaining = step if started is None else \
                started + self.timeout + self.deadline_grace - time.monotonic()
            if remaining <= 0:
                self.kill_submission(timed_out=True)
                break
            self._wait_for_end(min(step, remaining))
        self._raise_reported()
        return self.status

    def deliver(self) -> None:
        """What the run is given after it started (first thing :meth:`wait` does): a local
        backend's handed data, which the trusted scorer may still be writing."""

    def collect(self) -> RunResult:
        """``collect_results``, and how the run ended: received, or (a guide-style worker
        that published its own results) checked where it published them."""
        timed_out = self._status == WorkerStatus.TIMEOUT
        try:
            returned = self.collect_results()
        except BaseException:
            if self.result is None:  # its own publishing failed half-way: none of it stays
                discard_predictions(self.destination().predictions)
                self._own.raise_refusal()  # the reason it had nothing to publish, if it is that
            raise
        self._raise_reported()
        if self.result is not None:
            return self.result
        returncode, error = returned if returned is not None else (0, "")
        self.result = self._own.check(returncode, error, timed_out)
        return self.result

    @property
    def peak_memory_mb(self) -> float | None:
        """The run's peak memory, as the runner measured it."""
        return None if self.result is None else self.result.peak_memory_mb

    def kill_submission(self, timed_out: bool = False) -> None:
        """Stop a running submission (from any thread): its timeout, or the operator."""
        self.stopping.set()
        if self._status == WorkerStatus.RUNNING:
            self._stop_run(timed_out)
            if self._status == WorkerStatus.RUNNING:
                self.status = "timeout" if timed_out else "killed"

    def release(self) -> None:
        """``teardown``, which must never take the dispatcher down."""
        self.stopping.set()
        try:
            self.teardown()
        except Exception as exc:
            log_failure(logger, f"teardown of {self.submission} failed", exc)
        finally:
            self._own.remove()
            if self._own_shared:
                self._own_shared = False
                try:
                    type(self).close_shared(self.shared)
                except Exception as exc:
                    log_failure(logger, f"{self.submission}: releasing its own resources failed",
                                exc)

    def _raise_reported(self) -> None:
        """A guide-style worker reports through its status: turn that into the one channel."""
        if self._status == WorkerStatus.RETRY:
            raise WorkerRetry("the worker asked to retry")
        if self._status == WorkerStatus.ERROR:
            raise RampFleetError("the worker reported an error")


def remove_folder(folder: Path | None) -> None:
    """A run folder, gone (whatever the run left in it)."""
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
