"""The leaderboard: scored submissions ranked by the problem's official score.

Computed on demand from the store (never on every dispatcher iteration, as
RAMP does), on the bagged test scores; the official score is the first score
type of ``problem.py``, with its direction — as the store recorded it when the
first submission was scored, so a leaderboard reads the store and nothing
else. Only a store scored before that was recorded asks the kit, once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ramp_fleet.config import EventConfig
from ramp_fleet.scoring.official import official_score
from ramp_fleet.store import Store


@dataclass(frozen=True)
class Entry:
    rank: int
    name: str
    scores: dict[str, float]
    peak_memory_mb: float | None


@dataclass(frozen=True)
class Leaderboard:
    official: str
    lower_is_better: bool
    score_names: list[str]
    entries: list[Entry] = field(default_factory=list)

    def as_json(self) -> list[dict[str, Any]]:
        return [
            {"rank": e.rank, "name": e.name, "score": e.scores.get(self.official),
             "score_name": self.official, "lower_is_better": self.lower_is_better,
             "scores": e.scores, "peak_memory_mb": e.peak_memory_mb}
            for e in self.entries
        ]


def build_leaderboard(event: EventConfig) -> Leaderboard:
    store = Store(event.store_path)
    try:
        official, lower_is_better = official_score(store, event.dirs.kit.path)
        rows = [(name, peak, json.loads(test) if test else {})
                for name, peak, test in store.scored_test_scores()]
    finally:
        store.close()
    names = list(dict.fromkeys(score for _, _, scores in rows for score in scores))
    if official in names:
        names.remove(official)
    names.insert(0, official)
    worst = float("inf") if lower_is_better else float("-inf")
    sign = 1 if lower_is_better else -1
    rows.sort(key=lambda row: (sign * row[2].get(official, worst), row[0]))
    entries: list[Entry] = []
    for position, (name, peak, scores) in enumerate(rows, start=1):
        previous = entries[-1] if entries else None
        tie = previous is not None and previous.scores.get(official) == scores.get(official)
        rank = previous.rank if tie and previous is not None else position
        entries.append(Entry(rank, name, scores, peak))
    return Leaderboard(official, lower_is_better, names, entries)
