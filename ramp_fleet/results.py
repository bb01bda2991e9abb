"""Putting a run's results in place: written once, for every backend.

A backend hands back a :class:`RunOutput` — the return code, the log, and
``training_output`` as the ``.tar.gz`` the runner packed (a local file or a
worker host's bytes: never a folder a run could still change) — and :func:`publish`
does the rest, the same way whatever ran it: the log goes to
``logs_dir/<submission>/log`` (copied in bounded chunks, with a
``[… truncated: N bytes]`` marker past ``max_log_bytes``), a timeout gets one
message, a failure gets its error excerpt (taken from that copy), and a
success moves ``predictions_dir/<submission>`` in atomically, received through
:mod:`ramp_fleet.archive` (regular files only, capped) and scored there by the
trusted scorer (:mod:`ramp_fleet.scoring.scorer`) before it is moved: all of it
or none, and its scores with it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ramp_fleet.archive import Limits, UnsafeResult, receive_archive, verify_tree
from ramp_fleet.process import TIMEOUT_RETURNCODE
from ramp_fleet.scoring.files import Scores
from ramp_fleet.text import visible

#: How much of a failed run's log is kept as its error message.
EXCERPT_LINES = 20
#: A log longer than this keeps its first quarter and its end around the marker.
MAX_LOG_BYTES = 4 << 20
NO_OUTPUT = "ramp-test succeeded but wrote no training_output"
#: The last line of a timed-out run's log, whatever the backend.
TIMEOUT_NOTE = "\nramp-fleet: {}; the run was killed\n"


def timeout_message(seconds: float) -> str:
    """The one wording of a timeout, whatever the backend."""
    return f"timed out after {seconds:g} s"


class LogSource:
    """A run's log, read by offset (never whole): from bytes, a descriptor, or a remote file."""

    def __init__(self, size: int, read_at: Callable[[int, int], bytes]):
        self.size = size
        self.read_at = read_at

    @classmethod
    def from_bytes(cls, data: bytes) -> LogSource:
        return cls(len(data), lambda offset, length: data[offset:offset + length])

    @classmethod
    def from_fd(cls, fd: int) -> LogSource:
        """A log file we opened ourselves: whatever the run did to its name, we read our file."""
        return cls(os.fstat(fd).st_size, lambda offset, length: os.pread(fd, length, offset))

    @classmethod
    def from_path(cls, path: Path, max_bytes: int = MAX_LOG_BYTES) -> LogSource:
        """A log file on this machine, opened without following a link, read bounded."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return cls.from_bytes(b"")
        try:
            return cls.from_bytes(b"".join(bounded_chunks(cls.from_fd(fd), max_bytes)))
        finally:
            os.close(fd)


def bounded_chunks(log: LogSource, max_bytes: int = MAX_LOG_BYTES) -> Iterator[bytes]:
    """The log in chunks; past ``max_bytes``, its head, a marker, and its end — never
    more than ``max_bytes`` in all, so bounding it twice changes nothing."""
    size = log.size
    if size <= max_bytes:
        yield from _range(log, 0, size)
        return
    head = max_bytes // 4
    marker = b""
    for _ in range(2):  # the marker's length depends on the count it shows
        tail = max(0, max_bytes - head - len(marker))
        marker = f"\n[… truncated: {size - head - tail} bytes]\n".encode()
    yield from _range(log, 0, head)
    yield marker
    yield from _range(log, size - tail, tail)


def _range(log: LogSource, start: int, length: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    offset = start
    while offset < start + length:
        data = log.read_at(offset, min(chunk, start + length - offset))
        if not data:
            return
        offset += len(data)
        yield data


@dataclass(frozen=True)
class RunOutput:
    """What a backend hands back once a run has ended."""

    #: None when the run was stopped before it could say (the dispatcher's deadline).
    returncode: int | None
    log: LogSource
    #: ``training_output`` as the runner packed it: a ``.tar.gz``, as bytes or as a local
    #: file our own code wrote (None: the run handed nothing back).
    output: Path | bytes | None = None
    #: The run was stopped by its timeout (on this machine or on the worker host).
    timed_out: bool = False
    #: Why the worker host already refused ``training_output`` (a link...), if it did.
    refused: str | None = None


@dataclass(frozen=True)
class Published:
    returncode: int
    error: str
    #: What the trusted scorer computed from the predictions (a success with a scorer).
    scores: Scores | None = None


#: Scores the predictions received in a folder (rewriting its score files), or raises.
Score = Callable[[Path], Scores]


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

    @property
    def log_file(self) -> Path:
        return self.logs_dir / self.submission / "log"

    @property
    def predictions(self) -> Path:
        return self.predictions_dir / self.submission


def publish(run: RunOutput, where: Destination) -> Published:
    """Write the log; on success receive ``training_output``; return the code and the error.

    Raises :class:`~ramp_fleet.archive.UnsafeResult` when the results break a
    rule (a link, too many bytes...): nothing of them is kept.
    """
    note = TIMEOUT_NOTE.format(timeout_message(where.timeout)) if run.timed_out else ""
    write_log(run.log, where.log_file, where.max_log_bytes, note)
    if run.refused:
        discard_predictions(where.predictions)
        raise UnsafeResult(run.refused)
    if run.timed_out:
        discard_predictions(where.predictions)
        return Published(TIMEOUT_RETURNCODE, timeout_message(where.timeout))
    returncode = 1 if run.returncode is None else run.returncode
    if returncode != 0:
        discard_predictions(where.predictions)
        return Published(returncode, error_excerpt(where.log_file))
    if run.output is None:
        return Published(1, NO_OUTPUT)
    scores = publish_output(run.output, where.predictions, where.limits, where.score)
    return Published(0, "", scores)


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


def publish_output(archive: Path | bytes, target: Path, limits: Limits,
                   score: Score | None = None) -> Scores | None:
    """Receive ``training_output`` next to ``target``, score it there, then swap it in with
    renames; returns its scores (None without ``score``)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        incoming = staging / "new"
        receive_archive(archive, incoming, limits)
        scores = None if score is None else score(incoming)
        if target.exists():
            target.rename(staging / "old")
        incoming.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return scores


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
