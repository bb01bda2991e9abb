"""What the dispatcher tells about submissions and runs, to whoever listens.

The store is the dispatcher's own record; observers are everything else
that follows an event as it goes — the live metrics, ramp-board's database.
Each is told, after the store has recorded it, that a submission was
claimed, launched, finished or put back in the queue, and is ticked from
the dispatcher's main loop. Observers must not block a slot: one that talks
to a slow service queues the work for a thread of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ramp_fleet.store import State, Store, Submission

logger = logging.getLogger("ramp_fleet.observers")


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


class RunObserver:
    """Every method is optional; the base does nothing."""

    def discovered(self, names: Sequence[str]) -> None:
        """New submissions were added to the queue."""

    def claimed(self, submission: Submission, slot: str) -> None:
        """A slot took ``submission`` (now ``sent_to_training``)."""

    def launched(self, name: str) -> None:
        """Its run started (``training``)."""

    def finished(self, result: Finished) -> None:
        """It reached a final state."""

    def requeued(self, name: str, reason: str, counted: bool,
                 training_seconds: float | None) -> None:
        """It went back to ``new``: a retry (``counted``) or an interruption (not counted)."""

    def tick(self, store: Store, final: bool = False) -> None:
        """Called from the main loop every collection interval (the sleep interval under
        ``hunger_policy: sleep``) — not after each result — and once more, ``final``, when
        it ends."""

    def close(self) -> None:
        """The dispatcher stops; flush what is pending."""


class Observers(RunObserver):
    """Several observers as one; one that fails is logged, never fatal to a run."""

    def __init__(self, observers: Sequence[RunObserver] = ()):
        self.observers = list(observers)

    def discovered(self, names: Sequence[str]) -> None:
        self._each("discovered", names)

    def claimed(self, submission: Submission, slot: str) -> None:
        self._each("claimed", submission, slot)

    def launched(self, name: str) -> None:
        self._each("launched", name)

    def finished(self, result: Finished) -> None:
        self._each("finished", result)

    def requeued(self, name: str, reason: str, counted: bool,
                 training_seconds: float | None) -> None:
        self._each("requeued", name, reason, counted, training_seconds)

    def tick(self, store: Store, final: bool = False) -> None:
        self._each("tick", store, final)

    def close(self) -> None:
        self._each("close")

    def _each(self, method: str, *args: object) -> None:
        for observer in self.observers:
            try:
                getattr(observer, method)(*args)
            except Exception:
                logger.exception("%s.%s failed", type(observer).__name__, method)
