"""The record of each run attempt and of each AWS instance.

An attempt's record opens when its submission is claimed and closes with the
state change that ends it, inside that change's transaction (see
:mod:`ramp_fleet.store.queue`); the helpers below do that part.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict
from typing import Any

from ramp_fleet.store.connection import Connections
from ramp_fleet.store.records import InstanceRecord, Outcome, RunPlace, RunRecord


class Runs(Connections):
    """The store's run and instance records."""

    def runs(self) -> list[RunRecord]:
        """Every run attempt, in the order they were recorded."""
        rows = self._db.execute(
            "SELECT submission, attempt, slot, backend, queued, setup_start, launched, ended, "
            "collected, outcome, returncode, error, peak_memory_mb, instance_id, "
            "instance_type, market, dask_worker FROM runs ORDER BY id").fetchall()
        return [RunRecord(**{**dict(row), "outcome": Outcome(row["outcome"])}) for row in rows]

    def instances(self) -> list[InstanceRecord]:
        rows = self._db.execute(
            "SELECT * FROM instances ORDER BY launched, instance_id").fetchall()
        return [InstanceRecord(**dict(row)) for row in rows]

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


def place_values(place: RunPlace | None) -> dict[str, Any]:
    """The columns of ``runs`` a :class:`RunPlace` sets (none when there is no place)."""
    return {} if place is None else asdict(place)


def update_run(db: sqlite3.Connection, name: str, **values: Any) -> None:
    """Set the given values of ``name``'s open attempt (None leaves a value as recorded)."""
    given = {key: value for key, value in values.items() if value is not None}
    if given:
        columns = ", ".join(f"{key} = ?" for key in given)
        db.execute(f"UPDATE runs SET {columns} WHERE id = ?", (*given.values(), open_run(db, name)))


def open_run(db: sqlite3.Connection, name: str) -> int | None:
    """The id of ``name``'s open attempt (the last one still running)."""
    row = db.execute("SELECT MAX(id) FROM runs WHERE submission = ? AND outcome = ?",
                     (name, Outcome.RUNNING)).fetchone()
    return None if row is None else row[0]


def close_run(db: sqlite3.Connection, name: str, outcome: Outcome, *, ended: float | None = None,
              collected: float | None = None, **values: Any) -> None:
    """Close the open record of ``name``'s attempt (values given replace the recorded ones);
    ``collected``: when its slot was done with it (default now; a result scored after its
    slot moved on is recorded later)."""
    now = time.time()
    given = {key: value for key, value in values.items() if value is not None}
    columns = "".join(f", {key} = ?" for key in given)
    db.execute(
        f"UPDATE runs SET outcome = ?, ended = COALESCE(ended, ?), collected = ?{columns} "
        "WHERE id = ?",
        (outcome, ended or now, collected or now, *given.values(), open_run(db, name)),
    )
