"""A guide-style worker's run: the runner's command for it, and what it published, checked.

A worker written from the RAMP guide starts ``ramp-test`` itself and
publishes its own log and predictions. It gets the runner's command from
:meth:`~ramp_fleet.workers.base.BaseWorker.ramp_test_command` (a run folder
in the event's scratch folder; the log on the worker's own output;
``training_output`` put back in the submission's folder, checked and
capped, as ramp-test leaves it), and what it published is held to the same
rules as a built-in backend's (:func:`ramp_fleet.results.check_published`),
scored by the trusted scorer where it lies, with the runner's report read
for the limit that ended the run and its peak memory.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from ramp_fleet.archive import UnsafeResult
from ramp_fleet.config import EventConfig
from ramp_fleet.process import TIMEOUT_RETURNCODE
from ramp_fleet.results import (
    Destination,
    RunNotStarted,
    RunResult,
    check_published,
    discard_predictions,
    timeout_message,
)
from ramp_fleet.sandbox.spec import REPORT, Report
from ramp_fleet.scoring import ScoreError, Scores
from ramp_fleet.workers.inputs import RunInputs, runner_argv


class _Worker(Protocol):
    """What of a :class:`~ramp_fleet.workers.base.BaseWorker` its run folder uses."""

    event: EventConfig
    submission: str

    def inputs(self, **where: Any) -> RunInputs: ...

    def scratch_folder(self, prefix: str) -> Path: ...

    def destination(self) -> Destination: ...


@dataclass(frozen=True)
class RunCommand:
    """The runner's command line for one run, and what to add to the caller's environment."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: ours) with :attr:`env` applied. The runner gives an isolated
        run an environment of its own (an allow-list), never this one."""
        return {**(os.environ if base is None else base), **self.env}


class OwnResults:
    """The run folder of a worker that runs and publishes by itself, and its checks."""

    def __init__(self, worker: _Worker):
        self.worker = worker
        self.folder: Path | None = None

    def command(self, executable: str | Path | None, submissions_dir: str | Path | None,
                quick_test: bool) -> RunCommand:
        worker = self.worker
        submissions = Path(submissions_dir or worker.event.dirs.submissions.path)
        source = submissions / worker.submission
        inputs = worker.inputs(ramp_test=str(executable or Path(sys.executable).parent /
                                             "ramp-test"),
                               quick_test=quick_test, source=source,
                               results=source / "training_output")
        if self.folder is None:
            self.folder = worker.scratch_folder("run.")
        replace(inputs, spec=replace(inputs.spec, log_in_folder=False)).write(self.folder)
        return RunCommand(runner_argv(self.folder))

    def report(self) -> Report | None:
        return None if self.folder is None else Report.read(self.folder / REPORT)

    def raise_refusal(self) -> None:
        """The runner did not run it, or refused ``training_output`` (a link, too big...):
        nothing of what was published may stay, and the reason is the error."""
        report = self.report()
        if report is None:
            return
        if report.refused or report.results_refused:
            discard_predictions(self.worker.destination().predictions)
        if report.refused:
            raise RunNotStarted(report.refused)
        if report.results_refused:
            raise UnsafeResult(report.results_refused)

    def check(self, returncode: int, error: str, timed_out: bool) -> RunResult:
        """What the worker published, held to the rules, and how its run ended."""
        self.raise_refusal()
        report = self.report()
        timed_out = timed_out or (report is not None and report.timed_out)
        where = self.worker.destination()
        check_published(where, timed_out)
        usage = None if report is None else report.usage
        if timed_out:
            discard_predictions(where.predictions)
            return RunResult(TIMEOUT_RETURNCODE, timeout_message(where.timeout), usage)
        if returncode != 0:
            limit = None if report is None else report.limit
            return RunResult(returncode, limit or error, usage)
        return RunResult(0, error, usage, self._score())

    def _score(self) -> Scores | None:
        """Score what the worker published, where it published it; nothing of it stays if
        it cannot be scored."""
        where = self.worker.destination()
        if where.score is None or not where.predictions.is_dir():
            return None
        try:
            return where.score(where.predictions)
        except ScoreError:
            discard_predictions(where.predictions)
            raise

    def remove(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
