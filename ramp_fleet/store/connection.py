"""The store's file: one connection per thread, and the transaction every write goes through."""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class _Connection:
    """One thread's connection; it closes when the thread ends (the holder is dropped
    with the thread's locals) or when the store closes."""

    __slots__ = ("__weakref__", "db")

    def __init__(self, db: sqlite3.Connection):
        self.db = db


class Connections:
    """The connections to the store at ``path``: each thread opens its own at its first use."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._open: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._open_lock = threading.Lock()
        self._closed = False

    @property
    def _db(self) -> sqlite3.Connection:
        """This thread's connection (opened at its first use)."""
        held: _Connection | None = getattr(self._local, "connection", None)
        if held is None:
            if self._closed:
                raise sqlite3.ProgrammingError("the store is closed")
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                 timeout=30)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA synchronous=NORMAL")
            held = _Connection(db)
            self._local.connection = held
            with self._open_lock:
                self._open.add(held)
        return held.db

    def close(self) -> None:
        """Close every thread's connection."""
        with self._open_lock:
            self._closed = True
            held = list(self._open)
            self._open.clear()
        for connection in held:
            connection.db.close()
        self._local = threading.local()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: ``BEGIN IMMEDIATE`` takes SQLite's write lock at once,
        so what is read inside cannot change before the commit."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
