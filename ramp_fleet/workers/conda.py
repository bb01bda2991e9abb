"""``worker_type: conda`` — train a submission with ramp-test on this machine.

The run gets a private copy of the submission in the event's scratch folder
(so ``training_output`` never lands in the participant's folder and a killed
run leaves nothing stale), its own process group (so a timeout takes the
whole tree down), a lower priority, the thread limits of ``n_threads``, and
the sandbox of ``worker.isolation`` (its copy is the one folder it may
write). The base class does the rest (deadline, publishing, limits).
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
from ramp_fleet.results import LogSource, RunOutput
from ramp_fleet.workers.base import BaseWorker, InterruptedRun

logger = logging.getLogger("ramp_fleet.workers.conda")

NICENESS = 5


class _SharedEnv:
    """The environment, resolved once per dispatcher (conda takes a second to ask)."""

    def __init__(self, env: PythonEnv | None, error: EnvError | None):
        self.env = env
        self.error = error


class CondaEnvWorker(BaseWorker):
    section_type: ClassVar[type[CondaWorkerSection]] = CondaWorkerSection
    #: A local run is waited for through a pidfd; this is only how often a stop is noticed.
    wake_interval: ClassVar[float | None] = 1.0

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
        command = self.ramp_test_command(self._env.executable("ramp-test"),
                                         self._scratch / "submissions")
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
        output = self._scratch / "submissions" / self.submission / "training_output"
        return RunOutput(self._proc.returncode, LogSource.from_fd(self._log_fd), output)

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
