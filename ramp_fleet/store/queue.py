"""The queue's state changes: one transaction each (a scored result's two moves share
one), checked against the table of :mod:`ramp_fleet.store.states`, each written to
``history`` and to the record of the attempt it concerns.

A dispatcher killed at any instant leaves a submission in its old state or
its new one, never in between.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from ramp_fleet.store.connection import Connections
from ramp_fleet.store.fair import (
    FIFO,
    Forecast,
    QueuePolicy,
    Waiting,
    fair_next,
    fair_order,
    forecast,
)
from ramp_fleet.store.reading import Submission, submission_of
from ramp_fleet.store.records import Outcome, RunPlace
from ramp_fleet.store.runs import close_run, open_run, place_values, update_run
from ramp_fleet.store.states import ACTIVE, FINAL, State, check_state_change
from ramp_fleet.text import strict_json, visible


class Queue(Connections):
    """Adding submissions, claiming them, and moving them to their next state."""

    def add(self, name: str, source_id: int | None = None, team: str | None = None) -> bool:
        """Record a new submission; False when one of that name exists already."""
        return bool(self.add_many([name], [source_id], [team]))

    def add_publishing(self, name: str, team: str | None, publish: Callable[[], object]) -> bool:
        """Record a new submission of ``team`` and call ``publish`` (which makes its folder
        appear) inside the same write transaction; False, and nothing published, when one
        of that name exists already.

        A dispatcher that finds the folder the instant it appears records it in a
        transaction of its own: it waits for this one, so it never claims the
        submission without its team. ``publish`` raising records nothing.
        """
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO submissions (name, state, submitted, team) "
                "VALUES (?, ?, ?, ?)", (name, State.NEW, time.time(), team))
            if not cursor.rowcount:
                return False
            _log(db, name, State.NEW)
            publish()
        return True

    def add_many(self, names: Sequence[str],
                 source_ids: Sequence[int | None] | None = None,
                 teams: Sequence[str | None] | None = None) -> list[str]:
        """Record new submissions in one transaction, in the order given (the order they are
        claimed in, teams aside), each with its id at the source and its team if known;
        returns those added (not those of a name that exists already)."""
        added: list[str] = []
        if not names:
            return added
        ids = source_ids if source_ids is not None else [None] * len(names)
        team_of = teams if teams is not None else [None] * len(names)
        now = time.time()
        with self._transaction() as db:
            for name, source_id, team in zip(names, ids, team_of, strict=True):
                cursor = db.execute(
                    "INSERT OR IGNORE INTO submissions (name, state, submitted, source_id, team) "
                    "VALUES (?, ?, ?, ?, ?)", (name, State.NEW, now, source_id, team))
                if cursor.rowcount:
                    _log(db, name, State.NEW)
                    added.append(name)
        return added

    def queue_forecast(self, n_slots: int, policy: QueuePolicy) -> dict[str, Forecast]:
        """Every ``new`` submission's place in the queue and estimated start, as
        ``n_slots`` slots under ``policy`` would take them now (``status`` prints them)."""
        db = self._db
        now = time.time()
        waiting = [Waiting(name, (team or name) if policy.fair else name, submitted, not_before)
                   for name, team, submitted, not_before in db.execute(
                       "SELECT name, team, submitted, not_before FROM submissions "
                       "WHERE state = ?", (State.NEW,))]
        ready = [entry for entry in waiting if entry.not_before <= now]
        later = sorted((entry for entry in waiting if entry.not_before > now),
                       key=lambda entry: (entry.not_before, entry.submitted, entry.name))
        if policy.fair:
            order = fair_order(ready, team_load(db, now - policy.window), now, policy)
        else:
            order = sorted(ready, key=lambda entry: (entry.not_before, entry.submitted,
                                                     entry.name))
        active = ",".join("?" * len(ACTIVE))
        running_for = [now - started for (started,) in db.execute(
            f"SELECT started FROM submissions WHERE state IN ({active}) "
            "AND started IS NOT NULL", tuple(ACTIVE))]
        return forecast(order + later, running_for, n_slots, _run_length(db), now)

    def peek_next(self, policy: QueuePolicy = FIFO) -> tuple[int, float] | None:
        """What :meth:`claim_next` would take now, without taking it: its team's load (runs
        in flight and recent) and when it was submitted; None when nothing is ready."""
        row = _next_ready(self._db, time.time(), policy)
        return None if row is None else (row[3], row[1])

    def claim_next(self, worker: str, backend: str = "",
                   policy: QueuePolicy = FIFO) -> Submission | None:
        """Take the next ready ``new`` submission for slot ``worker`` (sent_to_training) —
        the oldest, or under a fair ``policy`` the one :mod:`ramp_fleet.store.fair` picks —
        and open the record of this attempt."""
        now = time.time()
        with self._transaction() as db:
            row = _next_ready(db, now, policy)
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
                      score: float | None, scores: dict[str, Any],
                      collected: float | None = None) -> None:
        """Record a run's scored result: training → tested → scored in one transaction.

        Both moves are written to ``history`` as two state changes are, but a
        dispatcher killed in between cannot leave the submission ``tested``:
        nothing else would ever score it. ``ended`` and ``collected`` (its slot
        done with it) default to now.
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
            close_run(db, name, Outcome.SCORED, collected=collected)

    def mark_failed(
        self,
        name: str,
        state: State,
        error: str,
        returncode: int | None = None,
        peak_memory_mb: float | None = None,
        ended: float | None = None,
        place: RunPlace | None = None,
        collected: float | None = None,
    ) -> None:
        error = visible(error)
        with self._transaction() as db:
            _move(db, name, state, error=error, returncode=returncode,
                  peak_memory_mb=peak_memory_mb, finished=time.time(), run_state=None,
                  note=error.splitlines()[0] if error else None)
            close_run(db, name, Outcome(state.value), ended=ended, collected=collected,
                      returncode=returncode, error=error, peak_memory_mb=peak_memory_mb,
                      **place_values(place))

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


def _next_ready(db: sqlite3.Connection, now: float,
                policy: QueuePolicy) -> tuple[str, float, float, int] | None:
    """(name, submitted, not_before, its team's load) of the submission a slot takes now,
    if any (the load is 0 where the order does not weigh it: FIFO, overdue, no team)."""
    if not policy.fair or db.execute(
            "SELECT 1 FROM submissions WHERE state = ? AND team IS NOT NULL LIMIT 1",
            (State.NEW,)).fetchone() is None:
        # No team known: every submission is a team of its own, and the fair order is the
        # oldest first (ageing aside), read from the queue's index in one step.
        row = db.execute(
            "SELECT name, submitted, not_before FROM submissions WHERE state = ? "
            "AND not_before <= ? ORDER BY not_before, submitted, name LIMIT 1",
            (State.NEW, now)).fetchone()
        return None if row is None else (row[0], row[1], row[2], 0)
    overdue = db.execute(
        "SELECT name, submitted, not_before FROM submissions WHERE state = ? "
        "AND not_before <= ? AND submitted <= ? ORDER BY submitted, name LIMIT 1",
        (State.NEW, now, now - policy.max_wait)).fetchone()
    if overdue is not None:
        return (overdue[0], overdue[1], overdue[2], 0)
    # Only a team's head can be chosen (its oldest ready submission): one look-up in the
    # team index per team, not a read of the whole queue. Of the submissions without a
    # team (each a team of its own, none with a run in flight or done: load 0), the oldest.
    heads = [Waiting(name, team or name, submitted, not_before)
             for name, team, submitted, not_before in db.execute(
                 "WITH teams AS (SELECT DISTINCT team FROM submissions WHERE state = ? "
                 "AND team IS NOT NULL) "
                 "SELECT s.name, s.team, s.submitted, s.not_before FROM teams "
                 "JOIN submissions AS s ON s.name = (SELECT name FROM submissions "
                 "WHERE state = ? AND team = teams.team AND not_before <= ? "
                 "ORDER BY not_before, submitted, name LIMIT 1) "
                 "UNION ALL SELECT * FROM (SELECT name, team, submitted, not_before "
                 "FROM submissions WHERE state = ? AND team IS NULL AND not_before <= ? "
                 "ORDER BY not_before, submitted, name LIMIT 1)",
                 (State.NEW, State.NEW, now, State.NEW, now))]
    load = team_load(db, now - policy.window)
    chosen = fair_next(heads, load, now, policy)
    if chosen is None:
        return None
    return (chosen.name, chosen.submitted, chosen.not_before, load.get(chosen.team, 0))


def team_load(db: sqlite3.Connection, since: float) -> dict[str, int]:
    """Each team's runs in flight and finished since ``since`` (a submission without a team
    is a team of its own)."""
    load: dict[str, int] = {}
    active = ",".join("?" * len(ACTIVE))
    final = ",".join("?" * len(FINAL))
    for team, count in db.execute(
            f"SELECT COALESCE(team, name), COUNT(*) FROM submissions WHERE state IN ({active}) "
            f"GROUP BY 1 UNION ALL "
            f"SELECT COALESCE(team, name), COUNT(*) FROM submissions WHERE finished >= ? "
            f"AND state IN ({final}) GROUP BY 1", (*ACTIVE, since, *FINAL)):
        load[team] = load.get(team, 0) + count
    return load


#: How many of the last runs the estimated run length is the median of.
RECENT_RUNS = 50


def _run_length(db: sqlite3.Connection) -> float | None:
    """The median length of the last runs (claim to result), None before the first."""
    lengths = sorted(row[0] for row in db.execute(
        "SELECT ended - setup_start FROM runs WHERE ended IS NOT NULL AND setup_start IS NOT "
        "NULL ORDER BY id DESC LIMIT ?", (RECENT_RUNS,)))
    return lengths[len(lengths) // 2] if lengths else None
