"""What the store records about each run attempt and each AWS instance.

The operator's report and the live metrics read these; the store writes
them as the dispatcher goes. Times are epoch seconds (``time.time()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    """How one attempt ended (its submission's final state, or why it ran again)."""

    RUNNING = "running"
    SCORED = "scored"
    TRAINING_ERROR = "training_error"
    CHECKING_ERROR = "checking_error"
    #: The worker asked for a retry (lost instance, lost Dask worker...): tried again.
    RETRY = "retry"
    #: Stopped by the operator or by a dispatcher that died: tried again, not counted.
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class RunRecord:
    """One attempt of one submission on one worker slot."""

    submission: str
    attempt: int
    #: The dispatcher's slot label, e.g. ``conda-1``: one lane of the timeline.
    slot: str
    #: ``worker_type`` of the event (conda, aws, dask, or a custom one).
    backend: str
    #: When the submission became ready for this attempt (submitted, or its back-off ended).
    queued: float
    setup_start: float | None = None
    launched: float | None = None
    #: When the run itself ended (or was stopped).
    ended: float | None = None
    #: When its results were published and the attempt closed.
    collected: float | None = None
    outcome: Outcome = Outcome.RUNNING
    returncode: int | None = None
    #: The error excerpt of a failed attempt.
    error: str | None = None
    peak_memory_mb: float | None = None
    instance_id: str | None = None
    instance_type: str | None = None
    #: ``spot`` or ``on-demand``.
    market: str | None = None
    dask_worker: str | None = None


@dataclass(frozen=True)
class InstanceRecord:
    """One EC2 instance the AWS worker launched for the event."""

    instance_id: str
    instance_type: str
    #: ``spot`` or ``on-demand``.
    market: str
    region: str | None
    launched: float
    terminated: float | None = None


@dataclass
class RunPlace:
    """Where a run runs, as far as its backend knows (recorded when it starts)."""

    instance_id: str | None = None
    instance_type: str | None = None
    market: str | None = None
    dask_worker: str | None = None


class InstanceLog(Protocol):
    """Where a fleet records the instances it launches and terminates (the event's store)."""

    def save_instance(self, record: InstanceRecord) -> None: ...

    def instance_terminated(self, instance_id: str, at: float | None = None) -> None: ...

    def close(self) -> None: ...
