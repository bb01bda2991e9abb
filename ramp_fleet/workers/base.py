"""The worker contract: the RAMP guide's API, and the lifecycle written once.

A worker trains one submission. Custom workers are written as the guide's
"Create your own worker" section shows — ``setup``, ``launch_submission``,
``_is_submission_finished``, ``collect_results``, ``teardown``, each calling
``super()`` — and may report ``self.status = 'retry'``.

What every run shares lives here, once: the deadline loop and the timeout
(one message, return code 124), publishing the log and the predictions
(:mod:`ramp_fleet.results`), and one retry channel (:class:`WorkerRetry`;
a guide-style ``'retry'`` status is turned into it). A built-in backend
fills in only what differs, as hooks:

* ``setup`` / ``launch_submission``: prepare and start the run;
* ``_is_submission_finished`` and ``_wait_for_end``: know (and wait for) its end;
* ``_stop_run``: stop it (timeout, operator);
* ``fetch_output``: hand back its return code, log and ``training_output``;
* ``open_shared`` / ``close_shared`` / ``reconcile``: what all slots share,
  and what a dead dispatcher left behind.

Every run goes through the runner (:mod:`ramp_fleet.sandbox.runner`), on
the machine where it runs: a worker that starts ``ramp-test`` on this machine
gets the runner's command line from :meth:`BaseWorker.ramp_test_command`.
What the runner reports (its peak memory, the limit that ended the run, as
one line) is taken the same way whatever the backend (:meth:`collect`).

The dispatcher drives :meth:`prepare` → :meth:`start` → :meth:`wait` →
:meth:`collect` → :meth:`release`, and needs nothing else.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from ramp_fleet.archive import Limits, UnsafeResult
from ramp_fleet.config.sections import CustomWorkerSection, WorkerSection
from ramp_fleet.errors import RampFleetError
from ramp_fleet.faults import log_failure
from ramp_fleet.isolation import settings as isolation_settings
from ramp_fleet.process import TIMEOUT_RETURNCODE
from ramp_fleet.ramp_test import Collect, RunCommand, ramp_test_command
from ramp_fleet.results import (
    Destination,
    RunOutput,
    check_published,
    discard_predictions,
    publish,
    timeout_message,
)
from ramp_fleet.sandbox.spec import Report, ResultCaps, Usage
from ramp_fleet.scoring import ScoreError, Scores
from ramp_fleet.scoring.scorer import Scorer
from ramp_fleet.store.records import RunPlace
from ramp_fleet.workers.status import WorkerStatus, check_transition

logger = logging.getLogger("ramp_fleet.workers")

#: The runner's report, in the run's report folder.
REPORT_NAME = "sandbox.json"


class WorkerRetry(RampFleetError):
    """The run could not end for a reason of the infrastructure (a lost instance or
    Dask worker, no capacity): the submission goes back to the queue."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RunResult:
    """What one finished run leaves for the dispatcher to record."""

    returncode: int
    error: str
    peak_memory_mb: float | None = None
    #: What the trusted scorer computed from the predictions (a success scored by it).
    scores: Scores | None = None


@dataclass(frozen=True)
class InterruptedRun:
    """A run a dead dispatcher left behind: its submission and what its backend stored."""

    submission: str
    run_state: str | None


class BaseWorker:
    """One submission's run; see the module docstring for what to override."""

    #: The config section this worker reads (the typed form of ``self.config``).
    section_type: ClassVar[type[WorkerSection]] = CustomWorkerSection
    #: Extra seconds past the timeout before the dispatcher stops a run itself
    #: (for backends whose worker host enforces the timeout and reports it).
    deadline_grace: ClassVar[float] = 0.0
    #: The longest ``_wait_for_end`` waits at once; None: the poll interval.
    wake_interval: ClassVar[float | None] = None
    #: Runs start on the dispatcher's machine: bubblewrap is checked here, at start.
    #: (Backends whose runs start elsewhere check it there, at each run.)
    runs_on_this_machine: ClassVar[bool] = True

    def __init__(self, config: Mapping[str, Any], submission: str):
        #: The worker section as a mapping, as the guide's workers read it.
        self.config = dict(config)
        #: The typed worker section (defaults applied, paths absolute).
        self.settings: WorkerSection = self.settings_of(config)
        self.submission = submission
        #: What ``open_shared`` returned, set by the dispatcher before ``setup``.
        self.shared: Any = None
        #: The dispatcher's trusted scorer: the predictions are scored by it, never read
        #: from the score files the run wrote (None: a worker used on its own, unscored).
        self.scorer: Scorer | None = None
        self._scores: Scores | None = None
        #: Measured by workers that can; stored with the submission.
        self.peak_memory_mb: float | None = None
        #: What the runner reported of the run (its limits, peak, outcome), once known.
        self.report: Report | None = None
        self._report_dir: Path | None = None
        #: What this backend needs to find the run again after a dispatcher dies
        #: (stored with the run, handed to ``reconcile``); opaque to everyone else.
        self.run_state: str | None = None
        #: Where the run runs (instance, Dask worker), for its record in the store.
        self.place = RunPlace()
        self._status = WorkerStatus.INITIALIZED
        self._launched_at: float | None = None
        self._published = False
        #: Set when the run must stop (operator, timeout): backends' own waits watch it.
        self.stopping = threading.Event()

    @classmethod
    def settings_of(cls, config: Mapping[str, Any]) -> WorkerSection:
        """The typed section a worker mapping carries, or, for a bare mapping (a worker
        built outside a dispatcher), the section validated from it."""
        carried = getattr(config, "section", None)
        if isinstance(carried, WorkerSection):
            return carried
        model = cls.section_type
        known = {key: value for key, value in config.items() if value is not None
                 and (key in model.model_fields or model.model_config.get("extra") == "allow")}
        default = model.model_fields["worker_type"].default
        return model.model_validate(
            {"worker_type": default if isinstance(default, str) else cls.__name__, **known})

    # -- resources shared by every slot of one dispatcher ----------------------

    @classmethod
    def open_shared(cls, config: Mapping[str, Any], event: Any) -> Any:
        """Open what all runs of one dispatcher share (a Dask client, an instance pool).

        Called once when the dispatcher starts, before any worker exists.
        ``event`` is the :class:`~ramp_fleet.config.EventConfig`.
        """
        return None

    @classmethod
    def reconcile(cls, shared: Any, event: Any, interrupted: Sequence[InterruptedRun]) -> None:
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
        """Publish the log and predictions; returns ``(returncode, error_msg)``.

        A guide-style worker overrides this, calls ``super()`` first and does
        its own collecting; a backend implements :meth:`fetch_output` instead.
        """
        published = None
        if self._status in (WorkerStatus.FINISHED, WorkerStatus.TIMEOUT):
            output = self.fetch_output()
            if output is not None:
                timed_out = output.timed_out or self._status == WorkerStatus.TIMEOUT
                published = publish(replace(output, timed_out=timed_out), self.destination())
                self._published = True
                self._scores = published.scores
        if self._status in (WorkerStatus.FINISHED, WorkerStatus.RUNNING, WorkerStatus.TIMEOUT):
            self.status = "collected"
        return None if published is None else (published.returncode, published.error)

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
        """The ended run's return code, log and ``training_output``; None if this
        worker publishes its own results (a guide-style ``collect_results``)."""
        return None

    def ramp_test_command(self, executable: str | Path | None = None,
                          submissions_dir: str | Path | None = None, *,
                          quick_test: bool = False, collect: Collect | None = None) -> RunCommand:
        """``ramp-test`` for this submission, to start on this machine through the runner,
        isolated as ``worker.isolation`` says, stopped at the timeout: what a custom worker
        runs (``argv``, ``environment()``).

        ``executable``: default, the ``ramp-test`` next to this Python;
        ``submissions_dir``: the folder holding the submission's folder (default
        ``submissions_dir``), which the run gets a copy of. Its ``training_output``
        is put back there by the runner, checked and capped, as ramp-test leaves it
        (``collect`` says otherwise). Raises
        :class:`~ramp_fleet.ramp_test.IsolationUnavailable` for ``mode: required``
        where bubblewrap does not work.
        """
        if self._report_dir is None:
            self._report_dir = self._new_report_dir()
        submissions = Path(submissions_dir or self.config["submissions_dir"])
        return ramp_test_command(
            executable or Path(sys.executable).parent / "ramp-test", self.submission,
            self.config["kit_dir"], self.config["data_dir"], submissions,
            n_threads=self.config.get("n_threads"), quick_test=quick_test,
            isolation=isolation_settings(self.settings.isolation), hidden=self.event_folders(),
            report=self._report_dir / REPORT_NAME, timeout=self.timeout,
            collect=collect or Collect(submissions / self.submission / "training_output",
                                       "folder", self.result_caps()),
        )

    def result_caps(self) -> ResultCaps:
        limits = self.settings.result_limits
        return ResultCaps(limits.max_bytes, limits.max_files, limits.max_file_bytes)

    def _new_report_dir(self) -> Path:
        """Where the run's launcher reports: in the event's scratch folder, which a
        restarted dispatcher clears (a killed one cannot remove it itself)."""
        scratch = self.config.get("scratch_dir")
        if scratch:
            Path(scratch).mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{self.submission}.report.", dir=scratch or None))

    def event_folders(self) -> list[str]:
        """The event's own folders, kept out of a run's view should they lie in the kit or data."""
        keys = ("submissions_dir", "predictions_dir", "logs_dir", "scratch_dir")
        return [str(self.config[key]) for key in keys if self.config.get(key)]

    def destination(self) -> Destination:
        limits = self.settings.result_limits
        scorer = self.scorer
        return Destination(
            submission=self.submission,
            logs_dir=Path(self.config["logs_dir"]),
            predictions_dir=Path(self.config["predictions_dir"]),
            limits=Limits(limits.max_bytes, limits.max_files, limits.max_file_bytes),
            timeout=self.timeout,
            max_log_bytes=limits.max_log_bytes,
            score=None if scorer is None else
            (lambda folder: scorer.score(folder, limits.max_file_bytes, self.submission)),
        )

    @classmethod
    def scoring_python(cls, shared: Any) -> Path:
        """The Python the trusted scorer runs with: one with rampwf and what ``problem.py``
        imports (default: ramp-fleet's own)."""
        return Path(sys.executable)

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

    def collect(self) -> RunResult:
        """``collect_results``, and the one timeout outcome whatever the worker said."""
        timed_out = self._status == WorkerStatus.TIMEOUT
        try:
            result = self.collect_results()
        except BaseException:
            if not self._published:  # its own publishing failed half-way: none of it stays
                discard_predictions(self.destination().predictions)
                self._raise_refusal()  # the reason it had nothing to publish, if it is that
            raise
        self._raise_reported()
        returncode, error = result if result is not None else (0, "")
        if not self._published:
            self._raise_refusal()
            check_published(self.destination(), timed_out)
            if returncode == 0 and not timed_out:
                self._scores = self._score_in_place()
        if timed_out:
            returncode, error = TIMEOUT_RETURNCODE, timeout_message(self.timeout)
        else:
            error = self._take_report(returncode, error)
        return RunResult(returncode, error, self.peak_memory_mb, self._scores)

    def _score_in_place(self) -> Scores | None:
        """Score what a worker published itself, where it published it; nothing of it stays
        if it cannot be scored."""
        where = self.destination()
        if where.score is None or not where.predictions.is_dir():
            return None
        try:
            return where.score(where.predictions)
        except ScoreError:
            discard_predictions(where.predictions)
            raise

    def _raise_refusal(self) -> None:
        """A worker that publishes its own results: the runner refused ``training_output``
        (a link, too big...), so nothing of it may stay, and the reason is the error."""
        report = self.report
        if report is None and self._report_dir is not None:
            report = self.report = Report.read(self._report_dir / REPORT_NAME)
        if report is not None and report.results_refused:
            discard_predictions(self.destination().predictions)
            raise UnsafeResult(report.results_refused)

    def _take_report(self, returncode: int, error: str) -> str:
        """What the runner reported: the run's peak memory, and the one line that says
        which limit ended it (its error then), if one did."""
        report = self.report
        if report is None and self._report_dir is not None:
            report = self.report = Report.read(self._report_dir / REPORT_NAME)
        if report is None:
            return error
        if self.peak_memory_mb is None and report.usage is not None:
            self.peak_memory_mb = report.usage.peak_mb
        if report.limit and returncode != 0:
            return report.limit
        return error

    @property
    def usage(self) -> Usage | None:
        """What the runner measured of the run (its memory limit and peak), when it did."""
        return None if self.report is None else self.report.usage

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
            if self._report_dir is not None:
                shutil.rmtree(self._report_dir, ignore_errors=True)

    def _raise_reported(self) -> None:
        """A guide-style worker reports through its status: turn that into the one channel."""
        if self._status == WorkerStatus.RETRY:
            raise WorkerRetry("the worker asked to retry")
        if self._status == WorkerStatus.ERROR:
            raise RampFleetError("the worker reported an error")
