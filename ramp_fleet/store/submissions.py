"""Finding submissions on disk and adding new ones to an event."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from ramp_fleet.archive import copy_submission
from ramp_fleet.config import EventConfig
from ramp_fleet.errors import UsageError
from ramp_fleet.store.db import Store
from ramp_fleet.store.names import check_submission_name, name_problem

logger = logging.getLogger("ramp_fleet.store")


class SubmissionSource(Protocol):
    """Where an event's new submissions come from: its folder, or ramp-board's database."""

    def start(self, store: Store) -> list[str]:
        """The first look, before anything runs; returns the names added to the store."""

    def discover(self, store: Store) -> list[str]:
        """Add what is new to the store; returns the names added."""


class FolderSource:
    """The submission folders in ``submissions_dir`` (see :func:`discover`)."""

    def __init__(self, event: EventConfig):
        self.event = event

    def start(self, store: Store) -> list[str]:
        return discover(self.event, store)

    def discover(self, store: Store) -> list[str]:
        return discover(self.event, store)


def discover(event: EventConfig, store: Store) -> list[str]:
    """Add every submission folder not yet in the store; returns the new names.

    A folder with an unusable name is skipped with a warning (once per scan).
    The sandbox (``starting_kit``) is trained only when the config asks.
    """
    submissions_dir = event.dirs.submissions.path
    sandbox = event.ramp.sandbox_dir
    if event.ramp.sandbox_as_submission:
        _provide_sandbox(event, submissions_dir)
    known = store.names()
    added: list[str] = []
    try:
        entries = sorted(submissions_dir.iterdir())
    except FileNotFoundError:
        return added
    for entry in entries:
        name = entry.name
        if name in known or not entry.is_dir() or entry.is_symlink():
            continue
        if name == sandbox and not event.ramp.sandbox_as_submission:
            continue
        problem = name_problem(name)
        if problem:
            logger.warning("skipping submission folder %r in %s: name %s", name, submissions_dir, problem)
            continue
        if store.add(name):
            added.append(name)
    return added


def _provide_sandbox(event: EventConfig, submissions_dir: Path) -> None:
    name = event.ramp.sandbox_dir
    source = event.dirs.kit.path / "submissions" / name
    if not (submissions_dir / name).exists() and source.is_dir():
        _copy_in(source, submissions_dir / name)


def submit(event: EventConfig, store: Store, source: Path, name: str | None = None) -> str:
    """Copy a submission folder into the event and record it as ``new``.

    Nothing is written when the name is bad, taken, or the folder is missing.
    """
    name = check_submission_name(name if name is not None else source.resolve().name)
    if not source.is_dir():
        raise UsageError(f"{source}: not a folder (a submission is a folder of files)")
    target = event.dirs.submissions.path / name
    if target.exists() or store.get(name) is not None:
        raise UsageError(f"submission {name!r} exists already in event {event.event_name!r}")
    _copy_in(source, target)
    store.add(name)
    return name


def _copy_in(source: Path, target: Path) -> None:
    """Copy next to the target first, then rename: no half-copied submission is ever seen.

    Links in the participant's folder are never followed nor copied (one warning each).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        copy_submission(source, staging / "copy")
        (staging / "copy").rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
