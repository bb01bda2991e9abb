"""Which waiting submission runs next: the fair queue of one event.

First come, first served lets the team that submits ten variants in the last
hour push every other team's first submission behind all ten. The fair queue
gives the next slot to the team with the fewest runs *in flight and recently
done* (within :attr:`QueuePolicy.window`), and inside a team to its oldest
submission. A submission that has waited :attr:`QueuePolicy.max_wait` goes
before any team's turn, so no one waits forever however many teams keep
arriving. A submission without a team (a folder event's, unless ``submit
--team`` named one) is a team of its own.

The order is a pure function of what waits and of each team's load, so the
claim (:meth:`~ramp_fleet.store.queue.Queue.claim_next`) and the forecast
``status`` prints (:func:`fair_order`) cannot disagree.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ramp_fleet.config.sections import DispatcherSection


@dataclass(frozen=True)
class QueuePolicy:
    """How a slot chooses (``dispatcher.queue``, ``fair_window``, ``max_wait``)."""

    fair: bool = True
    #: Seconds during which a team's finished runs still count against it.
    window: float = 3600.0
    #: Seconds after which a waiting submission goes first, whatever its team's load.
    max_wait: float = 3600.0

    @classmethod
    def of(cls, settings: DispatcherSection) -> QueuePolicy:
        """The policy an event's ``dispatcher`` section asks for."""
        return cls(fair=settings.queue == "fair", window=settings.fair_window,
                   max_wait=settings.max_wait)


FIFO = QueuePolicy(fair=False)


@dataclass(frozen=True)
class Waiting:
    """A submission in the queue, as the policy sees it."""

    name: str
    #: Its team; the submission's own name when it has none.
    team: str
    submitted: float
    not_before: float


def _age_key(waiting: Waiting) -> tuple[float, str]:
    return (waiting.submitted, waiting.name)


def _team_key(waiting: Waiting, load: Mapping[str, int]) -> tuple[int, float, float, str]:
    return (load.get(waiting.team, 0), waiting.not_before, waiting.submitted, waiting.name)


def fair_next(waiting: Iterable[Waiting], load: Mapping[str, int], now: float,
              policy: QueuePolicy) -> Waiting | None:
    """The submission a free slot takes now, of those ready (``waiting``); ``load``: each
    team's runs in flight and finished within the window."""
    ready = list(waiting)
    if not ready:
        return None
    overdue = [entry for entry in ready if now - entry.submitted >= policy.max_wait]
    if overdue:
        return min(overdue, key=_age_key)
    return min(ready, key=lambda entry: _team_key(entry, load))


def fair_order(waiting: Iterable[Waiting], load: Mapping[str, int], now: float,
               policy: QueuePolicy) -> list[Waiting]:
    """Every waiting submission in the order slots would take them if nothing else arrived
    or finished: :func:`fair_next` again and again, each pick adding one run to its team."""
    entries = list(waiting)
    overdue = sorted((entry for entry in entries if now - entry.submitted >= policy.max_wait),
                     key=_age_key)
    taken = {entry.name for entry in overdue}
    load = dict(load)
    for entry in overdue:
        load[entry.team] = load.get(entry.team, 0) + 1
    teams: dict[str, list[Waiting]] = {}
    for entry in sorted((entry for entry in entries if entry.name not in taken),
                        key=lambda entry: (entry.not_before, entry.submitted, entry.name),
                        reverse=True):
        teams.setdefault(entry.team, []).append(entry)  # each team's oldest last
    heads = [(_team_key(queue[-1], load), team) for team, queue in teams.items()]
    heapq.heapify(heads)
    order = list(overdue)
    while heads:
        _, team = heapq.heappop(heads)
        queue = teams[team]
        order.append(queue.pop())
        load[team] = load.get(team, 0) + 1
        if queue:
            heapq.heappush(heads, (_team_key(queue[-1], load), team))
    return order


@dataclass(frozen=True)
class Forecast:
    """Where a waiting submission stands: its place in the queue (1: next) and, once a run
    length is known, in how many seconds it should start."""

    position: int
    starts_in: float | None


def forecast(order: list[Waiting], running_for: list[float], n_slots: int,
             run_length: float | None, now: float) -> dict[str, Forecast]:
    """Each waiting submission's :class:`Forecast`, taken in ``order`` by ``n_slots`` slots of
    which the runs in flight (``running_for``: seconds each has run) hold some, every run
    lasting ``run_length`` (the recent median; None: not known yet)."""
    if run_length is None:
        return {entry.name: Forecast(place, None) for place, entry in enumerate(order, 1)}
    free = sorted(max(0.0, run_length - ran) for ran in running_for)[:n_slots]
    free += [0.0] * (n_slots - len(free))
    heapq.heapify(free)
    result = {}
    for place, entry in enumerate(order, 1):
        start = max(heapq.heappop(free), entry.not_before - now)
        heapq.heappush(free, start + run_length)
        result[entry.name] = Forecast(place, start)
    return result
