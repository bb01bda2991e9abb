"""The event's state: one embedded SQLite file, one transaction per state change.

A dispatcher killed at any instant leaves the file consistent: a submission
is either in its old state or its new one, never in between. Readers in
other processes (``ramp-fleet status``) see committed states only (WAL).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ramp_fleet.store.records import InstanceRecord, Outcome, RunRecord
from ramp_fleet.store.states import ACTIVE, State, check_state_change

_SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    name            TEXT PRIMARY KEY,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    not_before      REAL NOT NULL DEFAULT 0,
    worker          TEXT,
    pgid            INTEGER,
    submitted       REAL NOT NULL,
    started         REAL,
    finished        REAL,
    returncode      INTEGER,
    error           TEXT,
    peak_memory_mb  REAL,
    score           REAL,
    scores          TEXT
);
CREATE TABLE IF NOT EXISTS history (
    name    TEXT NOT NULL,
    state   TEXT NOT NULL,
    at      REAL NOT NULL,
    note    TEXT
);
CREATE TABLE IF NOT EXISTS meta (
    key     TEXT PRIMARY KEY,
    value   TEXT NOT NULL
);
-- Run and instance records (records.py): what the report and the metrics read.
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, submission TEXT NOT NULL, attempt INTEGER NOT NULL, slot TEXT NOT NULL,
    backend TEXT NOT NULL, queued REAL NOT NULL, setup_start REAL, launched REAL, ended REAL,
    collected REAL, outcome TEXT NOT NULL, returncode INTEGER, error TEXT, peak_memory_mb REAL,
    instance_id TEXT, instance_type TEXT, market TEXT, dask_worker TEXT
);
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY, instance_type TEXT NOT NULL, market TEXT NOT NULL, region TEXT,
    launched REAL NOT NULL, terminated REAL
);
"""


@dataclass(frozen=True)
class Submission:
    """One row of the store, as read at one instant."""

    name: str
    state: State
    attempts: int
    not_before: float
    worker: str | None
    pgid: int | None
    submitted: float
    started: float | None
    finished: float | None
    returncode: int | None
    error: str | None
    peak_memory_mb: float | None
    score: float | None
    scores: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["not_before"], data["pgid"]
        data["state"] = str(self.state)
        for key in ("submitted", "started", "finished"):
            data[key] = _iso(data[key])
        return data


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


class Store:
    """The submissions of one event. Safe to share between the dispatcher's threads."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- reading ----------------------------------------------------------------

    def get(self, name: str) -> Submission | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM submissions WHERE name = ?", (name,)).fetchone()
        return _submission(row) if row else None

    def all(self) -> list[Submission]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM submissions ORDER BY submitted, name").fetchall()
        return [_submission(row) for row in rows]

    def names(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT name FROM submissions")}

    def count(self, *states: State) -> int:
        marks = ",".join("?" * len(states))
        with self._lock:
            row = self._db.execute(
                f"SELECT COUNT(*) FROM submissions WHERE state IN ({marks})", states
            ).fetchone()
        return int(row[0])

    def outstanding(self) -> tuple[int, int]:
        """``(new, active)``: waiting submissions (back-off included) and runs in flight.

        Read in one statement, so no claim or requeue can slip between the
        two counts: when both are 0, nothing is left to do.
        """
        marks = ",".join("?" * len(ACTIVE))
        with self._lock:
            row = self._db.execute(
                f"SELECT COALESCE(SUM(state = ?), 0), COALESCE(SUM(state IN ({marks})), 0) "
                "FROM submissions",
                (State.NEW, *ACTIVE),
            ).fetchone()
        return int(row[0]), int(row[1])

    def next_ready_at(self) -> float | None:
        """When the earliest submission waiting in back-off becomes ready."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(not_before) FROM submissions WHERE state = ?", (State.NEW,)
            ).fetchone()
        return None if row[0] is None else float(row[0])

    def history(self, name: str) -> list[tuple[str, str | None]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT state, note FROM history WHERE name = ? ORDER BY rowid", (name,)
            ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- changing state: one transaction each -----------------------------------------

    def add(self, name: str) -> bool:
        """Record a new submission; False when one of that name exists already."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO submissions (name, state, submitted) VALUES (?, ?, ?)",
                (name, State.NEW, time.time()),
            )
            if cursor.rowcount:
                _log(db, name, State.NEW)
            return bool(cursor.rowcount)

    def claim_next(self, worker: str) -> Submission | None:
        """Take the oldest ready ``new`` submission for ``worker`` (sent_to_training)."""
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT name FROM submissions WHERE state = ? AND not_before <= ? "
                "ORDER BY not_before, submitted, name LIMIT 1",
                (State.NEW, now),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE submissions SET state = ?, attempts = attempts + 1, worker = ?, "
                "started = ?, finished = NULL, returncode = NULL, error = NULL, pgid = NULL "
                "WHERE name = ?",
                (State.SENT_TO_TRAINING, worker, now, row[0]),
            )
            _log(db, row[0], State.SENT_TO_TRAINING, worker)
            claimed = db.execute("SELECT * FROM submissions WHERE name = ?", (row[0],)).fetchone()
        return _submission(claimed)

    def mark_training(self, name: str, pgid: int | None = None) -> None:
        self._move(name, State.TRAINING, pgid=pgid)

    def mark_tested(self, name: str, returncode: int, peak_memory_mb: float | None) -> None:
        self._move(name, State.TESTED, returncode=returncode, peak_memory_mb=peak_memory_mb)

    def mark_scored(self, name: str, score: float | None, scores: dict[str, Any]) -> None:
        self._move(
            name, State.SCORED, score=score, scores=json.dumps(scores), finished=time.time(), pgid=None
        )

    def mark_failed(
        self,
        name: str,
        state: State,
        error: str,
        returncode: int | None = None,
        peak_memory_mb: float | None = None,
    ) -> None:
        self._move(
            name, state, error=error, returncode=returncode, peak_memory_mb=peak_memory_mb,
            finished=time.time(), pgid=None, note=error.splitlines()[0] if error else None,
        )

    def requeue(self, name: str, not_before: float, reason: str, count_attempt: bool = True) -> None:
        """Back to ``new`` after a retry, ready again at ``not_before``."""
        with self._transaction() as db:
            current = _state(db, name)
            check_state_change(current, State.NEW)
            db.execute(
                "UPDATE submissions SET state = ?, not_before = ?, pgid = NULL, worker = NULL, "
                "attempts = attempts - ? WHERE name = ?",
                (State.NEW, not_before, 0 if count_attempt else 1, name),
            )
            _log(db, name, State.NEW, reason)

    def recover(self) -> list[Submission]:
        """Put every run a dead dispatcher left active back to ``new``, in one step.

        Returns them as they were (with their process groups) so the caller
        can stop what is still running. Their attempt is not counted.
        """
        marks = ",".join("?" * len(ACTIVE))
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT * FROM submissions WHERE state IN ({marks})", tuple(ACTIVE)
            ).fetchall()
            for row in rows:
                db.execute(
                    "UPDATE submissions SET state = ?, pgid = NULL, worker = NULL, "
                    "attempts = MAX(attempts - 1, 0), not_before = 0 WHERE name = ?",
                    (State.NEW, row["name"]),
                )
                _log(db, row["name"], State.NEW, "recovered after the dispatcher stopped")
        return [_submission(row) for row in rows]

    # -- run and instance records (records.py): what the report and the metrics read --------

    def add_run(self, run: RunRecord) -> int:
        """Record one run attempt; returns its row id."""
        values = asdict(run)
        columns = ", ".join(values)
        with self._transaction() as db:
            cursor = db.execute(
                f"INSERT INTO runs ({columns}) VALUES ({', '.join('?' * len(values))})",
                tuple(values.values()),
            )
        return int(cursor.lastrowid or 0)

    def save_instance(self, instance: InstanceRecord) -> None:
        """Record an instance, or its new state (terminated) when it is known already."""
        values = asdict(instance)
        with self._transaction() as db:
            db.execute(
                f"INSERT OR REPLACE INTO instances ({', '.join(values)}) "
                f"VALUES ({', '.join('?' * len(values))})",
                tuple(values.values()),
            )

    def runs(self) -> list[RunRecord]:
        """Every run attempt, in the order they were recorded."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM runs ORDER BY id").fetchall()
        records = []
        for row in rows:
            data = dict(row)
            del data["id"]
            data["outcome"] = Outcome(data["outcome"])
            records.append(RunRecord(**data))
        return records

    def instances(self) -> list[InstanceRecord]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM instances ORDER BY launched, instance_id").fetchall()
        return [InstanceRecord(**dict(row)) for row in rows]

    # -- end of run and instance records ------------------------------------------------------

    def _move(self, name: str, state: State, note: str | None = None, **values: Any) -> None:
        columns = ", ".join(f"{key} = ?" for key in ["state", *values])
        with self._transaction() as db:
            check_state_change(_state(db, name), state)
            db.execute(
                f"UPDATE submissions SET {columns} WHERE name = ?",
                (state, *values.values(), name),
            )
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


def _submission(row: sqlite3.Row) -> Submission:
    data = dict(row)
    data["state"] = State(data["state"])
    data["scores"] = json.loads(data["scores"]) if data["scores"] else None
    return Submission(**data)
