"""``build_report``: every figure of the report, computed once from :class:`ReportData`.

The HTML page and ``--json`` both read the :class:`Report`; nothing here
draws or contacts anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ramp_fleet.report.costs import AwsCosts, aws_costs
from ramp_fleet.report.data import ReportData, Waiting
from ramp_fleet.report.failures import FailureGroup, group_failures
from ramp_fleet.report.stats import (
    PeakMemory,
    Quantiles,
    SlotStats,
    TrainingTimes,
    peak_memory,
    phase_stats,
    slot_stats,
    state_counts,
    success_rate,
    training_times,
)
from ramp_fleet.report.timeline import OUTCOMES, Timeline, build_timeline


@dataclass(frozen=True, eq=False)
class Report:
    event: str
    generated_at: float
    logs_dir: Path
    #: Submissions by state, every state listed (ramp-database's order).
    counts: dict[str, int]
    success_rate: float | None
    #: Attempts by outcome (running, scored, ..., retry, interrupted).
    runs_by_outcome: dict[str, int]
    #: Every submission named by the store; the timeline refers to them by index.
    submission_names: tuple[str, ...]
    timeline: Timeline
    slots: tuple[SlotStats, ...]
    phases: dict[str, Quantiles | None]
    training: TrainingTimes
    failures: tuple[FailureGroup, ...]
    peak_memory: PeakMemory
    aws: AwsCosts | None
    #: ``fair`` or ``fifo``, and the waiting submissions in the order slots will take them.
    queue_policy: str = "fair"
    queue: tuple[Waiting, ...] = ()

    @property
    def span_seconds(self) -> float:
        """From the first queued attempt to the last collection (utilisation's denominator)."""
        return float(self.timeline.edges.max()) if self.timeline.n_runs else 0.0


def build_report(data: ReportData) -> Report:
    names = tuple(dict.fromkeys([s.name for s in data.submissions] + [r.submission for r in data.runs]))
    timeline = build_timeline(data.runs, {name: i for i, name in enumerate(names)}, data.generated_at)
    counts = state_counts([summary.state for summary in data.submissions])
    by_outcome = dict.fromkeys(OUTCOMES, 0)
    for run in data.runs:
        by_outcome[str(run.outcome)] += 1
    return Report(
        event=data.event,
        generated_at=data.generated_at,
        logs_dir=data.logs_dir,
        counts=counts,
        success_rate=success_rate(counts),
        runs_by_outcome=by_outcome,
        submission_names=names,
        timeline=timeline,
        slots=slot_stats(timeline),
        phases=phase_stats(timeline),
        training=training_times(timeline),
        failures=group_failures(data),
        peak_memory=peak_memory(data),
        aws=aws_costs(data),
        queue_policy=data.queue_policy,
        queue=tuple(data.queue),
    )
