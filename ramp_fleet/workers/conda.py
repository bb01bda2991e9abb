"""``worker_type: conda`` — train a submission with ramp-test on this machine.

The run gets a private copy of the submission (so ``training_output`` never
lands in the participant's folder and a killed run leaves nothing stale),
its own process group (so a timeout takes the whole tree down), a lower
priority, and the thread limits of ``n_threads``.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, ClassVar

from ramp_fleet import process
from ramp_fleet.envs import EnvError, PythonEnv, resolve_env
from ramp_fleet.ramp_test import ramp_test_argv, run_environment
from ramp_fleet.results import error_excerpt, publish_dir
from ramp_fleet.workers.base import BaseWorker
from ramp_fleet.workers.status import WorkerStatus

logger = logging.getLogger("ramp_fleet.workers.conda")

NICENESS = 5


class _SharedEnv:
    """The environment, resolved once per dispatcher (conda takes a second to ask)."""

    def __init__(self, env: PythonEnv | None, error: EnvError | None):
        self.env = env
        self.error = error


class CondaEnvWorker(BaseWorker):
    is_local: ClassVar[bool] = True

    def __init__(self, config: Mapping[str, Any], submission: str):
        super().__init__(config, submission)
        self._env: PythonEnv | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._scratch: Path | None = None
        self._timed_out = False

    # -- shared by the dispatcher's slots -------------------------------------------------

    @classmethod
    def open_shared(cls, config: Mapping[str, Any], event: Any) -> _SharedEnv:
        try:
            env = resolve_env(config.get("conda_env"))
        except EnvError as exc:
            # Every submission will end in checking_error with this message;
            # the dispatcher itself keeps going.
            return _SharedEnv(None, exc)
        if env.warning:
            logger.warning(env.warning)
        return _SharedEnv(env, None)

    # -- the guide's API ----------------------------------------------------------------------

    def setup(self) -> None:
        shared = self.shared if isinstance(self.shared, _SharedEnv) else self.open_shared(
            self.config, None
        )
        if shared.error is not None:
            raise shared.error
        self._env = shared.env
        source = Path(self.config["submissions_dir"]) / self.submission
        if not source.is_dir():
            raise FileNotFoundError(f"submission folder {source} does not exist")
        default_root = Path(self.config["logs_dir"]).parent / ".scratch"
        work_root = Path(self.config.get("scratch_dir") or default_root)
        work_root.mkdir(parents=True, exist_ok=True)
        self._scratch = Path(tempfile.mkdtemp(prefix=f"{self.submission}.", dir=work_root))
        shutil.copytree(source, self._scratch / self.submission, symlinks=False,
                        ignore=shutil.ignore_patterns("training_output", "__pycache__"))
        super().setup()

    def launch_submission(self) -> None:
        assert self._env is not None and self._scratch is not None, "setup() first"
        log_dir = Path(self.config["logs_dir"]) / self.submission
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(log_dir / "log", "wb")  # noqa: SIM115 - closed in teardown
        argv = ramp_test_argv(
            self._env.executable("ramp-test"), self.submission,
            Path(self.config["kit_dir"]), Path(self.config["data_dir"]), self._scratch,
        )
        self._proc = process.spawn_group(
            argv, cwd=self._scratch, env=run_environment(self.config.get("n_threads")),
            output=self._log, niceness=NICENESS,
        )
        super().launch_submission()

    @property
    def process_group(self) -> int | None:
        """Recorded in the store so a restarted dispatcher can stop an orphaned run."""
        return self._proc.pid if self._proc is not None else None

    def _is_submission_finished(self) -> bool:
        return self._proc is not None and self._proc.poll() is not None

    def wait(self, poll_interval: float, stop: threading.Event) -> str:
        """Wake the moment the run ends (a pidfd), not at the next poll."""
        if self._proc is None:
            return self.status
        try:
            pidfd = os.pidfd_open(self._proc.pid)
        except (AttributeError, OSError):  # not Linux, or the process is gone already
            return super().wait(poll_interval, stop)
        try:
            while self.poll() == WorkerStatus.RUNNING and not stop.is_set():
                remaining = self.timeout - self.elapsed()
                if remaining <= 0:
                    self.kill_submission(timed_out=True)
                    break
                select.select([pidfd], [], [], min(remaining, 1.0))
        finally:
            os.close(pidfd)
        return self.status

    def kill_submission(self, timed_out: bool = False) -> None:
        if self._proc is not None and self._proc.poll() is None:
            process.kill_tree(self._proc.pid, self._proc.pid)
            self._proc.wait()
        self._timed_out = self._timed_out or timed_out
        super().kill_submission(timed_out)

    def collect_results(self) -> tuple[int, str]:
        super().collect_results()
        assert self._proc is not None and self._scratch is not None, "launch first"
        if self._log is not None:
            self._log.flush()
        log_file = Path(self.config["logs_dir"]) / self.submission / "log"
        if self._timed_out:
            message = f"timed out after {self.timeout:g} s"
            with open(log_file, "ab") as log:
                log.write(f"\nramp-fleet: {message}; the run was killed\n".encode())
            return process.TIMEOUT_RETURNCODE, message
        returncode = self._proc.returncode if self._proc.returncode is not None else -1
        if returncode != 0:
            return returncode, error_excerpt(log_file)
        output = self._scratch / self.submission / "training_output"
        if not output.is_dir():
            return 1, "ramp-test succeeded but wrote no training_output"
        publish_dir(output, Path(self.config["predictions_dir"]) / self.submission)
        return 0, ""

    def teardown(self) -> None:
        try:
            if self._proc is not None and self._proc.poll() is None:
                process.kill_tree(self._proc.pid, self._proc.pid)
                self._proc.wait()
            if self._log is not None:
                self._log.close()
            if self._scratch is not None:
                shutil.rmtree(self._scratch, ignore_errors=True)
        finally:
            super().teardown()
