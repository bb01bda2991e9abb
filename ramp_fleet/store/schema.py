"""The store's tables, and bringing a store written by earlier code up to date."""

from __future__ import annotations

import sqlite3

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
    scores          TEXT,
    test_scores     TEXT,
    team            TEXT
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
-- The queue in claim order, and a look-up by state: a claim, "is anything left?" and the
-- count of one state never read the whole table (an event may hold tens of thousands).
CREATE INDEX IF NOT EXISTS submissions_queue ON submissions (state, not_before, submitted, name);
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
_ADDED_COLUMNS = (("submissions", "run_state", "TEXT"), ("submissions", "source_id", "INTEGER"),
                  ("submissions", "test_scores", "TEXT"), ("submissions", "team", "TEXT"))
#: Indexes on added columns: made once the columns are there.
_LATE_INDEXES = """
-- The fair queue (store/fair.py): whether any waiting submission has a team, each team's
-- oldest ready submission, and each team's runs finished within the window, without
-- reading the whole table.
CREATE INDEX IF NOT EXISTS submissions_team_queue
    ON submissions (state, team, not_before, submitted, name);
CREATE INDEX IF NOT EXISTS submissions_finished ON submissions (finished);
"""
#: The schema this code writes (SQLite's ``user_version``; 0: a store from before it was
#: kept). 2: the queue index; ``test_scores``, the bagged test scores apart from the
#: fold scores (what a leaderboard reads); the official score kept in ``meta`` under
#: :data:`~ramp_fleet.store.meta.OFFICIAL_SCORE` — recorded when the first result is scored, and for a store
#: scored before that, the first time it is asked for (:func:`ramp_fleet.scoring.official.official_score`).
#: 3: ``team``, the submission's team (the fair queue), and its indexes.
SCHEMA_VERSION = 3


def migrate(db: sqlite3.Connection) -> None:
    """Bring a new file, or a store of any earlier version, to :data:`SCHEMA_VERSION`.

    Every step is idempotent, so two processes opening an old store at once
    both end with the same schema. A store that is current costs one read.
    """
    if db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    db.executescript(_SCHEMA)
    for table, column, kind in _ADDED_COLUMNS:
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            try:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            except sqlite3.OperationalError as exc:  # another process added it just now
                if "duplicate column" not in str(exc):
                    raise
    db.executescript(_LATE_INDEXES)
    db.execute("UPDATE submissions SET test_scores = json_extract(scores, '$.bagged.test') "
               "WHERE scores IS NOT NULL AND test_scores IS NULL")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
