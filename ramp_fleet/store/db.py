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

from ramp_fleet.store.records import InstanceRecord, Outcome, RunPlace, RunRecord
from ramp_fleet.store.states import ACTIVE, State, check_state_change

_SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    name            TEXT PRIMARY KEY,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    not_before      REAL NOT NULL DEFAULT 0,
    worker          TEXT,
    run_state       TEXT,
    source_id       INTEGER,
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
CREATE TABLE IF NOT EXISTS runs (
    id              INTEGER PRIMARY KEY,
    submission      TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    slot            TEXT NOT NULL,
    backend         TEXT NOT NULL,
    queued          REAL NOT NULL,
    setup_start     REAL,
    launched        REAL,
    ended           REAL,
    collected       REAL,
    outcome         TEXT NOT NULL,
    returncode      INTEGER,
    error           TEXT,
    peak_memory_mb  REAL,
    instance_id     TEXT,
    instance_type   TEXT,
    market          TEXT,
    dask_worker     TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_submission ON runs (submission, attempt);
CREATE TABLE IF NOT EXISTS instances (
    instance_id     TEXT PRIMARY KEY,
    instance_type   TEXT NOT NULL,
    market          TEXT NOT NULL,
    region          TEXT,
    launched        REAL NOT NULL,
    terminated      REAL
);
"""
#: Stores written before a column existed get it added (table, column, SQL type).
_ADDED_COLUMNS = (("submissions", "run_state", "TEXT"), ("submissions", "source_id", "INTEGER"))


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

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["not_before"], data["run_state"], data["source_id"]
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
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        for table, column, kind in _ADDED_COLUMNS:
            present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

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

    def counts(self) -> dict[State, int]:
        """How many submissions are in each state (every state, 0 included)."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM submissions GROUP BY state").fetchall()
        found = {State(row[0]): int(row[1]) for row in rows}
        return {state: found.get(state, 0) for state in State}

    def waiting(self) -> list[tuple[str, int | None]]:
        """The ``new`` submissions in the order they will be claimed: ``(name, source_id)``."""
        with self._lock:
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

    def add(self, name: str, source_id: int | None = None) -> bool:
        """Record a new submission; False when one of that name exists already."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO submissions (name, state, submitted, source_id) "
                "VALUES (?, ?, ?, ?)",
                (name, State.NEW, time.time(), source_id),
            )
            if cursor.rowcount:
                _log(db, name, State.NEW)
            return bool(cursor.rowcount)

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
        return _submission(claimed)

    def mark_training(self, name: str, run_state: str | None = None,
                      details: RunPlace | None = None) -> None:
        place = details or RunPlace()
        with self._transaction() as db:
            _move(db, name, State.TRAINING, run_state=run_state)
            db.execute(
                "UPDATE runs SET launched = ?, instance_id = ?, instance_type = ?, market = ?, "
                "dask_worker = ? WHERE id = ?",
                (time.time(), place.instance_id, place.instance_type, place.market,
                 place.dask_worker, _open_run(db, name)),
            )

    def mark_tested(self, name: str, returncode: int, peak_memory_mb: float | None,
                    ended: float | None = None, place: RunPlace | None = None) -> None:
        with self._transaction() as db:
            _move(db, name, State.TESTED, returncode=returncode, peak_memory_mb=peak_memory_mb)
            _update_run(db, name, ended=ended or time.time(), returncode=returncode,
                        peak_memory_mb=peak_memory_mb, **_place(place))

    def mark_scored(self, name: str, score: float | None, scores: dict[str, Any]) -> None:
        with self._transaction() as db:
            _move(db, name, State.SCORED, score=score, scores=json.dumps(scores),
                  finished=time.time(), run_state=None)
            _close_run(db, name, Outcome.SCORED)

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
        with self._transaction() as db:
            _move(db, name, state, error=error, returncode=returncode,
                  peak_memory_mb=peak_memory_mb, finished=time.time(), run_state=None,
                  note=error.splitlines()[0] if error else None)
            _close_run(db, name, Outcome(state.value), ended=ended, returncode=returncode,
                       error=error, peak_memory_mb=peak_memory_mb, **_place(place))

    def requeue(self, name: str, not_before: float, reason: str, count_attempt: bool = True,
                place: RunPlace | None = None) -> None:
        """Back to ``new`` after a retry (``count_attempt``) or an interruption, ready at
        ``not_before``."""
        with self._transaction() as db:
            check_state_change(_state(db, name), State.NEW)
            db.execute(
                "UPDATE submissions SET state = ?, not_before = ?, run_state = NULL, worker = NULL, "
                "attempts = attempts - ? WHERE name = ?",
                (State.NEW, max(not_before, time.time()), 0 if count_attempt else 1, name),
            )
            _log(db, name, State.NEW, reason)
            _close_run(db, name, Outcome.RETRY if count_attempt else Outcome.INTERRUPTED,
                       error=reason, **_place(place))

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
                _close_run(db, row["name"], Outcome.INTERRUPTED,
                           error="the dispatcher stopped during the run")
        return [_submission(row) for row in rows]

    # -- run and instance records --------------------------------------------------

    def runs(self) -> list[RunRecord]:
        """Every run attempt, in the order they were recorded."""
        with self._lock:
            rows = self._db.execute(
                "SELECT submission, attempt, slot, backend, queued, setup_start, launched, ended, "
                "collected, outcome, returncode, error, peak_memory_mb, instance_id, "
                "instance_type, market, dask_worker FROM runs ORDER BY id").fetchall()
        return [RunRecord(**{**dict(row), "outcome": Outcome(row["outcome"])}) for row in rows]

    def instances(self) -> list[InstanceRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM instances ORDER BY launched, instance_id").fetchall()
        return [InstanceRecord(**dict(row)) for row in rows]

    def add_run(self, run: RunRecord) -> int:
        """Record a whole attempt at once (an import, a synthetic event); returns its id.

        The dispatcher records its attempts through the state changes instead.
        """
        values = asdict(run)
        with self._transaction() as db:
            cursor = db.execute(
                f"INSERT INTO runs ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                tuple(values.values()),
            )
        return int(cursor.lastrowid or 0)

    def save_instance(self, record: InstanceRecord) -> None:
        """Record an instance, or its new state (terminated) when it is known already."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO instances (instance_id, instance_type, market, region, "
                "launched, terminated) VALUES (?, ?, ?, ?, ?, ?)",
                (record.instance_id, record.instance_type, record.market, record.region,
                 record.launched, record.terminated))

    def instance_terminated(self, instance_id: str, at: float | None = None) -> None:
        with self._transaction() as db:
            db.execute("UPDATE instances SET terminated = COALESCE(terminated, ?) "
                       "WHERE instance_id = ?", (at or time.time(), instance_id))


def _move(db: sqlite3.Connection, name: str, state: State, note: str | None = None,
          **values: Any) -> None:
    """Change ``name``'s state inside an open transaction, checked against the table."""
    check_state_change(_state(db, name), state)
    columns = ", ".join(f"{key} = ?" for key in ["state", *values])
    db.execute(f"UPDATE submissions SET {columns} WHERE name = ?", (state, *values.values(), name))
    _log(db, name, state, note)


def _place(place: RunPlace | None) -> dict[str, Any]:
    return {} if place is None else asdict(place)


def _update_run(db: sqlite3.Connection, name: str, **values: Any) -> None:
    """Set the given values of ``name``'s open attempt (None leaves a value as recorded)."""
    given = {key: value for key, value in values.items() if value is not None}
    if given:
        columns = ", ".join(f"{key} = ?" for key in given)
        db.execute(f"UPDATE runs SET {columns} WHERE id = ?", (*given.values(), _open_run(db, name)))


def _open_run(db: sqlite3.Connection, name: str) -> int | None:
    row = db.execute("SELECT MAX(id) FROM runs WHERE submission = ? AND outcome = ?",
                     (name, Outcome.RUNNING)).fetchone()
    return None if row is None else row[0]


def _close_run(db: sqlite3.Connection, name: str, outcome: Outcome, *, ended: float | None = None,
               **values: Any) -> None:
    """Close the open record of ``name``'s attempt (values given replace the recorded ones)."""
    now = time.time()
    given = {key: value for key, value in values.items() if value is not None}
    columns = "".join(f", {key} = ?" for key in given)
    db.execute(
        f"UPDATE runs SET outcome = ?, ended = COALESCE(ended, ?), collected = ?{columns} "
        "WHERE id = ?",
        (outcome, ended or now, now, *given.values(), _open_run(db, name)),
    )


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


_SUBMISSION_FIELDS = tuple(Submission.__dataclass_fields__)


def _submission(row: sqlite3.Row) -> Submission:
    data = {key: row[key] for key in _SUBMISSION_FIELDS}  # an older store has columns since dropped
    data["state"] = State(data["state"])
    data["scores"] = json.loads(data["scores"]) if data["scores"] else None
    return Submission(**data)
