"""Receiving a run: its log, its predictions and its scores put in place, written once.

Every backend hands back a :class:`RunOutput` — the runner's report, the
log, and ``training_output`` as the ``.tar.gz`` the runner packed (a local
file or a worker host's bytes: never a folder a run could still change) —
and :func:`receive` does the rest, the same way whatever ran it: the log goes
to ``logs_dir/<submission>/log`` (copied in bounded chunks, with a
``[… truncated: N bytes]`` marker past ``max_log_bytes``), a timeout gets one
message, a failure the line of the limit that ended it or its error excerpt,
and a success moves ``predictions_dir/<submission>`` in atomically, received
through :mod:`ramp_fleet.archive` (regular files only, capped) and scored
there by the trusted scorer (:mod:`ramp_fleet.scoring.scorer`) before it is
moved: all of it or none, and its scores with it. The outcome is one
:class:`RunResult`, which the dispatcher records as it is. With
``defer_scoring`` the success is only received (:class:`Staged`, next to its
place): the dispatcher has it scored and moved in after the slot has moved
on to its next run.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ramp_fleet.archive import Limits, UnsafeResult, receive_archive, verify_tree
from ramp_fleet.errors import RampFleetError
from ramp_fleet.process import TIMEOUT_RETURNCODE
from ramp_fleet.sandbox.logs import MAX_LOG_BYTES, LogSource, bounded_chunks
from ramp_fleet.sandbox.spec import LOG, REPORT, RESULTS, Report, Usage
from ramp_fleet.scoring.files import Scores
from ramp_fleet.text import visible

__all__ = ["MAX_LOG_BYTES", "Destination", "LogSource", "RunNotStarted", "RunOutput", "RunResult",
           "Staged", "error_excerpt", "excerpt", "receive", "timeout_message"]

#: How much of a failed run's log is kept as its error message.
EXCERPT_LINES = 20
NO_OUTPUT = "ramp-test succeeded but wrote no training_output"
#: The last line of a timed-out run's log, whatever the backend.
TIMEOUT_NOTE = "\nramp-fleet: {}; the run was killed\n"


def timeout_message(seconds: float) -> str:
    """The one wording of a timeout, whatever the backend."""
    return f"timed out after {seconds:g} s"


class RunNotStarted(RampFleetError):
    """The host could not run the submission (no sandbox where one is required, no
    ramp-test there): not the submission's doing."""


@dataclass(frozen=True)
class RunOutput:
    """What a backend hands back once a run has ended."""

    #: The runner's report; None when the runner was stopped before it could say.
    report: Report | None
    log: LogSource
    #: ``training_output`` as the runner packed it: bytes, or a local file its own code
    #: wrote (None: the run handed nothing back).
    results: Path | bytes | None = None
    #: The runner's exit status as the backend saw it, when it did.
    exit_status: int | None = None

    @classmethod
    def from_folder(cls, folder: Path, max_log_bytes: int = MAX_LOG_BYTES,
                    exit_status: int | None = None) -> RunOutput:
        """A run folder on this machine, as the runner left it."""
        report = Report.read(folder / REPORT)
        results = folder / RESULTS if report is not None and report.has_results else None
        return cls(report, LogSource.from_path(folder / LOG, max_log_bytes), results,
                   exit_status)


#: Scores the predictions received in a folder (rewriting its score files), or raises.
Score = Callable[[Path], Scores]


@dataclass(frozen=True)
class Staged:
    """A success's ``training_output``, received and checked in a staging folder next to its
    place (``predictions_dir/.<submission>.<random>/new``): not scored, not in place yet."""

    folder: Path
    target: Path
    score: Score | None

    def publish(self) -> Scores | None:
        """Score it where it is, then swap it in with renames; returns its scores (None
        without a scorer). Nothing of it stays if scoring fails."""
        try:
            incoming = self.folder / "new"
            scores = None if self.score is None else self.score(incoming)
            if self.target.exists():
                self.target.rename(self.folder / "old")
            incoming.rename(self.target)
        finally:
            self.discard()
        return scores

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def stale_staging(predictions_dir: Path, submission: str) -> list[Path]:
    """The staging folders a killed dispatcher left for ``submission``."""
    pattern = re.compile(rf"\.{re.escape(submission)}\.[A-Za-z0-9_]{{8}}")
    try:
        return [entry for entry in predictions_dir.iterdir()
                if pattern.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink()]
    except OSError:
        return []


@dataclass(frozen=True)
class RunResult:
    """How one run ended, as the dispatcher records it."""

    returncode: int
    error: str
    #: What the runner measured (memory limit, peak), when it did.
    usage: Usage | None = None
    #: What the trusted scorer computed from the predictions (a success, scored).
    scores: Scores | None = None
    #: A success received with ``defer_scoring``: to be scored and moved in.
    staged: Staged | None = None

    @property
    def peak_memory_mb(self) -> float | None:
        return None if self.usage is None else self.usage.peak_mb


@dataclass(frozen=True)
class Destination:
    """Where one submission's results go, and how much may arrive."""

    submission: str
    logs_dir: Path
    predictions_dir: Path
    limits: Limits
    timeout: float
    max_log_bytes: int = MAX_LOG_BYTES
    #: The trusted scorer, for a success (None: published unscored).
    score: Score | None = None
    #: A success is received, staged and handed back unscored (:class:`Staged`).
    defer_scoring: bool = False

    @property
    def log_file(self) -> Path:
        return self.logs_dir / self.submission / "log"

    @property
    def predictions(self) -> Path:
        return self.predictions_dir / self.submission


def receive(run: RunOutput, where: Destination, timed_out: bool = False) -> RunResult:
    """Put one ended run in place (see the module docstring); ``timed_out``: the dispatcher
    stopped it at its own deadline.

    Raises :class:`RunNotStarted` when the host could not run it, and
    :class:`~ramp_fleet.archive.UnsafeResult` when its results break a rule (a
    link, too many bytes...): nothing of them is kept.
    """
    report = run.report
    timed_out = timed_out or (report is not None and report.timed_out)
    usage = None if report is None else report.usage
    note = TIMEOUT_NOTE.format(timeout_message(where.timeout)) if timed_out else ""
    write_log(run.log, where.log_file, where.max_log_bytes, note)
    if report is not None and report.refused:
        discard_predictions(where.predictions)
        raise RunNotStarted(report.refused)
    if report is not None and report.results_refused:
        discard_predictions(where.predictions)
        raise UnsafeResult(report.results_refused)
    if timed_out:
        discard_predictions(where.predictions)
        return RunResult(TIMEOUT_RETURNCODE, timeout_message(where.timeout), usage)
    returncode = _returncode(run)
    if returncode != 0:
        discard_predictions(where.predictions)
        limit = None if report is None else report.limit
        return RunResult(returncode, limit or error_excerpt(where.log_file), usage)
    if run.results is None:
        return RunResult(1, NO_OUTPUT, usage)
    staged = stage_output(run.results, where.predictions, where.limits, where.score)
    if where.defer_scoring:
        return RunResult(0, "", usage, staged=staged)
    return RunResult(0, "", usage, staged.publish())


def _returncode(run: RunOutput) -> int:
    if run.report is not None and run.report.returncode is not None:
        return run.report.returncode
    return 1 if run.exit_status in (None, 0) else run.exit_status


def write_log(log: LogSource, target: Path, max_bytes: int = MAX_LOG_BYTES, note: str = "") -> None:
    """Copy ``log`` to ``target`` atomically, bounded, with ``note`` at its end."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in bounded_chunks(log, max_bytes):
                out.write(chunk)
            out.write(note.encode())
        os.replace(staging, target)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def stage_output(archive: Path | bytes, target: Path, limits: Limits,
                 score: Score | None = None) -> Staged:
    """Receive ``training_output`` next to ``target`` (:class:`Staged`)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        receive_archive(archive, staging / "new", limits)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Staged(staging, target, score)


def publish_output(archive: Path | bytes, target: Path, limits: Limits,
                   score: Score | None = None) -> Scores | None:
    """Receive ``training_output`` next to ``target``, score it there, then swap it in with
    renames; returns its scores (None without ``score``)."""
    return stage_output(archive, target, limits, score).publish()


def check_published(where: Destination, timed_out: bool = False) -> None:
    """Results a custom worker published itself are held to the same rules: regular files
    and folders only, within the limits — else they are removed and refused; a log past
    ``max_log_bytes`` is cut to its head and end. A timeout gets the same last line in
    its log as on every backend."""
    log = where.log_file
    if log.is_symlink() or (log.exists() and not log.is_file()):
        log.unlink(missing_ok=True)
        raise UnsafeResult(f"{log} is not a regular file (a link?): removed")
    if log.is_file() and log.stat().st_size > where.max_log_bytes:
        write_log(LogSource.from_path(log, where.max_log_bytes), log, where.max_log_bytes)
    if timed_out:
        append_note(log, TIMEOUT_NOTE.format(timeout_message(where.timeout)))
    if where.predictions.is_symlink():
        where.predictions.unlink()
        raise UnsafeResult(f"{where.predictions} is a link: removed")
    if where.predictions.is_dir():
        try:
            verify_tree(where.predictions, where.limits)
        except UnsafeResult:
            discard_predictions(where.predictions)
            raise


def append_note(path: Path, text: str) -> None:
    """Add ramp-fleet's own words at the end of a published log (never through a link)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "a") as out:
        out.write(text)


def discard_predictions(folder: Path) -> None:
    """A failed run has no predictions: never leave an earlier attempt's in place."""
    if folder.is_dir() and not folder.is_symlink():
        shutil.rmtree(folder, ignore_errors=True)


def error_excerpt(log_file: str | os.PathLike[str], lines: int = EXCERPT_LINES) -> str:
    """The part of a failed run's log a person needs: its last traceback, trimmed.

    Custom workers that collect their own results may use it too.
    """
    text = b"".join(bounded_chunks(LogSource.from_path(Path(log_file)))).decode("utf-8", "replace")
    return excerpt(text, lines) if text else "the run failed and left no log"


def excerpt(text: str, lines: int = EXCERPT_LINES) -> str:
    all_lines = visible(text).rstrip().split("\n")
    start = max((i for i, line in enumerate(all_lines) if line.startswith("Traceback")), default=None)
    chosen = all_lines[start:] if start is not None else all_lines
    if len(chosen) > lines:
        chosen = ["...", *chosen[-lines:]]
    return "\n".join(chosen) or "the run failed without output"
