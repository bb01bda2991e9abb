"""``worker_type: conda`` — the runner on this machine, with the event's Python environment.

``setup`` writes the run's inputs into a run folder in the event's scratch
folder (so a killed run leaves nothing that a restart does not clear);
``launch_submission`` starts the runner on it, in its own process group and
at a lower priority; ``deliver`` (labels hidden) puts the trusted scorer's
data into the run folder as soon as the scorer has written it — the run
imports its libraries meanwhile, and waits for the file; the run's end is
seen at once through a pidfd;
``fetch_output`` hands the run folder's report, log and results to the base
class.
"""

from __future__ import annotations

import logging
import os
import select
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ramp_fleet import process
from ramp_fleet.config import EventConfig
from ramp_fleet.config.sections import CondaWorkerSection
from ramp_fleet.envs import EnvError, PythonEnv, resolve_env
from ramp_fleet.results import RunOutput
from ramp_fleet.sandbox.probe import check
from ramp_fleet.workers.base import BaseWorker, InterruptedRun, remove_folder
from ramp_fleet.workers.inputs import runner_argv, shelve

logger = logging.getLogger("ramp_fleet.workers.conda")

NICENESS = 5


@dataclass(frozen=True)
class _SharedEnv:
    """The environment, resolved once per dispatcher (conda takes a second to ask), and
    whether bubblewrap works here (tried once)."""

    env: PythonEnv | None
    error: EnvError | None
    sandbox_works: bool = False


class CondaEnvWorker(BaseWorker):
    section_type: ClassVar[type[CondaWorkerSection]] = CondaWorkerSection
    #: A local run is waited for through a pidfd; this is only how often a stop is noticed.
    wake_interval: ClassVar[float | None] = 1.0
    deadline_grace: ClassVar[float] = 15.0

    def __init__(self, config: EventConfig, submission: str):
        super().__init__(config, submission)
        self._folder: Path | None = None
        self._runner: process.Child | None = None
        self._pidfd: int | None = None

    # -- shared by the dispatcher's slots, and what a dead one left -------------------------

    @classmethod
    def open_shared(cls, event: EventConfig) -> _SharedEnv:
        settings = event.worker
        conda_env = settings.conda_env if isinstance(settings, CondaWorkerSection) else None
        try:
            env = resolve_env(conda_env)
        except EnvError as exc:
            # Checked at start-up already; if the env vanished since, every run says so.
            return _SharedEnv(None, exc)
        if env.warning:
            logger.warning(env.warning)
        return _SharedEnv(env, None, settings.isolation.mode != "off" and check().works)

    @classmethod
    def scoring_python(cls, shared: Any) -> Path:
        """The event's environment, where ramp-test and the kit's imports are."""
        if isinstance(shared, _SharedEnv) and shared.env is not None:
            python = shared.env.executable("python")
            if python.exists():
                return python
        return super().scoring_python(shared)

    @classmethod
    def reconcile(cls, shared: Any, event: EventConfig,
                  interrupted: Sequence[InterruptedRun]) -> None:
        """Stop the runs a dead dispatcher left in the event's scratch folder, and clear it.

        A run is found by where it works, not by a recorded process id (which a
        reboot may have given to another program): every process of a run,
        grandchildren included, works in its run folder there.
        """
        scratch_root = event.scratch_dir
        for group in process.groups_working_in(scratch_root) - {os.getpgrp()}:
            logger.info("stopping an orphaned run (process group %d)", group)
            process.kill_group(group)
        if scratch_root.is_dir():
            for leftover in scratch_root.iterdir():
                remove_folder(leftover)

    # -- the run -------------------------------------------------------------------------------

    def setup(self) -> None:
        shared: _SharedEnv = self.shared_resources()
        if shared.error is not None:
            raise shared.error
        assert shared.env is not None
        inputs = self.inputs(ramp_test=str(shared.env.executable("ramp-test")), compresslevel=1,
                             checked=shared.sandbox_works, handed_later=True)
        self._folder = self.scratch_folder("")
        inputs.write(self._folder)
        super().setup()

    def launch_submission(self) -> None:
        assert self._folder is not None, "setup() first"
        self._runner = process.spawn_group(runner_argv(self._folder), cwd=self._folder,
                                           output=process.DEVNULL, niceness=NICENESS)
        self._pidfd = _pidfd(self._runner.pid)
        super().launch_submission()

    def deliver(self) -> None:
        """Labels hidden: the run imports the kit's libraries while the trusted scorer, maybe
        still starting, writes its data; the run waits for the file (the first runs of a
        dispatcher would otherwise wait, idle, for the scorer's whole start)."""
        handed = self.handed_data()
        if handed is not None:
            assert self._folder is not None, "setup() first"
            shelve(handed, self._folder)

    def _is_submission_finished(self) -> bool:
        return self._runner is not None and self._runner.poll() is not None

    def _wait_for_end(self, seconds: float) -> None:
        """Wake the moment the run ends (its pidfd), not at the next poll."""
        if self._pidfd is None:
            super()._wait_for_end(seconds)
        else:
            select.select([self._pidfd], [], [], seconds)

    def _stop_run(self, timed_out: bool) -> None:
        if self._runner is not None and self._runner.poll() is None:
            process.kill_tree(self._runner.pid, self._runner.pid)
            self._runner.wait()

    def fetch_output(self) -> RunOutput:
        assert self._runner is not None and self._folder is not None
        return RunOutput.from_folder(self._folder, self.settings.result_limits.max_log_bytes,
                                     self._runner.returncode)

    def teardown(self) -> None:
        try:
            self._stop_run(timed_out=False)
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
            remove_folder(self._folder)
        finally:
            super().teardown()


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux, or gone already: poll instead
        return None
