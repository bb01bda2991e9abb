"""Serve a ramp-board event: its database is where submissions come from and results go.

The dispatcher keeps working on its own SQLite store; :class:`BoardSync`
keeps ramp-board's database in step with it, through the one helper process
of :class:`~ramp_fleet.ramp_board.client.RampBoardClient`:

* **Submissions in**: the event's new submissions (not the sandbox) are
  polled from the database — only ids above the last one seen, with a full
  look now and then — and added to the store under their folder name
  (``submission_000000042``), in submission order. ramp-board makes a new
  submission's folder in the submissions folder just before it commits the
  submission, so that folder's time is looked at every
  :data:`NUDGE_CHECK` (one ``stat``): when it moves, the database is asked at
  once, and again shortly after until the submission is there — a
  participant's submission is found in a fraction of a second without
  asking the database more often.
* **States out**: every claim, launch, requeue and result the dispatcher
  records is written with ramp-database's own functions (``set_state``,
  ``set_results`` = ``set_time`` + ``set_scores`` + ``set_bagged_scores``,
  ``set_submission_error_msg``...), queue positions kept current, and the
  leaderboards refreshed as soon as a result is written: one refresh at a
  time, the results that land during one all shown by the next, which
  starts no sooner than twice what the last one took (and
  ``store.leaderboard_interval``) after it — a participant's score is on the
  website a moment after its run, and in a burst refreshing is at most a
  third of the helper's time. A refresh
  recomputes the event's leaderboards and those of the teams whose
  submissions moved since the last one (not every team's).

All of it runs in one thread of its own, in order: a slow or absent
database never holds a run up. While the database is away, writes wait in
order and are sent when it is back; what a dispatcher could not send before
it stopped is re-sent at the next start, from the store (:meth:`BoardSync.start`),
so nothing is lost and nothing is scored twice (every write is idempotent).

A store can belong to an earlier life of the event (a test event deleted and
deployed again under the same name): its submissions are not the database's
any more — their ids are gone, or the database's were made after the store
recorded them. Re-sending its results would write them onto strangers'
submissions (or fail on ids that no longer exist), so it is recognised before
anything is sent (:meth:`BoardSync.set_aside_earlier_life`): kept, renamed
beside itself, and a fresh store serves the event as it is now. A store the
database merely missed writes from (an outage) is re-sent, never set aside.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ramp_fleet.config import EventConfig
from ramp_fleet.errors import UsageError
from ramp_fleet.extras import require
from ramp_fleet.listeners import Finished, Listener, Requeued
from ramp_fleet.ramp_board.client import DatabaseUnavailable, RampBoardClient, RampBoardError
from ramp_fleet.store import DispatcherLock, State, Store, Submission
from ramp_fleet.store.states import FINAL

logger = logging.getLogger("ramp_fleet.ramp_board")

#: A full look at the event's new submissions (not only ids above the last seen) this often:
#: ramp-board may put an older submission back to ``new``.
FULL_POLL_INTERVAL = 60.0
#: After a write failed for good (the database away longer than the client's patience),
#: how long to wait before trying it again.
WRITE_BACKOFF = 15.0


#: State changes are gathered this long before they are sent, so that a state that lasted
#: less (``sent_to_training`` of a run that starts at once) is not written at all. A result
#: is sent at once: nothing supersedes it.
BATCH_WINDOW = 0.3
#: After a refresh, the next one waits this many times as long as it took: in a burst,
#: refreshing (ramp-database's pandas, a CPU the runs could use) is a third of the helper's
#: time at most; in a quiet event the next result is long after anyway.
REFRESH_PAUSE = 2.0
#: How often the submissions folder's time is looked at (one ``stat``).
NUDGE_CHECK = 0.05
#: After the folder changed, the database is asked this often...
EAGER_POLL = 0.1
#: ...for this long at most, until a new submission is found.
EAGER_WINDOW = 3.0


@dataclass(frozen=True)
class _Write:
    """One change to send, in order: ``call(client)``."""

    what: str
    call: Callable[[RampBoardClient], object]
    #: The submission it is about; a state change is dropped when a later state or result
    #: of the same submission is already waiting (the later one says where it is now).
    submission: str | None = None
    #: A result (score or error): the leaderboards are refreshed after it.
    result: bool = False
    state_only: bool = False


class _WriteQueue:
    """Writes in order, thread-safe; superseded state changes are dropped when taken."""

    def __init__(self) -> None:
        self._items: collections.deque[_Write] = collections.deque()
        self._changed = threading.Condition()
        #: Taken but not done yet (``close`` waits for none).
        self.in_flight = 0

    def put(self, write: _Write) -> None:
        with self._changed:
            self._items.append(write)
            self._changed.notify_all()

    def take(self, timeout: float) -> _Write | None:
        """The next write that still matters (a burst that starts is let gather); None if none."""
        with self._changed:
            idle = not self._items
            if idle and not self._changed.wait(timeout):
                return None
        if idle and self._head_is_a_state():
            time.sleep(BATCH_WINDOW)
        with self._changed:
            while self._items:
                write = self._items.popleft()
                if write.state_only and any(later.submission == write.submission
                                            and (later.state_only or later.result)
                                            for later in self._items):
                    continue
                self.in_flight += 1
                return write
            return None

    def _head_is_a_state(self) -> bool:
        with self._changed:
            return bool(self._items) and self._items[0].state_only

    def done(self) -> None:
        with self._changed:
            self.in_flight -= 1
            self._changed.notify_all()

    def pending(self) -> bool:
        with self._changed:
            return bool(self._items) or self.in_flight > 0

    def wait_sent(self, timeout: float) -> bool:
        """Until every write is taken and done (or ``timeout``); whether they are."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._items and self.in_flight == 0,
                                          timeout)


class _FolderNudge:
    """ramp-board makes a new submission's folder, then commits the submission: when the
    submissions folder's time moves, the database is worth asking at once and every
    :data:`EAGER_POLL` after, until the submission is found or :data:`EAGER_WINDOW` passed."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._seen = self._time()
        self._until = 0.0
        self._next = 0.0

    def _time(self) -> int | None:
        try:
            return os.stat(self.folder).st_mtime_ns
        except OSError:
            return None

    def due(self, now: float) -> bool:
        """Whether to ask the database now (one ``stat``)."""
        seen = self._time()
        if seen != self._seen:
            self._seen = seen
            self._until, self._next = now + EAGER_WINDOW, now
        if self._next <= now < self._until:
            self._next = now + EAGER_POLL
            return True
        return False

    def found(self) -> None:
        """A new submission was found: no need to keep asking."""
        self._until = 0.0


class BoardSync(Listener):
    """The event's submissions from ramp-board, its states and results back (module docstring)."""

    def __init__(self, event: EventConfig, client: RampBoardClient, poll_interval: float,
                 drain_timeout: float = 600.0):
        self.event = event
        #: Owned from now on: closed with this object.
        self.client = client
        self.poll_interval = poll_interval
        self.drain_timeout = drain_timeout
        self._writes = _WriteQueue()
        self._added: list[str] = []
        self._added_lock = threading.Lock()
        self._ids: dict[str, int] = {}
        #: The team of each submission found here (those re-sent from the store have none).
        self._teams: dict[str, str] = {}
        self._last_id: int | None = None
        self._last_full_poll = -float("inf")
        self._positions_due = True
        self._leaderboards_due = False
        #: The teams whose leaderboards the next refresh recomputes (None: every team's).
        self._teams_due: set[str] | None = set()
        self._teams_lock = threading.Lock()  # slots add to it, the thread takes it
        self._next_refresh = 0.0
        self._nudge = _FolderNudge(event.dirs.submissions.path)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._store: Store | None = None
        #: Writes that were given up on (the database away for too long); re-sent next start.
        self.unsent = 0

    # -- a store of an earlier life of the event -----------------------------------------

    def set_aside_earlier_life(self, store_path: Path) -> str | None:
        """If the store at ``store_path`` belongs to an earlier life of the event in ramp-board,
        rename it aside and say so (one line); None when it is this life's (or there is none)."""
        if not store_path.exists():
            return None
        with DispatcherLock(store_path, self.event.event_name):
            store = Store(store_path)
            try:
                why = self._earlier_life(store)
            except DatabaseUnavailable:
                raise  # the outside world's (exit status 1), said in one line
            except RampBoardError as exc:
                raise UsageError(str(exc)) from None
            finally:
                store.close()
            if why is None:
                return None
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            aside = store_path.with_name(f"{store_path.stem}.earlier-life-{stamp}{store_path.suffix}")
            for suffix in ("", "-wal", "-shm"):  # SQLite's own files go with it
                if Path(f"{store_path}{suffix}").exists():
                    os.rename(f"{store_path}{suffix}", f"{aside}{suffix}")
        return (f"the store {store_path} belongs to an earlier life of event "
                f"'{self.event.event_name}' in ramp-board ({why}): kept as {aside}; serving the "
                "event as the database has it now")

    def _earlier_life(self, store: Store) -> str | None:
        made = self.client.submitted(self.event.event_name)
        ours = [row for row in store.all() if row.source_id is not None]
        gone = [row.name for row in ours if row.source_id not in made]
        remade = [row.name for row in ours if row.source_id in made
                  and made[row.source_id] > row.submitted + CLOCK_SLACK]
        if gone:
            return f"{_some(gone)} {'is' if len(gone) == 1 else 'are'} not in its database"
        if remade:
            return (f"{_some(remade)} {'was' if len(remade) == 1 else 'were'} made there after "
                    "this store recorded it")
        return None

    # -- start: what a previous dispatcher left, then the first look --------------------

    def start(self, store: Store) -> list[str]:
        """Check the event, re-send what the store knows and the database does not, put runs a
        dead dispatcher left back to ``new``, read the new submissions; then follow on."""
        try:
            info = self.client.check_event(self.event.event_name)
        except DatabaseUnavailable:
            raise  # the outside world's (exit status 1), said in one line
        except RampBoardError as exc:
            self.client.close()
            raise UsageError(str(exc)) from None
        ours = self.event.dirs.submissions.path
        if info.submissions_dir is not None and Path(info.submissions_dir).resolve() != ours.resolve():
            raise UsageError(
                f"ramp-board keeps the submissions of event '{self.event.event_name}' in "
                f"{info.submissions_dir}, but this config reads them from {ours} "
                f"({self.event.dirs.submissions.source}); set ramp.submissions_dir")
        self._store = store
        self._resend_final(store)
        reset = self.client.reset_interrupted(self.event.event_name)
        if reset:
            logger.info("put %d interrupted submission(s) back to new in ramp-board", len(reset))
        self._poll(store, full=True)
        self._thread = threading.Thread(target=self._loop, name="ramp-board", daemon=True)
        self._thread.start()
        return self.discover(store)

    def _resend_final(self, store: Store) -> None:
        """Results recorded here whose write never reached the database (a crash, a long outage)."""
        states = self.client.states(self.event.event_name)
        for submission in store.all():
            if submission.source_id is None:
                continue
            self._ids[submission.name] = submission.source_id
            if submission.state in FINAL and states.get(submission.source_id) != submission.state:
                logger.info("re-sending the %s of %s to ramp-board", submission.state, submission.name)
                self._final_write(submission.name, submission.state, submission.error,
                                  submission.peak_memory_mb).call(self.client)

    # -- the source of submissions ------------------------------------------------------

    def discover(self, store: Store) -> list[str]:
        """The submissions added to the store since the last call (polled by the thread)."""
        with self._added_lock:
            added, self._added = self._added, []
        return added

    def changed(self) -> bool:
        with self._added_lock:
            return bool(self._added)

    def _poll(self, store: Store, full: bool = False) -> bool:
        """Add the event's new submissions to the store; whether there were any."""
        now = time.monotonic()
        full = full or now - self._last_full_poll >= FULL_POLL_INTERVAL
        rows = self.client.new_submissions(self.event.event_name,
                                           None if full else self._last_id)
        if full:
            self._last_full_poll = now
        fresh = []
        for row in rows:
            self._last_id = max(self._last_id or 0, row.id)
            if row.basename not in self._ids:
                self._ids[row.basename] = row.id
                self._teams[row.basename] = row.team
                fresh.append(row)
        added = store.add_many([row.basename for row in fresh], [row.id for row in fresh],
                               [row.team for row in fresh])
        if added:
            self._positions_due = True
            with self._added_lock:
                self._added.extend(added)
        return bool(fresh)

    def _poll_now(self) -> bool:
        assert self._store is not None
        return self._poll(self._store)

    # -- what the dispatcher records, sent in order ---------------------------------------

    def claimed(self, submission: Submission, slot: str) -> None:
        self._send(submission.name, "sent_to_training")
        self._positions_due = True

    def launched(self, name: str) -> None:
        self._send(name, "training")
        board_id = self._ids.get(name)
        if board_id is not None:
            self._writes.put(_Write(f"queue position of {name}", lambda client: (
                client.set_queue_positions(self.event.event_name, {board_id: -1})), name))

    def requeued(self, requeued: Requeued) -> None:
        self._send(requeued.name, "new")
        self._positions_due = True

    def finished(self, result: Finished) -> None:
        if result.name in self._ids:
            self._moved(result.name)
            self._writes.put(self._final_write(result.name, result.state, result.error,
                                               result.peak_memory_mb))

    def _send(self, name: str, state: str) -> None:
        board_id = self._ids.get(name)
        if board_id is not None:
            self._moved(name)
            self._writes.put(_Write(f"{state} of {name}",
                                    lambda client: client.set_state(board_id, state), name,
                                    state_only=True))

    def _moved(self, name: str) -> None:
        """The submission's team has its leaderboards recomputed at the next refresh."""
        team = self._teams.get(name)
        with self._teams_lock:
            if team is None:
                self._teams_due = None
            elif self._teams_due is not None:
                self._teams_due.add(team)

    def _final_write(self, name: str, state: State, error: str | None,
                     peak_memory_mb: float | None) -> _Write:
        board_id = self._ids[name]
        if state == State.SCORED:
            predictions = self.event.dirs.predictions.path / name
            return _Write(f"scores of {name}", lambda client: client.set_results(
                board_id, predictions, peak_memory_mb), name, result=True)
        return _Write(f"{state} of {name}", lambda client: client.set_error(
            board_id, error or str(state), state.value), name, result=True)

    # -- the thread -----------------------------------------------------------------------

    def _loop(self) -> None:
        next_poll = time.monotonic() + self.poll_interval
        while not (self._stopping.is_set() and not self._writes.pending()):
            wait = min(next_poll - time.monotonic(), NUDGE_CHECK)
            write = self._writes.take(timeout=max(0.0, wait))
            if write is not None:
                self._apply(write)
                self._writes.done()
            if self._stopping.is_set():
                continue
            now = time.monotonic()
            if (self._nudge.due(now) or now >= next_poll) and self._store is not None:
                if self._try(self._poll_now):
                    self._nudge.found()
                next_poll = time.monotonic() + self.poll_interval
            if not self._writes.pending():
                self._housekeeping()

    def _apply(self, write: _Write) -> bool:
        """Send one write; on failure keep it first in line and wait: never dropped, unless
        the dispatcher has stopped waiting (then it is re-sent at the next start)."""
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                write.call(self.client)
            except RampBoardError as exc:
                logger.warning("ramp-board: %s failed (%s); trying again", write.what, exc)
                self._stopping.wait(WRITE_BACKOFF)
                continue
            if write.result:
                self._leaderboards_due = True
            logger.debug("ramp-board: %s written in %.0f ms", write.what,
                         (time.monotonic() - started) * 1000)
            return True
        logger.error("ramp-board: %s not written; it is re-sent at the next start", write.what)
        self.unsent += 1
        return False

    def _housekeeping(self) -> None:
        """Queue positions when they changed; leaderboards when results landed (module
        docstring)."""
        if self._positions_due and self._store is not None:
            self._positions_due = False
            positions = {board_id: index for index, (_, board_id)
                         in enumerate(self._store.waiting(), start=1) if board_id is not None}
            if positions:
                self._try(lambda: self.client.set_queue_positions(self.event.event_name, positions))
        if self._leaderboards_due and time.monotonic() >= self._next_refresh:
            started = time.monotonic()
            self._try(self._refresh)
            ended = time.monotonic()
            self._next_refresh = ended + max(REFRESH_PAUSE * (ended - started),
                                             self.event.store.leaderboard_interval)
            logger.debug("ramp-board: leaderboards refreshed in %.0f ms", (ended - started) * 1000)

    def _refresh(self, client: RampBoardClient | None = None) -> None:
        """The event's leaderboards and those of the teams whose submissions moved."""
        self._leaderboards_due = False
        with self._teams_lock:
            teams, self._teams_due = self._teams_due, set()
        try:
            (client or self.client).update_leaderboards(
                self.event.event_name, None if teams is None else sorted(teams))
        except DatabaseUnavailable:  # due again, for the same teams, when it is back
            self._leaderboards_due = True
            with self._teams_lock:
                if teams is None or self._teams_due is None:
                    self._teams_due = None
                else:
                    self._teams_due |= teams
            raise
        # Any other error is ramp-database's on this data: said (by the caller), and the
        # next result tries again; never retried in a loop that would hold the end up.

    def _last_leaderboards(self, client: RampBoardClient) -> None:
        """The last refresh, if results arrived since the one before: at once. Only an
        outage is worth waiting for; ramp-database failing on the data is said, not retried."""
        if self._leaderboards_due:
            try:
                self._refresh(client)
            except DatabaseUnavailable:
                raise
            except RampBoardError as exc:
                logger.warning("ramp-board: the last leaderboard refresh failed: %s", exc)

    def _try(self, action: Callable[[], object]) -> object:
        try:
            return action()
        except RampBoardError as exc:
            logger.warning("ramp-board: %s", exc)
            return None

    # -- the end ---------------------------------------------------------------------------

    def close(self) -> None:
        """Send what is pending — waiting up to ``drain_timeout`` for a database that is away —
        then stop the thread and the helper."""
        thread = self._thread
        deadline = time.monotonic() + self.drain_timeout
        self._writes.put(_Write("leaderboards", self._last_leaderboards))
        while thread is not None and thread.is_alive() and time.monotonic() < deadline \
                and not self._writes.wait_sent(timeout=0.2):
            pass
        self._stopping.set()
        self.client.close()  # ends a retry in flight, then the helper
        if thread is not None:
            thread.join()
        self._thread = None
        if self.unsent:
            logger.error("ramp-board: %d write(s) could not be sent; they are re-sent at the "
                         "next start", self.unsent)


#: A submission the database says was made this long after the store recorded it is not it.
CLOCK_SLACK = 300.0


def _some(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def connect(event: EventConfig, deployment_config: Path | None = None) -> BoardSync:
    """The :class:`BoardSync` of an event served from ramp-board's database.

    The database is the deployment config's ``sqlalchemy`` section
    (``deployment_config``, else ``store.deployment_config``, whose default is
    ``<deployment_dir>/config.yml``); ramp-database runs in
    ``store.ramp_board_python``. Every problem is a one-line usage error.
    """
    from ramp_fleet.config.deployment import database_from_deployment

    require("ramp-board", "store.backend: ramp-board")
    python = event.store.ramp_board_python
    if python is None:
        raise UsageError(f"{event.display}: store.ramp_board_python: is required to serve a "
                         "ramp-board event (the python of the environment where ramp-database is "
                         "installed)")
    config = deployment_config or event.store.deployment_config
    assert config is not None  # the loader defaults it to <deployment_dir>/config.yml
    database = database_from_deployment(config)
    try:
        client = RampBoardClient(python, database)
    except RampBoardError as exc:
        raise UsageError(str(exc)) from None
    settings = event.dispatcher
    poll = settings.sleep_interval if settings.hunger_policy == "sleep" \
        else settings.time_between_collection
    return BoardSync(event, client, poll_interval=poll)
