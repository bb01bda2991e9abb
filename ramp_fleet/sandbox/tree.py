"""Folder trees a run made: read without following anything, written by our code alone.

The rules of what a run may hand back, in one place for every host (the
runner packs with them, the dispatcher receives with them):

* only regular files and folders — links, hard links, FIFOs, devices and
  sockets are refused (or, for a participant's own folder going out, skipped);
* names are checked (:func:`check_name`): relative, no ``..``, no control or
  bidirectional-formatting characters, valid UTF-8, bounded length and depth;
* files and folders, bytes, and each file's bytes are capped (:class:`Limits`);
* every open is relative to its parent's descriptor with ``O_NOFOLLOW`` (and
  ``O_NONBLOCK``, so a FIFO swapped in never blocks us), checked with
  ``fstat``; descriptors held at once are bounded by the depth, never by the
  number of folders.

Standard library only (Python 3.10+): shipped to worker hosts with the runner.
"""

from __future__ import annotations

import contextlib
import os
import stat
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Literal

CHUNK = 1 << 20
#: Longest name of one path component, and of a whole relative path (bytes).
MAX_COMPONENT = 255
MAX_PATH = 1024
MAX_DEPTH = 32
FILE_MODE = 0o644
DIR_MODE = 0o755
#: Unicode categories never allowed in a name: controls, formatting (bidirectional
#: overrides...), surrogates (bytes that are not UTF-8), line and paragraph separators.
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})

#: What to do with an entry that is not a regular file or folder.
Policy = Literal["skip", "refuse"]


class UnsafeResult(Exception):
    """Something a run handed back breaks a rule; the message names the entry and the rule."""


@dataclass(frozen=True)
class Limits:
    """Caps on what a run may hand back (``worker.result_limits`` in the config).

    ``max_files`` counts files and folders alike.
    """

    max_bytes: int = 1 << 30
    max_files: int = 10_000
    max_file_bytes: int = 512 << 20

    @classmethod
    def unbounded(cls) -> Limits:
        huge = 1 << 62
        return cls(max_bytes=huge, max_files=huge, max_file_bytes=huge)


def shown(text: str, width: int = 80) -> str:
    """``text`` as it may be shown in a message: escaped, and cut to ``width``."""
    quoted = ascii(text)
    return quoted if len(quoted) <= width else quoted[:width] + "…"


def check_name(name: str) -> str:
    """``name`` as a safe relative path (``a/b``), or :class:`UnsafeResult` saying why not."""
    relative = name.removeprefix("./").rstrip("/")
    if not relative:
        raise UnsafeResult(f"entry {shown(name)}: an empty name")
    if any(unicodedata.category(char) in _BAD_CATEGORIES for char in relative):
        raise UnsafeResult(f"entry {shown(name)}: has control or formatting characters, "
                           "or bytes that are not UTF-8")
    if relative.startswith("/") or "\\" in relative:
        raise UnsafeResult(f"entry {shown(name)}: absolute, or has a backslash")
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafeResult(f"entry {shown(name)}: has an empty, '.' or '..' component")
    if (len(parts) > MAX_DEPTH or len(relative.encode()) > MAX_PATH
            or any(len(part.encode()) > MAX_COMPONENT for part in parts)):
        raise UnsafeResult(f"entry {shown(name, 60)}: too deep or too long a name")
    return relative


# -- reading: a tree, without following anything ------------------------------------------


@dataclass(frozen=True)
class Entry:
    """A folder (``fd`` None) or a regular file opened for reading (closed by the consumer)."""

    relative: str
    fd: int | None = None

    @property
    def is_dir(self) -> bool:
        return self.fd is None


def open_folder(path: str | os.PathLike[str], trusted: str = "/") -> int:
    """A descriptor of the folder at ``path``, refusing a link at any component below
    ``trusted`` (a folder the caller trusts, such as ``/proc/<pid>/root``, which leads
    into a sandbox: it is opened as it is). Raises ``OSError``."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    text = os.path.abspath(os.fspath(path))
    if not _within(text.lstrip("/"), trusted.strip("/")):
        raise ValueError(f"{text} is not under {trusted}")
    fd = os.open(trusted, flags)
    try:
        for part in filter(None, text[len(trusted.rstrip("/")):].split("/")):
            child = os.open(part, flags | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def walk(root_fd: int, policy: Policy, skip: frozenset[str] = frozenset(),
         where: str = "the result") -> Iterator[Entry]:
    """Folders and regular files under the folder ``root_fd`` (not closed), depth first.

    Folders are read as they are listed, never whole, and a folder's
    descriptor is closed once its last entry is read: a million files cost no
    more memory than ten, and at most :data:`MAX_DEPTH` descriptors are open.
    """
    yield from _walk(root_fd, "", policy, skip, where, 1)


def _walk(dir_fd: int, prefix: str, policy: Policy, skip: frozenset[str], where: str,
          depth: int) -> Iterator[Entry]:
    with os.scandir(dir_fd) as listing:
        for listed in listing:
            name = listed.name
            if name in skip:
                continue
            relative = f"{prefix}{name}"
            try:
                check_name(relative)
            except UnsafeResult as exc:
                if policy == "refuse":
                    raise
                _skipped(shown(relative), str(exc).partition(": ")[2], where)
                continue
            yield from _entry(dir_fd, name, relative, policy, skip, where, depth)


def _entry(dir_fd: int, name: str, relative: str, policy: Policy, skip: frozenset[str],
           where: str, depth: int) -> Iterator[Entry]:
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        _unusable(policy, relative, "changed while it was read", where)
        return
    kind = _kind(info.st_mode)
    if kind == "folder":
        if depth >= MAX_DEPTH:
            _unusable(policy, relative, f"a folder more than {MAX_DEPTH} levels deep", where)
            return
        child = _open(name, dir_fd, folder=True)
        if child is None:
            _unusable(policy, relative, "changed while it was read", where)
            return
        try:
            yield Entry(relative)
            yield from _walk(child, f"{relative}/", policy, skip, where, depth + 1)
        finally:
            os.close(child)
    elif kind == "file" and info.st_nlink == 1:
        fd = _open(name, dir_fd, folder=False)
        if fd is None:
            _unusable(policy, relative, "changed while it was read", where)
            return
        yield Entry(relative, fd)
    else:
        _unusable(policy, relative, "a hard link" if kind == "file" else kind, where)


def _open(name: str, dir_fd: int, *, folder: bool) -> int | None:
    """Open a folder or a regular file, or None if it is not one any more (never blocks)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags | (os.O_DIRECTORY if folder else 0), dir_fd=dir_fd)
    except OSError:
        return None
    info = os.fstat(fd)
    wanted = stat.S_ISDIR(info.st_mode) if folder else (stat.S_ISREG(info.st_mode)
                                                        and info.st_nlink == 1)
    if not wanted:
        os.close(fd)
        return None
    return fd


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def _unusable(policy: Policy, relative: str, what: str, where: str) -> None:
    if policy == "refuse":
        if what.startswith("changed"):
            raise UnsafeResult(f"'{relative}' {what}")
        raise UnsafeResult(f"'{relative}' is {what}: a result holds regular files and folders only")
    _skipped(f"'{relative}'", f"it is {what}", where)


def _skipped(name: str, why: str, where: str) -> None:
    from logging import getLogger  # only paid for when a participant's folder has one

    getLogger("ramp_fleet.archive").warning(
        "skipped %s in %s: %s (links, special files and unusable names are never sent)",
        name, where, why)


def entries(root_fd: int, policy: Policy, skip: frozenset[str] = frozenset(),
            where: str = "the result") -> Iterator[tuple[str, int, IO[bytes] | None]]:
    """:func:`walk` as ``(relative, size, stream or None for a folder)``."""
    for entry in walk(root_fd, policy, skip, where):
        if entry.fd is None:
            yield entry.relative, 0, None
            continue
        with os.fdopen(entry.fd, "rb") as stream:
            yield entry.relative, os.fstat(stream.fileno()).st_size, stream


# -- counting and writing --------------------------------------------------------------------


class Tally:
    """Entries and bytes of one result against its limits; a refusal names the entry and the cap."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.files = 0
        self.bytes = 0

    def add_entry(self, relative: str, declared_size: int = 0) -> None:
        """Count one more file or folder, refusing it by its declared size before any byte."""
        self.files += 1
        if self.files > self.limits.max_files:
            raise UnsafeResult(f"more than {self.limits.max_files} files and folders "
                               f"(at '{relative}'; worker.result_limits.max_files)")
        self.check_size(relative, declared_size)

    def add(self, relative: str, size: int) -> None:
        """Count a whole file whose size is known (one already on disk)."""
        self.add_entry(relative, size)
        self.bytes += size

    def check_size(self, relative: str, size: int) -> None:
        if size > self.limits.max_file_bytes:
            raise UnsafeResult(f"'{relative}' is larger than {self.limits.max_file_bytes} bytes "
                               "(worker.result_limits.max_file_bytes)")
        if self.bytes + size > self.limits.max_bytes:
            raise UnsafeResult(f"the result is larger than {self.limits.max_bytes} bytes "
                               f"(at '{relative}'; worker.result_limits.max_bytes)")


class Writer:
    """Creates ``destination`` (which must not exist) and writes entries into it, capped.

    Every file is created with ``O_EXCL | O_NOFOLLOW`` under folders this
    writer created, through their descriptors; it keeps open only the chain of
    folders leading to the last entry (at most :data:`MAX_DEPTH`).
    """

    def __init__(self, destination: str | os.PathLike[str], limits: Limits):
        self.tally = Tally(limits)
        os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
        os.mkdir(destination, DIR_MODE)
        root = os.open(destination, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        #: ``(relative path, descriptor)`` from the destination down to the current folder.
        self._chain: list[tuple[str, int]] = [("", root)]

    def close(self) -> None:
        for _, fd in self._chain:
            os.close(fd)
        self._chain.clear()

    def folder(self, relative: str) -> None:
        self.tally.add_entry(relative)
        self._descend(relative, create=True)

    def file(self, relative: str, declared_size: int, read: Callable[[int], bytes]) -> None:
        """Write one file from ``read(n)`` chunks, refusing what breaks a cap."""
        self.tally.add_entry(relative, declared_size)
        parent_path, _, name = relative.rpartition("/")
        parent = self._descend(parent_path, create=True)
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         FILE_MODE, dir_fd=parent)
        except FileExistsError:
            raise UnsafeResult(f"'{relative}' appears twice") from None
        written = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := read(CHUNK):
                written += len(chunk)
                self.tally.check_size(relative, written)
                out.write(chunk)
        self.tally.bytes += written

    def _descend(self, relative: str, create: bool) -> int:
        """The descriptor of folder ``relative``, opening (and creating) the missing links."""
        while len(self._chain) > 1 and not _within(relative, self._chain[-1][0]):
            os.close(self._chain.pop()[1])
        path, fd = self._chain[-1]
        rest = relative[len(path):].lstrip("/") if path else relative
        for name in filter(None, rest.split("/")):
            path = f"{path}/{name}" if path else name
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, DIR_MODE, dir_fd=fd)
            try:
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=fd)
            except OSError:
                raise UnsafeResult(f"'{path}' is both a file and a folder") from None
            self._chain.append((path, fd))
        return fd


def _within(path: str, folder: str) -> bool:
    return not folder or path == folder or path.startswith(folder + "/")


def fill(destination: str | os.PathLike[str], limits: Limits,
         items: Iterator[tuple[str, int, IO[bytes] | None]]) -> None:
    """Write ``(relative, size, stream or None for a folder)`` into a new ``destination``."""
    writer = Writer(destination, limits)
    try:
        for relative, size, stream in items:
            if stream is None:
                writer.folder(relative)
            else:
                writer.file(relative, size, stream.read)
    finally:
        writer.close()
