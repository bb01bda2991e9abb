"""Reading the submissions: one row as a :class:`Submission`, the counts the dispatcher
polls, and the columns ``status`` and the leaderboard show.

A read takes no lock: each thread reads through its own connection, and in
WAL mode a read waits neither for a write nor for another read.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ramp_fleet.store.connection import Connections
from ramp_fleet.store.states import ACTIVE, State


@dataclass(frozen=True)
class Submission:
    """One row of the store, as read at one instant."""

    name: str
    state: State
    attempts: int
    not_before: float
    worker: str | None
    #: What the backend stored to find the run again (opaque here).
    run_state: str | None
    #: The submission's id where it came from (ramp-board's database), if anywhere.
    source_id: int | None
    submitted: float
    started: float | None
    finished: float | None
    returncode: int | None
    error: str | None
    peak_memory_mb: float | None
    score: float | None
    scores: dict[str, Any] | None
    #: Its team, where the source knows it (ramp-board, ``submit --team``): the fair queue's.
    team: str | None = None


_TIMES = ("submitted", "started", "finished")


_SUBMISSION_FIELDS = tuple(Submission.__dataclass_fields__)


def submission_of(row: sqlite3.Row) -> Submission:
    """The :class:`Submission` of a whole ``submissions`` row."""
    data = {key: row[key] for key in _SUBMISSION_FIELDS}  # an older store has columns since dropped
    data["state"] = State(data["state"])
    data["scores"] = json.loads(data["scores"]) if data["scores"] else None
    return Submission(**data)


class Reads(Connections):
    """The store's reads of the ``submissions`` table."""

    def get(self, name: str) -> Submission | None:
        row = self._db.execute("SELECT * FROM submissions WHERE name = ?", (name,)).fetchone()
        return submission_of(row) if row else None

    def all(self) -> list[Submission]:
        rows = self._db.execute("SELECT * FROM submissions ORDER BY submitted, name").fetchall()
        return [submission_of(row) for row in rows]

    def names(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT name FROM submissions")}

    def count(self, *states: State) -> int:
        marks = ",".join("?" * len(states))
        row = self._db.execute(
            f"SELECT COUNT(*) FROM submissions WHERE state IN ({marks})", states
        ).fetchone()
        return int(row[0])

    def counts(self) -> dict[State, int]:
        """How many submissions are in each state (every state, 0 included)."""
        rows = self._db.execute("SELECT state, COUNT(*) FROM submissions GROUP BY state").fetchall()
        found = {State(row[0]): int(row[1]) for row in rows}
        return {state: found.get(state, 0) for state in State}

    def waiting(self) -> list[tuple[str, int | None]]:
        """The ``new`` submissions in the order they will be claimed: ``(name, source_id)``."""
        rows = self._db.execute(
            "SELECT name, source_id FROM submissions WHERE state = ? "
            "ORDER BY not_before, submitted, name", (State.NEW,)).fetchall()
        return [(row[0], row[1]) for row in rows]

    def outstanding(self) -> tuple[int, int]:
        """``(new, active)``: waiting submissions (back-off included) and runs in flight.

        Read in one statement, so no claim or requeue can slip between the
        two counts: when both are 0, nothing is left to do.
        """
        marks = ",".join("?" * len(ACTIVE))
        row = self._db.execute(
            "SELECT (SELECT COUNT(*) FROM submissions WHERE state = ?), "
            f"(SELECT COUNT(*) FROM submissions WHERE state IN ({marks}))",
            (State.NEW, *ACTIVE),
        ).fetchone()
        return int(row[0]), int(row[1])

    def unfinished(self) -> bool:
        """Whether any submission waits (back-off included) or runs: what :meth:`outstanding`
        says when it is not ``(0, 0)``, in one look-up whatever the size of the event."""
        marks = ",".join("?" * (1 + len(ACTIVE)))
        row = self._db.execute(
            f"SELECT EXISTS (SELECT 1 FROM submissions WHERE state IN ({marks}))",
            (State.NEW, *ACTIVE),
        ).fetchone()
        return bool(row[0])

    def next_ready_at(self) -> float | None:
        """When the earliest submission waiting in back-off becomes ready."""
        row = self._db.execute(
            "SELECT MIN(not_before) FROM submissions WHERE state = ?", (State.NEW,)
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def scored_test_scores(self) -> Iterator[tuple[str, float | None, str | None]]:
        """``(name, peak_memory_mb, bagged test scores as JSON text)`` of every scored
        submission, read as they come (the fold scores stay in the file)."""
        yield from self._db.execute(
            "SELECT name, peak_memory_mb, test_scores FROM submissions "
            "WHERE state = ? AND scores IS NOT NULL ORDER BY name", (State.SCORED,))

    def rows(self, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        """The given columns of every submission in the order of :meth:`all`, read as they
        come: what ``status`` shows of 10 000 submissions, without 10 000 objects at once.
        Times come as ISO 8601 UTC, to the second (formatted by SQLite)."""
        unknown = set(columns) - set(_SUBMISSION_FIELDS)
        if unknown:
            raise ValueError(f"no such column: {', '.join(sorted(unknown))}")
        selected = ", ".join(f"strftime('%Y-%m-%dT%H:%M:%S+00:00', CAST({c} AS INTEGER), "
                             "'unixepoch')" if c in _TIMES else c for c in columns)
        cursor = self._db.cursor()
        cursor.row_factory = None
        yield from cursor.execute(f"SELECT {selected} FROM submissions ORDER BY submitted, name")
