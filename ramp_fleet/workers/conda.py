"""``worker_type: conda`` — train a submission with ramp-test on this machine.

The run gets a private copy of the submission in the event's scratch folder
(so a killed run leaves nothing stale), its own process group, a lower
priority, the thread limits of ``n_threads``, and the runner
(:mod:`ramp_fleet.sandbox.runner`), which keeps the sandbox, the limits and
the deadline, and hands ``training_output`` back as an archive in the
scratch folder, out of the run's reach. The base class does the rest
(publishing, the dispatcher's own deadline a little later, as a safety net).
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ramp_fleet import process
from ramp_fleet.archive import copy_submission
from ramp_fleet.config.sections import CondaWorkerSection
from ramp_fleet.envs import EnvError, PythonEnv, resolve_env
from ramp_fleet.ramp_test import Collect
from ramp_fleet.results import LogSource, RunOutput
from ramp_fleet.sandbox.spec import Report
from ramp_fleet.workers.base import REPORT_NAME, BaseWorker, InterruptedRun

logger = logging.getLogger("ramp_fleet.workers.conda")

NICENESS = 5
#: The runner stops a run at its timeout; the dispatcher, this much later, if it did not.
RUNNER_GRACE = 15.0
RESULTS = "results.tar.gz"


class _SharedEnv:
    """The environment, resolved once per dispatcher (conda takes a second to ask)."""

    def __init__(self, env: PythonEnv | None, error: EnvError | None):
        self.env = env
        self.error = error


class CondaEnvWorker(BaseWorker):
    section_type: ClassVar[type[CondaWorkerSection]] = CondaWorkerSection
    #: A local run is waited for through a pidfd; this is only how often a stop is noticed.
    wake_interval: ClassVar[float | None] = 1.0
    deadline_grace: ClassVar[float] = RUNNER_GRACE

    def __init__(self, config: Mapping[str, Any], submission: str):
        super().__init__(config, submission)
        self._env: PythonEnv | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pidfd: int | None = None
        self._log_fd: int | None = None
        self._scratch: Path | None = None

    # -- shared by the dispatcher's slots, and what a dead one left -------------------------

    @classmethod
    def open_shared(cls, config: Mapping[str, Any], event: Any) -> _SharedEnv:
        try:
            env = resolve_env(config.get("conda_env"))
        except EnvError as exc:
            # Checked at start-up already; if the env vanished since, every run says so.
            return _SharedEnv(None, exc)
        if env.warning:
            logger.warning(env.warning)
        return _SharedEnv(env, None)

    @classmethod
    def scoring_python(cls, shared: Any) -> Path:
        """The event's environment, where ramp-test and the kit's imports are."""
        if isinstance(shared, _SharedEnv) and shared.env is not None:
            python = shared.env.executable("python")
            if python.exists():
                return python
        return super().scoring_python(shared)

    @classmethod
    def reconcile(cls, shared: Any, event: Any, interrupted: Sequence[InterruptedRun]) -> None:
        """Stop the runs a dead dispatcher left in the event's scratch folder, and clear it.

        A run is found by where it works, not by a recorded process id (which a
        reboot may have given to another program): every process of a run,
        grandchildren included, works in its scratch folder.
        """
        scratch_root = Path(event.scratch_dir)
        for group in process.groups_working_in(scratch_root) - {os.getpgrp()}:
            logger.info("stopping an orphaned run (process group %d)", group)
            process.kill_group(group)
        if scratch_root.is_dir():
            for leftover in scratch_root.iterdir():
                shutil.rmtree(leftover, ignore_errors=True)

    # -- the run -------------------------------------------------------------------------------

    def setup(self) -> None:
        shared = self.shared if isinstance(self.shared, _SharedEnv) else self.open_shared(
            self.config, None)
        if shared.error is not None:
            raise shared.error
        self._env = shared.env
        source = Path(self.config["submissions_dir"]) / self.submission
        if not source.is_dir():
            raise FileNotFoundError(f"submission folder {source} does not exist")
        work_root = Path(self.config.get("scratch_dir") or
                         Path(self.config["logs_dir"]).parent / ".scratch")
        work_root.mkdir(parents=True, exist_ok=True)
        self._scratch = Path(tempfile.mkdtemp(prefix=f"{self.submission}.", dir=work_root))
        copy_submission(source, self._scratch / "submissions" / self.submission)
        super().setup()

    def launch_submission(self) -> None:
        assert self._env is not None and self._scratch is not None, "setup() first"
        self._log_fd = os.open(self._scratch / "log", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        command = self.ramp_test_command(
            self._env.executable("ramp-test"), self._scratch / "submissions",
            collect=Collect(self._scratch / RESULTS, "archive", self.result_caps(), compresslevel=1))
        self._proc = process.spawn_group(command.argv, cwd=self._scratch,
                                         env=command.environment(), output=self._log_fd,
                                         niceness=NICENESS)
        self._pidfd = _pidfd(self._proc.pid)
        super().launch_submission()

    def _is_submission_finished(self) -> bool:
        return self._proc is not None and self._proc.poll() is not None

    def _wait_for_end(self, seconds: float) -> None:
        """Wake the moment the run ends (its pidfd), not at the next poll."""
        if self._pidfd is None:
            super()._wait_for_end(seconds)
        else:
            select.select([self._pidfd], [], [], seconds)

    def _stop_run(self, timed_out: bool) -> None:
        if self._proc is not None and self._proc.poll() is None:
            process.kill_tree(self._proc.pid, self._proc.pid)
            self._proc.wait()

    def fetch_output(self) -> RunOutput:
        assert self._proc is not None and self._scratch is not None and self._log_fd is not None
        log = LogSource.from_fd(self._log_fd)
        report = self.report = self._read_report()
        if report is None:  # the runner was stopped before it could say
            return RunOutput(self._proc.returncode, log)
        output = self._scratch / RESULTS if report.has_results else None
        return RunOutput(report.returncode, log, output, timed_out=report.timed_out,
                         refused=report.results_refused)

    def _read_report(self) -> Report | None:
        return None if self._report_dir is None else Report.read(self._report_dir / REPORT_NAME)

    def teardown(self) -> None:
        try:
            self._stop_run(timed_out=False)
            for fd in (self._pidfd, self._log_fd):
                if fd is not None:
                    os.close(fd)
            self._pidfd = self._log_fd = None
            if self._scratch is not None:
                shutil.rmtree(self._scratch, ignore_errors=True)
        finally:
            super().teardown()


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux, or gone already: poll instead
        return None
