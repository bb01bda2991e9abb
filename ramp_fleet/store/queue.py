"""The queue's state changes: one transaction each (a scored result's two moves share
one), checked against the table of :mod:`ramp_fleet.store.states`, each written to
``history`` and to the record of the attempt it concerns.

A dispatcher killed at any instant leaves a submission in its old state or
its new one, never in between.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from ramp_fleet.store.connection import Connections
from ramp_fleet.store.reading import Submission, submission_of
from ramp_fleet.store.records import Outcome, RunPlace
from ramp_fleet.store.runs import close_run, open_run, place_values, update_run
from ramp_fleet.store.states import ACTIVE, State, check_state_change
from ramp_fleet.text import strict_json, visible


class Queue(Connections):
    """Adding submissions, claiming them, and moving them to their next state."""

    def add(self, name: str, source_id: int | None = None) -> bool:
        """Record a new submission; False when one of that name exists already."""
        return bool(self.add_many([name], [source_id]))

    def add_many(self, names: Sequence[str],
                 source_ids: Sequence[int | None] | None = None) -> list[str]:
        """Record new submissions in one transaction, in the order given (the order they are
        claimed in), each with its id at the source if any; returns those added (not those
        of a name that exists already)."""
        added: list[str] = []
        if not names:
            return added
        ids = source_ids if source_ids is not None else [None] * len(names)
        now = time.time()
        with self._transaction() as db:
            for name, source_id in zip(names, ids, strict=True):
                cursor = db.execute(
                    "INSERT OR IGNORE INTO submissions (name, state, submitted, source_id) "
                    "VALUES (?, ?, ?, ?)", (name, State.NEW, now, source_id))
                if cursor.rowcount:
                    _log(db, name, State.NEW)
                    added.append(name)
        return added

    def claim_next(self, worker: str, backend: str = "") -> Submission | None:
        """Take the oldest ready ``new`` submission for slot ``worker`` (sent_to_training),
        and open the record of this attempt."""
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT name, submitted, not_before FROM submissions WHERE state = ? "
                "AND not_before <= ? ORDER BY not_before, submitted, name LIMIT 1",
                (State.NEW, now),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE submissions SET state = ?, attempts = attempts + 1, worker = ?, "
                "started = ?, finished = NULL, returncode = NULL, error = NULL, run_state = NULL "
                "WHERE name = ?",
                (State.SENT_TO_TRAINING, worker, now, row[0]),
            )
            _log(db, row[0], State.SENT_TO_TRAINING, worker)
            claimed = db.execute("SELECT * FROM submissions WHERE name = ?", (row[0],)).fetchone()
            db.execute(
                "INSERT INTO runs (submission, attempt, slot, backend, queued, setup_start, outcome) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (row[0], claimed["attempts"], worker, backend, max(row[1], row[2]), now,
                 Outcome.RUNNING),
            )
        return submission_of(claimed)

    def mark_training(self, name: str, run_state: str | None = None,
                      details: RunPlace | None = None) -> None:
        place = details or RunPlace()
        with self._transaction() as db:
            _move(db, name, State.TRAINING, run_state=run_state)
            db.execute(
                "UPDATE runs SET launched = ?, instance_id = ?, instance_type = ?, market = ?, "
                "dask_worker = ? WHERE id = ?",
                (time.time(), place.instance_id, place.instance_type, place.market,
                 place.dask_worker, open_run(db, name)),
            )

    def record_scored(self, name: str, *, returncode: int, peak_memory_mb: float | None,
                      ended: float | None = None, place: RunPlace | None = None,
                      score: float | None, scores: dict[str, Any]) -> None:
        """Record a run's scored result: training → tested → scored in one transaction.

        Both moves are written to ``history`` as two state changes are, but a
        dispatcher killed in between cannot leave the submission ``tested``:
        nothing else would ever score it. ``ended`` defaults to now.
        """
        test = scores.get("bagged", {}).get("test")
        scores_json = strict_json(scores)
        test_json = None if test is None else strict_json(test)
        with self._transaction() as db:
            _move(db, name, State.TESTED, returncode=returncode, peak_memory_mb=peak_memory_mb)
            update_run(db, name, ended=ended or time.time(), returncode=returncode,
                       peak_memory_mb=peak_memory_mb, **place_values(place))
            _move(db, name, State.SCORED, score=score, scores=scores_json, test_scores=test_json,
                  finished=time.time(), run_state=None)
            close_run(db, name, Outcome.SCORED)

    def mark_failed(
        self,
        name: str,
        state: State,
        error: str,
        returncode: int | None = None,
        peak_memory_mb: float | None = None,
        ended: float | None = None,
        place: RunPlace | None = None,
    ) -> None:
        error = visible(error)
        with self._transaction() as db:
            _move(db, name, state, error=error, returncode=returncode,
                  peak_memory_mb=peak_memory_mb, finished=time.time(), run_state=None,
                  note=error.splitlines()[0] if error else None)
            close_run(db, name, Outcome(state.value), ended=ended, returncode=returncode,
                      error=error, peak_memory_mb=peak_memory_mb, **place_values(place))

    def requeue(self, name: str, not_before: float, reason: str, count_attempt: bool = True,
                place: RunPlace | None = None) -> None:
        """Back to ``new`` after a retry (``count_attempt``) or an interruption, ready at
        ``not_before``."""
        reason = visible(reason)
        with self._transaction() as db:
            check_state_change(_state(db, name), State.NEW)
            db.execute(
                "UPDATE submissions SET state = ?, not_before = ?, run_state = NULL, worker = NULL, "
                "attempts = attempts - ? WHERE name = ?",
                (State.NEW, max(not_before, time.time()), 0 if count_attempt else 1, name),
            )
            _log(db, name, State.NEW, reason)
            close_run(db, name, Outcome.RETRY if count_attempt else Outcome.INTERRUPTED,
                      error=reason, **place_values(place))

    def recover(self) -> list[Submission]:
        """Put every run a dead dispatcher left active back to ``new``, in one step.

        Returns them as they were (with their run states) so the backend can
        stop what is still running. Their attempt is not counted.
        """
        marks = ",".join("?" * len(ACTIVE))
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT * FROM submissions WHERE state IN ({marks})", tuple(ACTIVE)
            ).fetchall()
            for row in rows:
                db.execute(
                    "UPDATE submissions SET state = ?, run_state = NULL, worker = NULL, "
                    "attempts = MAX(attempts - 1, 0), not_before = ? WHERE name = ?",
                    (State.NEW, time.time(), row["name"]),
                )
                _log(db, row["name"], State.NEW, "recovered after the dispatcher stopped")
                close_run(db, row["name"], Outcome.INTERRUPTED,
                          error="the dispatcher stopped during the run")
        return [submission_of(row) for row in rows]


def _move(db: sqlite3.Connection, name: str, state: State, note: str | None = None,
          **values: Any) -> None:
    """Change ``name``'s state inside an open transaction, checked against the table."""
    check_state_change(_state(db, name), state)
    columns = ", ".join(f"{key} = ?" for key in ["state", *values])
    db.execute(f"UPDATE submissions SET {columns} WHERE name = ?", (state, *values.values(), name))
    _log(db, name, state, note)


def _state(db: sqlite3.Connection, name: str) -> State:
    row = db.execute("SELECT state FROM submissions WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise KeyError(f"no submission named {name!r}")
    return State(row[0])


def _log(db: sqlite3.Connection, name: str, state: State, note: str | None = None) -> None:
    db.execute(
        "INSERT INTO history (name, state, at, note) VALUES (?, ?, ?, ?)",
        (name, state, time.time(), note),
    )
