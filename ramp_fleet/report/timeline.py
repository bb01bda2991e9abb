"""The run attempts as numpy columns: one bar per attempt, one lane per worker slot.

Each attempt is five instants, in seconds from the event's first queued run:
queued, setup start, launch, end, collection; the four phases between them
are queue wait, setup, training and collection. A step the record does not
have (a setup that failed never launched) takes no time: it gets the next
known instant. A run still going is drawn up to the report's time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ramp_fleet.store.records import Outcome, RunRecord

PHASES = ("queue_wait", "setup", "training", "collection")
#: ``Timeline.outcome`` holds indexes into this tuple.
OUTCOMES = tuple(str(outcome) for outcome in Outcome)


@dataclass(frozen=True, eq=False)
class Timeline:
    #: Epoch seconds of the first queued attempt (or the report's time when none ran).
    start: float
    slots: tuple[str, ...]
    #: int16, index into ``slots``.
    lane: np.ndarray
    #: int8, index into :data:`OUTCOMES`.
    outcome: np.ndarray
    #: int32, index into the report's submission names.
    submission: np.ndarray
    attempt: np.ndarray
    #: float64 (n, 5): queued, setup start, launch, end, collection; seconds from ``start``.
    edges: np.ndarray
    #: bool: the attempt launched and its training ended (it has a real training time).
    trained: np.ndarray

    @property
    def n_runs(self) -> int:
        return int(self.lane.size)

    def durations(self) -> np.ndarray:
        """float64 (n, 4): seconds spent in each of :data:`PHASES`."""
        return np.diff(self.edges, axis=1)


def slot_order(slot: str) -> tuple[object, ...]:
    """Natural order: ``conda-2`` before ``conda-10``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", slot))


def build_timeline(runs: Sequence[RunRecord], names: Mapping[str, int], now: float) -> Timeline:
    """The attempts' columns; ``names`` maps each submission to its index."""
    slots = tuple(sorted({run.slot for run in runs}, key=slot_order))
    lanes = {slot: index for index, slot in enumerate(slots)}
    raw = np.array([(run.queued, run.setup_start, run.launched, run.ended, run.collected) for run in runs],
                   dtype=np.float64).reshape(len(runs), 5)
    outcome = np.array([OUTCOMES.index(str(run.outcome)) for run in runs], dtype=np.int8)
    trained = ~np.isnan(raw[:, 2]) & ~np.isnan(raw[:, 3])
    edges = _filled(raw, outcome == OUTCOMES.index(Outcome.RUNNING), now)
    start = float(edges[:, 0].min()) if len(runs) else now
    return Timeline(
        start=start,
        slots=slots,
        lane=np.array([lanes[run.slot] for run in runs], dtype=np.int16),
        outcome=outcome,
        submission=np.array([names[run.submission] for run in runs], dtype=np.int32),
        attempt=np.array([run.attempt for run in runs], dtype=np.int16),
        edges=edges - start,
        trained=trained,
    )


def _filled(raw: np.ndarray, running: np.ndarray, now: float) -> np.ndarray:
    edges = raw.copy()
    # A run still going lasts until now; a missing step takes no time.
    edges[running & np.isnan(edges[:, 4]), 4] = now
    for column in range(3, 0, -1):
        edges[:, column] = np.where(np.isnan(edges[:, column]), edges[:, column + 1], edges[:, column])
    for column in range(1, 5):
        edges[:, column] = np.where(np.isnan(edges[:, column]), edges[:, column - 1], edges[:, column])
    return np.maximum.accumulate(edges, axis=1)
