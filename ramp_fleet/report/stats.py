"""Figures computed from the timeline: per slot, per phase, training times, peak memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ramp_fleet.report.data import STATES, ReportData
from ramp_fleet.report.timeline import OUTCOMES, PHASES, Timeline
from ramp_fleet.store.records import Outcome

_FAILED_CODES = [OUTCOMES.index(Outcome.TRAINING_ERROR), OUTCOMES.index(Outcome.CHECKING_ERROR)]


@dataclass(frozen=True)
class SlotStats:
    slot: str
    runs: int
    failed: int
    #: Seconds from setup start to collection, summed over the slot's runs.
    busy_seconds: float
    #: ``busy_seconds`` over the time from the first queued run to the last collection.
    utilisation: float


@dataclass(frozen=True)
class Quantiles:
    n: int
    median: float
    p90: float
    max: float


@dataclass(frozen=True, eq=False)
class TrainingTimes:
    """Training times of the attempts that launched and ended, with a log-scale histogram."""

    seconds: np.ndarray
    edges: np.ndarray
    counts: np.ndarray


@dataclass(frozen=True)
class PeakMemory:
    """Highest peak memory measured for each submission, highest first; and how many
    attempts have none, by reason."""

    submissions: tuple[str, ...]
    mb: tuple[float, ...]
    #: Reason → attempts without a peak (see :data:`NO_PEAK`).
    without: dict[str, int] = field(default_factory=dict)


#: Why an attempt has no peak memory.
NO_PEAK = {
    "never_ran": "never started training (its setup failed, or it was stopped before)",
    "running": "still running",
    "not_measured": "not measured (run by an older ramp-fleet, or by a custom worker that "
                    "starts ramp-test without the runner)",
}


def failed_mask(timeline: Timeline) -> np.ndarray:
    return np.isin(timeline.outcome, _FAILED_CODES)


def slot_stats(timeline: Timeline) -> tuple[SlotStats, ...]:
    n_slots = len(timeline.slots)
    span = float(timeline.edges.max()) if timeline.n_runs else 0.0
    runs = np.bincount(timeline.lane, minlength=n_slots)
    failed = np.bincount(timeline.lane, weights=failed_mask(timeline), minlength=n_slots)
    busy = np.bincount(timeline.lane, weights=timeline.edges[:, 4] - timeline.edges[:, 1],
                       minlength=n_slots)
    return tuple(
        SlotStats(slot, int(runs[i]), int(failed[i]), float(busy[i]),
                  float(busy[i] / span) if span > 0 else 0.0)
        for i, slot in enumerate(timeline.slots)
    )


def quantiles(values: np.ndarray) -> Quantiles | None:
    if values.size == 0:
        return None
    median, p90 = np.quantile(values, [0.5, 0.9])
    return Quantiles(int(values.size), float(median), float(p90), float(values.max()))


def phase_stats(timeline: Timeline) -> dict[str, Quantiles | None]:
    durations = timeline.durations()
    return {phase: quantiles(durations[:, i]) for i, phase in enumerate(PHASES)}


def training_times(timeline: Timeline, max_bins: int = 40) -> TrainingTimes:
    """A histogram of training times: log-spaced bins when they span a factor of ten or more
    (seconds to hours), else even ones; about the square root of the runs in bins (a handful
    of runs gets a handful of bars, not forty slivers)."""
    seconds = timeline.durations()[timeline.trained, 2]
    if seconds.size == 0:
        empty = np.zeros(0)
        return TrainingTimes(seconds, empty, empty.astype(np.int64))
    bins = int(np.clip(np.ceil(np.sqrt(seconds.size)), 3, max_bins))
    low = max(float(seconds.min()), 1.0)
    high = max(float(seconds.max()), low * 1.01)
    if high / low >= 10:
        edges = np.geomspace(low, high, bins + 1)
    else:
        pad = max(0.5, 0.05 * (high - low))
        edges = np.linspace(max(low - pad, 0.0), high + pad, bins + 1)
    counts, _ = np.histogram(np.clip(seconds, edges[0], edges[-1]), bins=edges)
    return TrainingTimes(seconds, edges, counts)


def log_scale(training: TrainingTimes) -> bool:
    """Whether the histogram's bins are log-spaced."""
    edges = training.edges
    return edges.size > 2 and not np.allclose(np.diff(edges), edges[1] - edges[0])


def peak_memory(data: ReportData) -> PeakMemory:
    peaks: dict[str, float] = {}
    for name, mb in [(s.name, s.peak_memory_mb) for s in data.submissions] + [
        (r.submission, r.peak_memory_mb) for r in data.runs
    ]:
        if mb is not None:
            peaks[name] = max(mb, peaks.get(name, mb))
    without = dict.fromkeys(NO_PEAK, 0)
    for run in data.runs:
        if run.peak_memory_mb is not None:
            continue
        reason = ("running" if run.outcome == Outcome.RUNNING else
                  "never_ran" if run.launched is None else "not_measured")
        without[reason] += 1
    ordered = sorted(peaks.items(), key=lambda item: (-item[1], item[0]))
    return PeakMemory(tuple(name for name, _ in ordered), tuple(mb for _, mb in ordered),
                      {reason: count for reason, count in without.items() if count})


def success_rate(counts: dict[str, int]) -> float | None:
    """Scored over finished (scored, training errors, checking errors)."""
    finished = counts["scored"] + counts["training_error"] + counts["checking_error"]
    return counts["scored"] / finished if finished else None


def state_counts(states: Sequence[str]) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return counts
