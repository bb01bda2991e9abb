"""Each backend, asking for a retry in the middle of its first run (a lost instance).

Built-in backends raise :class:`WorkerRetry`; the guide-style worker sets its
status to ``'retry'``, as the RAMP guide's workers do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ramp_fleet.workers.aws import AWSWorker
from ramp_fleet.workers.base import WorkerRetry
from ramp_fleet.workers.conda import CondaEnvWorker
from ramp_fleet.workers.dask import DaskWorker
from tests.guide_worker import GuideWorker

REASON = "the instance went away mid-run (test)"


def first_attempt(config: dict[str, Any], submission: str) -> bool:
    """True once per submission: on its first poll while running."""
    marker = Path(config["logs_dir"]).parent / "retried" / submission
    if marker.exists():
        return False
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("1")
    return True


class RetryOnce:
    config: dict[str, Any]
    submission: str

    def _is_submission_finished(self) -> bool:
        if first_attempt(self.config, self.submission):
            raise WorkerRetry(REASON)
        return bool(super()._is_submission_finished())  # type: ignore[misc]


class RetryingConda(RetryOnce, CondaEnvWorker):
    pass


class RetryingAWS(RetryOnce, AWSWorker):
    pass


class RetryingDask(RetryOnce, DaskWorker):
    pass


class RetryingGuide(GuideWorker):
    def _is_submission_finished(self):  # type: ignore[no-untyped-def]
        if first_attempt(self.config, self.submission):
            self.status = "retry"
            return False
        return super()._is_submission_finished()
