"""The event's state: one embedded SQLite file, one transaction per state change (the two
moves of a scored result share one).

A dispatcher killed at any instant leaves the file consistent: a submission
is either in its old state or its new one, never in between. Readers in
other processes (``ramp-fleet status``) see committed states only (WAL).

:class:`Store` is the one object callers use; its parts live in the modules
next to this one: the tables (``schema``), the connections (``connection``),
the reads (``reading``), the state changes (``queue``), the run and instance
records (``runs``) and the event's facts (``meta``).
"""

from __future__ import annotations

from pathlib import Path

from ramp_fleet.store.meta import OFFICIAL_SCORE, Meta
from ramp_fleet.store.queue import Queue
from ramp_fleet.store.reading import Reads, Submission
from ramp_fleet.store.runs import Runs
from ramp_fleet.store.schema import SCHEMA_VERSION, migrate

__all__ = ["OFFICIAL_SCORE", "SCHEMA_VERSION", "Store", "Submission"]


class Store(Queue, Runs, Reads, Meta):
    """The submissions of one event. Safe to share between the dispatcher's threads.

    Each thread reads and writes through a connection of its own: in WAL mode
    a read never waits, neither for a write nor for another read, and takes no
    lock here. Writes (``BEGIN IMMEDIATE``, one per state change; one for the two
    of a scored result) queue on SQLite's own write lock, as writers in other
    processes (``submit``) do.
    (Measured with 8 threads taking 4 000 submissions through claim → training
    → tested → scored on 2 busy cores: 0.70–0.90 ms a submission; with a lock
    of ours in front of the writers, 0.75–0.90; the store before, one
    connection behind one lock whose counts read the whole table, 1.8–2.3.)
    """

    def __init__(self, path: Path):
        super().__init__(path)
        db = self._db
        db.execute("PRAGMA journal_mode=WAL")
        migrate(db)
