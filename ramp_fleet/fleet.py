"""Several events served at once on shared slots: ``ramp-fleet dispatch`` of a ramp-board
deployment folder (every event under ``events/``, or the ones named) or of several configs.

Each event keeps its own dispatcher — its kit, data, folders, store or
ramp-board event, timeout, worker settings, recovery and trusted scorer — and
borrows its slots from the one :class:`~ramp_fleet.pool.SlotPool` of its worker
kind. Served from a deployment folder, the fleet looks at ``events/`` every
:data:`SCAN_INTERVAL`: a new ``events/<name>/config.yml`` is served from then
on, and an event whose config is removed finishes what runs and stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ramp_fleet.config import EventConfig
from ramp_fleet.dispatcher import Dispatcher, Summary
from ramp_fleet.errors import UsageError
from ramp_fleet.faults import cleanups
from ramp_fleet.pool import SlotPool

logger = logging.getLogger("ramp_fleet.fleet")

#: How often a deployment's ``events/`` folder is looked at for events added or removed.
SCAN_INTERVAL = 2.0

#: How often the fleet looks whether its events are still served.
WATCH_INTERVAL = 0.2

#: Makes an event's dispatcher on ``pool``, and what to close once it has ended.
DispatcherFactory = Callable[[EventConfig, SlotPool], tuple[Dispatcher, Callable[[], None]]]


@dataclass
class Served:
    """One event of the fleet, while it is served and after."""

    config: Path
    event: EventConfig
    dispatcher: Dispatcher
    close: Callable[[], None]
    thread: threading.Thread | None = None
    summary: Summary | None = None
    #: What stopped it, if not its own end (an outside fault, a usage error).
    error: BaseException | None = None
    removed: bool = False


@dataclass
class EventsFolder:
    """The events of a ramp-board deployment: ``<deployment>/events/<name>/config.yml``, all
    of them or only those ``named``."""

    deployment: Path
    named: frozenset[str] = field(default_factory=frozenset)

    def configs(self) -> dict[str, Path]:
        found = {}
        for config in sorted((self.deployment / "events").glob("*/config.yml")):
            name = config.parent.name
            if not self.named or name in self.named:
                found[name] = config
        return found


class Fleet:
    """The events' dispatchers, each in a thread of its own, on one pool per worker kind."""

    def __init__(self, load: Callable[[Path], EventConfig], make: DispatcherFactory,
                 say: Callable[[str], None], slots: int | None = None):
        self._load = load
        self._make = make
        self._say = say
        #: Slots per pool: given, else the largest ``n_workers`` of the kind's first events.
        self._slots = slots
        self.pools: dict[str, SlotPool] = {}
        self.served: dict[Path, Served] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        #: Configs that could not be loaded, and when they were last changed.
        self._refused: dict[Path, float] = {}
        self.interrupted = False

    # -- serving ---------------------------------------------------------------------------

    def serve(self, events: Iterable[EventConfig], folder: EventsFolder | None = None) -> None:
        """Serve ``events`` (and, with ``folder``, those added to it) until every event is
        done by its own ``hunger_policy``, or the fleet is stopped."""
        events = list(events)
        for kind in {event.worker_type for event in events}:
            of_kind = [event.n_slots for event in events if event.worker_type == kind]
            self._pool(kind, max(of_kind))
        made: list[Served] = []
        try:
            for event in events:  # every event ready before any runs: a refusal runs nothing
                made.append(self._prepare(event.path, event))
        except BaseException:
            cleanups(*((f"closing event {served.event.event_name!r}", served.close)
                       for served in made),
                     *((f"stopping the {kind} slots", pool.close)
                       for kind, pool in self.pools.items()))
            raise
        try:
            for served in made:
                self._start(served)
            next_scan = time.monotonic() + SCAN_INTERVAL
            while self._any_alive():
                if folder is not None and time.monotonic() >= next_scan \
                        and not self._stopping.is_set():
                    self._scan(folder)
                    next_scan = time.monotonic() + SCAN_INTERVAL
                time.sleep(WATCH_INTERVAL)
        finally:
            self._stopping.set()
            for served in list(self.served.values()):
                if served.thread is not None:
                    served.thread.join()
            cleanups(*((f"stopping the {kind} slots", pool.close)
                       for kind, pool in self.pools.items()))

    def request_stop(self) -> None:
        """As for one event: first call, finish what runs; second, stop the runs now."""
        self.interrupted = True
        self._stopping.set()
        with self._lock:
            dispatchers = [served.dispatcher for served in self.served.values()]
        for dispatcher in dispatchers:
            dispatcher.request_stop()

    # -- events ----------------------------------------------------------------------------

    def _any_alive(self) -> bool:
        with self._lock:
            return any(served.thread is not None and served.thread.is_alive()
                       for served in self.served.values())

    def _pool(self, kind: str, n_slots: int) -> SlotPool:
        pool = self.pools.get(kind)
        if pool is None:
            prefix = kind.rpartition(":")[2]
            pool = self.pools[kind] = SlotPool(self._slots or n_slots, prefix)
        return pool

    def _prepare(self, config: Path, event: EventConfig) -> Served:
        dispatcher, close = self._make(event, self._pool(event.worker_type, event.n_slots))
        return Served(config.resolve(), event, dispatcher, close)

    def _start(self, served: Served) -> None:
        event = served.event
        served.thread = threading.Thread(target=self._run, args=(served,),
                                         name=f"event-{event.event_name}", daemon=True)
        with self._lock:
            self.served[served.config] = served
        served.thread.start()

    def _run(self, served: Served) -> None:
        try:
            served.summary = served.dispatcher.run()
        except BaseException as exc:  # one event's end: the others go on
            served.error = exc
            self._say(f"event {served.event.event_name!r} stopped: {_one_line(exc)}")
            logger.debug("event %s stopped", served.event.event_name, exc_info=True)
        finally:
            cleanups((f"closing event {served.event.event_name!r}", served.close))

    def _scan(self, folder: EventsFolder) -> None:
        """Serve the events added to the folder; let those removed finish and stop."""
        found = [config.resolve() for config in folder.configs().values()]
        with self._lock:
            known = dict(self.served)
        for config, served in known.items():
            if config not in found and not served.removed:
                served.removed = True
                self._say(f"event {served.event.event_name!r}: its config is gone; "
                          "finishing what runs")
                served.dispatcher.request_stop()
        for config in found:
            earlier = known.get(config)
            if earlier is not None and (not earlier.removed or (
                    earlier.thread is not None and earlier.thread.is_alive())):
                continue  # served; or removed and back before it stopped: it ends first
            try:
                changed = config.stat().st_mtime
            except OSError:  # removed since the listing: the next scan says so
                continue
            if self._refused.get(config) == changed:
                continue
            try:
                served = self._prepare(config, self._load(config))
            except UsageError as exc:
                self._refused[config] = changed
                self._say(f"not serving {config}: {exc}")
                continue
            self._refused.pop(config, None)
            self._say(f"event {served.event.event_name!r} added")
            self._start(served)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
