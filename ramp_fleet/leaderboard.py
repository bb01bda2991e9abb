"""The leaderboard: scored submissions ranked by the problem's official score.

Computed on demand from the store (never on every dispatcher iteration, as
RAMP does), on the bagged test scores; the official score is the first score
type of ``problem.py``, with its direction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ramp_fleet.config import EventConfig
from ramp_fleet.store import State, Store


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
    from ramp_fleet.scoring import official_score_type

    score_type = official_score_type(event.dirs.kit.path)
    store = Store(event.store_path)
    try:
        scored = [s for s in store.all() if s.state == State.SCORED and s.scores]
    finally:
        store.close()
    rows = [(s, dict(s.scores["bagged"].get("test", {}))) for s in scored if s.scores]
    names = list(dict.fromkeys(name for _, scores in rows for name in scores))
    if score_type.name in names:
        names.remove(score_type.name)
    names.insert(0, score_type.name)
    worst = float("inf") if score_type.lower_is_better else float("-inf")
    sign = 1 if score_type.lower_is_better else -1

    def key(row: tuple[Any, dict[str, float]]) -> tuple[float, str]:
        value = row[1].get(score_type.name, worst)
        return (sign * value, row[0].name)

    ordered = sorted(rows, key=key)
    entries: list[Entry] = []
    for position, (submission, scores) in enumerate(ordered, start=1):
        previous = entries[-1] if entries else None
        tie = previous is not None and previous.scores.get(score_type.name) == scores.get(score_type.name)
        rank = previous.rank if tie and previous is not None else position
        entries.append(Entry(rank, submission.name, scores, submission.peak_memory_mb))
    return Leaderboard(score_type.name, score_type.lower_is_better, names, entries)
