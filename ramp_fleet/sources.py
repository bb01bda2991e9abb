"""Where an event's submissions come from, and adding new ones.

A dispatcher has one :class:`SubmissionSource`: the event's submissions folder
(:class:`FolderSource`, here, with ``ramp-fleet submit``'s :func:`submit`), or
ramp-board's database (:class:`ramp_fleet.ramp_board.sync.BoardSync`, which is
also the listener that sends every state and score back).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from ramp_fleet.archive import copy_submission
from ramp_fleet.config import EventConfig
from ramp_fleet.errors import UsageError
from ramp_fleet.store import Store
from ramp_fleet.store.names import check_submission_name, name_problem
from ramp_fleet.text import visible

logger = logging.getLogger("ramp_fleet.sources")

#: Seconds between listings of the submissions folder even when its time says nothing changed.
FULL_SCAN_INTERVAL = 60.0


class SubmissionSource(Protocol):
    """Where an event's new submissions come from: its folder, or ramp-board's database."""

    def start(self, store: Store) -> list[str]:
        """The first look, before anything runs; returns the names added to the store."""

    def discover(self, store: Store) -> list[str]:
        """Add what is new to the store; returns the names new to the dispatcher."""

    def changed(self) -> bool:
        """Whether :meth:`discover` may find something now: cheap (a ``stat``, a flag), for
        the dispatcher asks it every :data:`~ramp_fleet.dispatcher.QUICK_LOOK` seconds."""


class FolderSource:
    """The submission folders in ``submissions_dir``, found in O(new) as the event goes.

    The names already seen are kept in memory (loaded from the store once,
    then kept in step with it), and the folder is listed again only when it
    may have changed: when its modification time moved (an entry was added,
    removed or renamed), when the last listing was too close to that time to
    be sure it saw everything (:class:`ChangeGate`), and at least every
    ``full_scan_interval`` seconds whatever the time says (a file system whose
    clock is not ours). A look at an unchanged folder is one ``stat``.
    """

    def __init__(self, event: EventConfig, full_scan_interval: float = FULL_SCAN_INTERVAL):
        self.event = event
        self._known: set[str] = set()
        self._warned: set[str] = set()
        self._gate = ChangeGate(event.dirs.submissions.path, full_scan_interval)

    def start(self, store: Store) -> list[str]:
        self._known = store.names()
        return self._look(store, force=True)

    def discover(self, store: Store) -> list[str]:
        return self._look(store)

    def changed(self) -> bool:
        return self._gate.moved()

    def _look(self, store: Store, force: bool = False) -> list[str]:
        """The folders new to this dispatcher, added to the store here (or already by
        ``ramp-fleet submit``, which records its submission itself)."""
        if not (force or self._gate.due()):  # a starting kit removed moves the folder's time
            return []
        if self.event.ramp.sandbox_as_submission:
            _provide_sandbox(self.event, self.event.dirs.submissions.path)
        with self._gate.listing():
            candidates = new_folders(self.event, self._known, self._warned)
        store.add_many(candidates)
        self._known.update(candidates)  # added here, or by `submit` in another process
        return candidates


class ChangeGate:
    """Whether a folder's entries may have changed since it was last listed.

    A folder's modification time moves when an entry is added, removed or
    renamed — but file systems keep it in ticks (a few ms), so an entry added
    in the same tick as a listing, just after it, leaves the time as the
    listing saw it. A listing that began less than :attr:`RACY` after the time
    it saw therefore proves nothing: the next look lists again (git's "racy
    clean" rule).
    """

    #: How close to the folder's time a listing must begin to be in doubt (ns).
    RACY = 1_000_000_000

    def __init__(self, folder: Path, full_scan_interval: float):
        self.folder = folder
        self.full_scan_interval = full_scan_interval
        self._seen: int | None = None
        self._in_doubt = True
        self._next_full = 0.0

    def due(self) -> bool:
        if self._in_doubt or time.monotonic() >= self._next_full:
            return True
        try:
            return os.stat(self.folder).st_mtime_ns != self._seen
        except OSError:
            return True

    def moved(self) -> bool:
        """Whether the folder's time moved since the last listing (one ``stat``): the quick
        look. A listing in doubt is made again by :meth:`due`, at the dispatcher's pace."""
        try:
            return os.stat(self.folder).st_mtime_ns != self._seen
        except OSError:
            return False

    @contextmanager
    def listing(self) -> Iterator[None]:
        """Around one listing of the folder: what it proves is recorded once it is done."""
        try:
            seen: int | None = os.stat(self.folder).st_mtime_ns
        except OSError:
            seen = None
        began = time.time_ns()
        yield
        self._seen = seen
        self._in_doubt = seen is None or seen >= began - self.RACY
        self._next_full = time.monotonic() + self.full_scan_interval


def new_folders(event: EventConfig, known: set[str] | frozenset[str] = frozenset(),
                warned: set[str] | None = None) -> list[str]:
    """The submission folders in ``submissions_dir`` not in ``known``, sorted by name.

    A folder with an unusable name is skipped with a warning (once per name
    when ``warned`` keeps track). The sandbox (``starting_kit``) is trained
    only when the config asks. Links and files are not submissions.
    """
    submissions_dir = event.dirs.submissions.path
    sandbox = event.ramp.sandbox_dir
    found: list[str] = []
    try:
        listing = os.scandir(submissions_dir)
    except FileNotFoundError:
        return found
    with listing:
        for entry in listing:
            name = entry.name
            if name in known or not entry.is_dir(follow_symlinks=False):
                continue
            if name == sandbox and not event.ramp.sandbox_as_submission:
                continue
            problem = name_problem(name)
            if problem:
                if warned is None or name not in warned:
                    logger.warning("skipping submission folder %r in %s: name %s", name,
                                   submissions_dir, problem)
                if warned is not None:
                    warned.add(name)
                continue
            found.append(name)
    return sorted(found)


def _provide_sandbox(event: EventConfig, submissions_dir: Path) -> None:
    name = event.ramp.sandbox_dir
    source = event.dirs.kit.path / "submissions" / name
    if not (submissions_dir / name).exists() and source.is_dir():
        with _staged(source, submissions_dir / name) as copy:
            copy.rename(submissions_dir / name)


#: The longest team name ``submit --team`` takes.
MAX_TEAM_NAME = 100


def submit(event: EventConfig, store: Store, source: Path, name: str | None = None,
           team: str | None = None) -> str:
    """Copy a submission folder into the event and record it as ``new`` (of ``team``).

    Nothing is written when the name or the team is bad, the name taken, or the
    folder missing.
    """
    name = check_submission_name(name if name is not None else source.resolve().name)
    if team is not None and not (0 < len(team) <= MAX_TEAM_NAME and team.isprintable()
                                 and team.strip() == team):
        raise UsageError(f"--team {visible(team)[:MAX_TEAM_NAME]!r}: a team is 1 to "
                         f"{MAX_TEAM_NAME} printable characters, without spaces around them")
    if not source.is_dir():
        raise UsageError(f"{source}: not a folder (a submission is a folder of files)")
    target = event.dirs.submissions.path / name
    if target.exists() or store.get(name) is not None:
        raise UsageError(f"submission {name!r} exists already in event {event.event_name!r}")
    with _staged(source, target) as copy:
        if not store.add_publishing(name, team, lambda: copy.rename(target)):
            raise UsageError(f"submission {name!r} exists already in event "
                             f"{event.event_name!r}")
    return name


@contextmanager
def _staged(source: Path, target: Path) -> Iterator[Path]:
    """A copy of ``source`` next to ``target``, to be renamed to it: no half-copied
    submission is ever seen; removed unless renamed.

    Links in the participant's folder are never followed nor copied (one warning each).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        copy_submission(source, staging / "copy")
        yield staging / "copy"
    finally:
        shutil.rmtree(staging, ignore_errors=True)
