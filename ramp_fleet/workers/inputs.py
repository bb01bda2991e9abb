"""A run's inputs, as every backend ships them to the runner: its spec and its submission.

The spec is built here, once, from the typed event config; a backend only
says where things are on the machine of the run (``ramp-test``, the kit,
the data) and where the run folder is. The files go into the run folder as
the runner expects them (:mod:`ramp_fleet.sandbox.runner`).
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ramp_fleet.archive import pack_submission
from ramp_fleet.config import EventConfig
from ramp_fleet.sandbox.spec import HANDED_FILE, HANDED_SHELF, SPEC, SUBMISSION, RunSpec

#: How the dispatcher's machine starts the runner on a run folder.
RUNNER = (sys.executable, "-m", "ramp_fleet.sandbox.runner")


def runner_argv(folder: Path) -> list[str]:
    """The runner on ``folder``, on this machine."""
    return [*RUNNER, str(folder)]


@dataclass(frozen=True)
class RunInputs:
    """What the runner needs in the run folder: the spec, the submission as an archive and,
    with ``labels: hidden``, the data the trusted scorer hands the run."""

    spec: RunSpec
    #: The submission folder, packed (:func:`ramp_fleet.archive.pack_submission`).
    submission: bytes
    #: The trusted scorer's file on this machine (labels hidden), or None.
    handed: Path | None = None

    def files(self) -> dict[str, bytes]:
        """The run folder's input files, by name (for a backend that sends them)."""
        files = {SPEC: self.spec.to_json().encode(), SUBMISSION: self.submission}
        if self.handed is not None:
            files[HANDED_FILE] = self.handed.read_bytes()
        return files

    def write(self, folder: Path) -> None:
        """Put the inputs into a new run folder on this machine (the handed data linked,
        not copied, where it can be)."""
        for name, data in ((SPEC, self.spec.to_json().encode()), (SUBMISSION, self.submission)):
            fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                         0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        if self.handed is not None:
            shelve(self.handed, folder)


def shelve(handed: Path, folder: Path) -> None:
    """The trusted scorer's file into a local run folder's shelf, where the sandbox sees it
    (:mod:`ramp_fleet.sandbox.runner`): it appears whole (linked, or copied then renamed
    in), readable by the run's own uid. A run started with ``handed_later`` waits for it."""
    shelf = folder / HANDED_SHELF
    shelf.mkdir(mode=0o755, exist_ok=True)
    target = shelf / HANDED_FILE
    try:
        os.link(handed, target)
    except OSError:  # another file system
        staging = folder / f".{HANDED_FILE}.part"
        shutil.copyfile(handed, staging)
        staging.chmod(0o644)
        os.replace(staging, target)


def run_inputs(event: EventConfig, submission: str, *, source: Path | None = None,
               handed: Path | None = None, handed_later: bool = False,
               **where: Any) -> RunInputs:
    """The inputs of ``submission``'s run: its :func:`run_spec` and its folder packed
    (``source``, default: in ``submissions_dir``); ``handed``: with ``labels: hidden``, the
    trusted scorer's file, which goes into the run folder; ``handed_later``: the backend
    :func:`shelve` s it itself once the run has started."""
    folder = source or event.dirs.submissions.path / submission
    named = handed is not None or handed_later
    spec = run_spec(event, submission, handed=HANDED_FILE if named else None,
                    handed_later=handed_later, **where)
    return RunInputs(spec, pack_submission(folder), handed)


def run_spec(event: EventConfig, submission: str, *, ramp_test: str = "ramp-test",
             python_env: str | None = None, kit_dir: str | None = None,
             data_dir: str | None = None, hidden: tuple[str, ...] | None = None,
             quick_test: bool = False, results: Path | None = None,
             compresslevel: int = 6, checked: bool = False,
             handed: str | None = None, handed_later: bool = False) -> RunSpec:
    """What ``submission``'s run asks of the runner, from the event's config.

    ``ramp_test``, ``python_env``, ``kit_dir``, ``data_dir``: as on the machine of the run
    (default: the event's own folders); ``hidden``: folders kept out of the run's view
    (default: the event's own); ``results``: a folder where ``training_output`` is put
    back as ramp-test leaves it (default: an archive in the run folder); ``handed``: with
    ``labels: hidden``, where the run finds the trusted scorer's file (in its folder), and
    ``handed_later``: whether it is put there after the start.
    """
    worker = event.worker
    dirs = event.dirs
    return RunSpec(
        submission=submission,
        kit_dir=kit_dir or str(dirs.kit.path),
        data_dir=data_dir or str(dirs.data.path),
        ramp_test=ramp_test,
        python_env=python_env,
        quick_test=quick_test,
        n_threads=event.dispatcher.n_threads,
        hidden=event_folders(event) if hidden is None else hidden,
        isolation=worker.isolation.plain(),
        limits=worker.result_limits.caps(),
        max_log_bytes=worker.result_limits.max_log_bytes,
        timeout=worker.timeout,
        results_as="archive" if results is None else "folder",
        results=None if results is None else str(results),
        compresslevel=compresslevel,
        checked=checked,
        handed=handed,
        handed_later=handed_later,
        log_in_folder=True,
    )


def event_folders(event: EventConfig) -> tuple[str, ...]:
    """The event's own folders, kept out of a run's view should they lie in the kit or data."""
    dirs = event.dirs
    return tuple(str(path) for path in (dirs.submissions.path, dirs.predictions.path,
                                        dirs.logs.path, event.scratch_dir))
