"""What the report is built from: the store's records of one event, read at one instant."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ramp_fleet.report.prices import HourlyPrice
from ramp_fleet.store.records import InstanceRecord, RunRecord

#: Submission states in the order of their lifecycle (ramp-database's names).
STATES = ("new", "sent_to_training", "training", "tested", "scored", "checking_error", "training_error")


@dataclass(frozen=True)
class SubmissionSummary:
    """One submission as the store has it now."""

    name: str
    #: One of :data:`STATES`.
    state: str
    score: float | None = None
    #: The error excerpt of its last failed attempt.
    error: str | None = None
    attempts: int = 0
    #: Measured peak memory, when no run record carries one (older stores).
    peak_memory_mb: float | None = None


@dataclass(frozen=True)
class Waiting:
    """A submission in the queue: its place (1: next), its team, when it should start."""

    position: int
    name: str
    team: str | None
    #: Seconds from the report's instant; None before any run gave a run length.
    starts_in: float | None


@dataclass(frozen=True)
class ReportData:
    """Everything :func:`ramp_fleet.report.build_report` reads; it contacts nothing itself."""

    event: str
    #: Epoch seconds; runs still going are drawn up to this instant.
    generated_at: float
    submissions: Sequence[SubmissionSummary]
    runs: Sequence[RunRecord]
    instances: Sequence[InstanceRecord]
    #: Each failure links to ``logs_dir/<submission>/log``.
    logs_dir: Path
    #: ``worker.hourly_price``: USD per instance-hour when no better price is known.
    hourly_price: float | None = None
    #: The AWS worker's region, for instances whose record has none.
    region: str | None = None
    #: Prices looked up for the (instance type, region) pairs of the event
    #: (see :mod:`ramp_fleet.report.prices`); a pair missing here is priced at
    #: ``hourly_price``.
    prices: Mapping[tuple[str, str | None], HourlyPrice] = field(default_factory=dict)
    #: ``fair`` or ``fifo`` (``dispatcher.queue``), and the waiting submissions in its order.
    queue_policy: str = "fair"
    queue: Sequence[Waiting] = ()
