"""One pool of worker slots shared by several events (``ramp-fleet dispatch`` of a
deployment, or of several configs).

Each event alone would get its own ``n_workers`` slots: idle in a quiet event
while another's queue is hours long. Here the slots of one worker kind are
shared, and a free slot goes to an event below its share (the pool's slots
split by ``dispatcher.share`` among the events that have something to run
and are under their cap — ``n_workers``: an event never holds more slots
than it would alone), the one whose next submission's team has run least
first (:meth:`SlotPool._order`). Inside the event, its own queue chooses
(the fair queue of :mod:`ramp_fleet.store.fair`).

The pool only lends slots: each event's dispatcher claims, runs, records and
recovers as it does alone (:class:`Tenant`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger("ramp_fleet.pool")

#: How often an idle slot asks again without being woken (a retry's back-off ending).
IDLE_RECHECK = 1.0


class Tenant(Protocol):
    """An event served on the pool (its dispatcher)."""

    name: str

    def peek(self) -> tuple[int, float] | None:
        """What :meth:`take` would run now: the runs its team has in flight and recently
        done, and when it was submitted; None when there is nothing to run."""

    def take(self, label: str) -> bool:
        """Claim this event's next ready submission and run it on slot ``label`` to its end;
        False when there is nothing to run now."""


@dataclass
class _Lease:
    tenant: Tenant
    share: float
    cap: int
    in_use: int = 0
    #: When it was last lent a slot (a count): of events equally below their share, the one
    #: served least recently goes first, not always the one that joined first.
    granted: int = 0


class SlotPool:
    """``n_slots`` slots named ``<prefix>-<i>``, lent to the events that joined."""

    def __init__(self, n_slots: int, prefix: str):
        self.n_slots = n_slots
        self.prefix = prefix
        self._leases: dict[int, _Lease] = {}
        self._lock = threading.Lock()
        #: Notified when there may be work for an idle slot.
        self._changed = threading.Condition(self._lock)
        #: Notified when a run ends (what :meth:`leave` waits for).
        self._ended = threading.Condition(self._lock)
        #: Counts the wakes: a slot waits only if none came since it last looked.
        self._generation = 0
        self._grants = 0
        self._closed = False
        self._slots = [threading.Thread(target=self._slot, args=(f"{prefix}-{i + 1}",),
                                        name=f"pool-{prefix}-{i + 1}", daemon=True)
                       for i in range(n_slots)]
        for slot in self._slots:
            slot.start()

    def join(self, tenant: Tenant, share: float, cap: int) -> None:
        """Lend slots to ``tenant`` from now on: ``share`` its weight, ``cap`` its most."""
        with self._changed:
            self._leases[id(tenant)] = _Lease(tenant, share, cap)
            self._wake_locked()

    def leave(self, tenant: Tenant) -> None:
        """Lend ``tenant`` no more slots, and return once its runs have ended."""
        with self._changed:
            lease = self._leases.get(id(tenant))
            if lease is None:
                return
            lease.cap = 0
            while lease.in_use:
                self._ended.wait()
            del self._leases[id(tenant)]

    def wake(self) -> None:
        """Something may have become ready to run (a new submission, a run ended)."""
        with self._changed:
            self._wake_locked()

    def close(self) -> None:
        """Stop the slots (after :meth:`leave` of every tenant: no run is cut short)."""
        with self._changed:
            self._closed = True
            self._wake_locked()
        for slot in self._slots:
            slot.join()

    def in_use(self) -> dict[str, int]:
        """Slots in use per event, by name."""
        with self._changed:
            return {lease.tenant.name: lease.in_use for lease in self._leases.values()}

    # -- the slots ------------------------------------------------------------------------

    def _wake_locked(self) -> None:
        self._generation += 1
        self._changed.notify_all()

    def _candidates(self) -> list[_Lease]:
        """The events under their cap (read under the lock; their queues are looked at
        outside it, by :meth:`_order`)."""
        return [lease for lease in self._leases.values() if lease.in_use < lease.cap]

    def _order(self, leases: list[_Lease]) -> list[_Lease]:
        """The events with something to run now, in the order a free slot tries them.

        First those that would stay within their share of the pool (its slots split by
        ``share`` among the events that want one); then, among equals, the one whose next
        submission's team has run least — a team's first submission before another team's
        tenth, across events as inside one; then the one furthest below its share, the
        one lent a slot least recently, the older submission.
        """
        heads: dict[int, tuple[int, float]] = {}
        for lease in leases:
            try:
                head = lease.tenant.peek()
            except Exception:  # a tenant's own bug: the others are served
                logger.exception("event %s: looking at its queue failed", lease.tenant.name)
                continue
            if head is not None:
                heads[id(lease)] = head
        wanting = [lease for lease in leases if id(lease) in heads]
        total = sum(lease.share for lease in wanting)

        def key(lease: _Lease) -> tuple[bool, int, float, int, float]:
            load, submitted = heads[id(lease)]
            beyond_share = lease.in_use + 1 > self.n_slots * lease.share / total + 1e-9
            return (beyond_share, load, (lease.in_use + 1) / lease.share, lease.granted,
                    submitted)

        return sorted(wanting, key=key)

    def _slot(self, label: str) -> None:
        while True:
            with self._changed:
                if self._closed:
                    return
                looked = self._generation
                candidates = self._candidates()
            ran = False
            for lease in self._order(candidates):
                with self._changed:
                    if lease.in_use >= lease.cap:
                        continue
                    lease.in_use += 1
                    self._grants += 1
                    lease.granted = self._grants
                try:
                    ran = lease.tenant.take(label)
                except Exception:  # a tenant's own bug: the slot goes on for the others
                    logger.exception("slot %s failed in event %s", label, lease.tenant.name)
                finally:
                    with self._changed:
                        lease.in_use -= 1
                        self._ended.notify_all()
                        if ran:  # a slot freed after a run: a capped event may go on
                            self._wake_locked()
                if ran:
                    break
            if not ran:
                with self._changed:
                    if self._generation == looked and not self._closed:
                        self._changed.wait(IDLE_RECHECK)
