"""What the tests read and write in a store's file directly, with sqlite3: the
product has no use for a submission's history, for a run record written whole,
or for a submission as ``status --json`` shows it."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from ramp_fleet.config import EventConfig
from ramp_fleet.sources import FolderSource
from ramp_fleet.store import Store, Submission
from ramp_fleet.store.records import RunRecord


def history(store: Store, name: str) -> list[tuple[str, str | None]]:
    """Every state ``name`` went through, with its note, in order."""
    with closing(sqlite3.connect(store.path, timeout=30)) as db:
        rows = db.execute(
            "SELECT state, note FROM history WHERE name = ? ORDER BY rowid", (name,)
        ).fetchall()
    return [(row[0], row[1]) for row in rows]


def add_run(store: Store, run: RunRecord) -> int:
    """Record a whole attempt at once (a synthetic event); returns its id."""
    values = asdict(run)
    with closing(sqlite3.connect(store.path, timeout=30)) as db, db:
        cursor = db.execute(
            f"INSERT INTO runs ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
            tuple(values.values()),
        )
    return int(cursor.lastrowid or 0)


def status_json(submission: Submission) -> dict[str, Any]:
    """``submission`` as ``ramp-fleet status --json`` shows it."""
    data = asdict(submission)
    del data["not_before"], data["run_state"], data["source_id"]
    data["state"] = str(submission.state)
    for key in ("submitted", "started", "finished"):
        data[key] = iso_time(data[key])
    return data


def discover(event: EventConfig, store: Store) -> list[str]:
    """Add every submission folder not yet in the store; returns the new names (one look,
    the whole folder, as a dispatcher's first)."""
    return FolderSource(event).start(store)


def iso_time(timestamp: float | None) -> str | None:
    """``2026-12-01T10:14:46+00:00``: UTC, to the second (the fraction dropped)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(int(timestamp), UTC).isoformat()
