"""What the dispatcher tells about submissions and runs, to whoever listens.

The store is the dispatcher's own record; listeners are everything else that
follows an event as it goes — the terminal's progress view
(:mod:`ramp_fleet.progress`), the live metrics (:mod:`ramp_fleet.metrics`),
ramp-board's database (:class:`ramp_fleet.ramp_board.sync.BoardSync`). Each is
told, after the store has recorded it, that submissions were queued, one was
claimed, launched, finished or put back in the queue, and is ticked from the
dispatcher's main loop. A listener must not block a slot: one that talks to a
slow service queues the work for a thread of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ramp_fleet.store import State, Store, Submission

logger = logging.getLogger("ramp_fleet.listeners")


@dataclass(frozen=True)
class Finished:
    """How one submission's last attempt ended (its final state)."""

    name: str
    state: State
    error: str | None = None
    returncode: int | None = None
    peak_memory_mb: float | None = None
    #: Seconds between the launch and the end of the run, when it was launched.
    training_seconds: float | None = None
    #: ``(name, value)`` of the official bagged test score, when it was scored.
    score: tuple[str, float] | None = None


@dataclass(frozen=True)
class Requeued:
    """A submission went back to ``new``."""

    name: str
    reason: str
    #: A retry that counts as an attempt; ``False``: the operator stopped it mid-way.
    counted: bool
    training_seconds: float | None = None
    #: Seconds until it may run again (a retry's back-off).
    retry_in: float = 0.0


class Listener:
    """Every method is optional; the base does nothing."""

    def queued(self, total: int, added: Sequence[str] = ()) -> None:
        """The store holds ``total`` submissions; ``added`` were just added to the queue."""

    def claimed(self, submission: Submission, slot: str) -> None:
        """A slot took ``submission`` (now ``sent_to_training``)."""

    def launched(self, name: str) -> None:
        """Its run started (``training``)."""

    def finished(self, result: Finished) -> None:
        """It reached a final state."""

    def requeued(self, requeued: Requeued) -> None:
        """It went back to ``new``."""

    def message(self, text: str) -> None:
        """A line for the operator (stopping, recovered runs, where the metrics are)."""

    def tick(self, store: Store, final: bool = False) -> None:
        """Called from the main loop every collection interval (the sleep interval under
        ``hunger_policy: sleep``) — not after each result — and once more, ``final``, when
        it ends."""

    def close(self) -> None:
        """The dispatcher stops; flush what is pending (may be called twice)."""


class Listeners(Listener):
    """Several listeners as one; one that fails is logged, never fatal to a run."""

    def __init__(self, listeners: Sequence[Listener] = ()):
        self.listeners = list(listeners)

    def queued(self, total: int, added: Sequence[str] = ()) -> None:
        self._each("queued", total, added)

    def claimed(self, submission: Submission, slot: str) -> None:
        self._each("claimed", submission, slot)

    def launched(self, name: str) -> None:
        self._each("launched", name)

    def finished(self, result: Finished) -> None:
        self._each("finished", result)

    def requeued(self, requeued: Requeued) -> None:
        self._each("requeued", requeued)

    def message(self, text: str) -> None:
        self._each("message", text)

    def tick(self, store: Store, final: bool = False) -> None:
        self._each("tick", store, final)

    def close(self) -> None:
        self._each("close")

    def _each(self, method: str, *args: object) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, method)(*args)
            except Exception:
                logger.exception("%s.%s failed", type(listener).__name__, method)
