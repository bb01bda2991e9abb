"""Folders into and out of a run: the one module that packs, copies and receives them.

**Outbound** — a participant's submission going to a run (the conda
worker's scratch copy, ``submit``, the AWS upload, the Dask task): regular
files and folders only. Symbolic links, hard links and special files are
never followed nor shipped: each is skipped with one warning naming it.
``training_output``, ``__pycache__`` and ``.ipynb_checkpoints`` are skipped at
every depth.

**Inbound** — what a run hands back (``training_output`` from a local
folder, an AWS archive, a Dask reply) is untrusted: anything but regular
files and folders is refused (links, hard links, devices, FIFOs), names are
checked, and bytes, entries and single files are capped. Every file is
written by this module, one ``O_NOFOLLOW | O_EXCL`` open at a time under
folders it created itself, through directory file descriptors — never by
``tarfile.extractall``, whose filters have had bypasses. A refusal is an
:class:`UnsafeResult` naming the entry and the rule.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Literal, Protocol

from ramp_fleet.errors import RampFleetError

logger = logging.getLogger("ramp_fleet.archive")

#: Never part of a submission sent to a run, at any depth.
SKIPPED_NAMES = frozenset({"training_output", "__pycache__", ".ipynb_checkpoints"})
CHUNK = 1 << 20
#: Longest name of one path component, and of a whole relative path (bytes).
MAX_COMPONENT = 255
MAX_PATH = 1024
MAX_DEPTH = 32
#: No legitimate tar header is larger: a read asking for more is a hostile archive
#: (tarfile reads a pax or GNU long-name header whole, into memory).
MAX_SINGLE_READ = 4 * CHUNK
_FILE_MODE = 0o644
_DIR_MODE = 0o755


class UnsafeResult(RampFleetError):
    """Something a run handed back breaks a rule; the message names the entry and the rule."""


@dataclass(frozen=True)
class Limits:
    """Caps on what a run may hand back (``worker.result_limits`` in the config)."""

    max_bytes: int = 1 << 30
    max_files: int = 10_000
    max_file_bytes: int = 512 << 20

    @classmethod
    def unbounded(cls) -> Limits:
        huge = 1 << 62
        return cls(max_bytes=huge, max_files=huge, max_file_bytes=huge)


#: What to do with an entry that is not a regular file or folder.
Policy = Literal["skip", "refuse"]


# -- walking a folder without following anything -----------------------------------------


@dataclass(frozen=True)
class _Entry:
    relative: str
    is_dir: bool
    #: An open descriptor of a regular file (closed by the consumer), None for folders.
    fd: int | None = None


def _walk(root: Path, policy: Policy, skip: frozenset[str]) -> Iterator[_Entry]:
    """Folders and regular files under ``root``, depth first, each opened without following.

    Every open is relative to its parent's descriptor with ``O_NOFOLLOW``, so
    an entry swapped for a link between listing and opening is caught too.
    Folders are read as they are listed, never whole: a folder of a million
    files costs no more memory than one of ten, and a cap stops the walk at
    the first entry over it. The order is the file system's.
    """
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise FileNotFoundError(f"{root}: not a folder ({exc.strerror})") from None
    try:
        yield from _walk_fd(root_fd, "", policy, skip, root)
    finally:
        os.close(root_fd)


def _walk_fd(dir_fd: int, prefix: str, policy: Policy, skip: frozenset[str],
             root: Path, depth: int = 1) -> Iterator[_Entry]:
    with os.scandir(dir_fd) as listing:
        for listed in listing:
            name = listed.name
            if name in skip:
                continue
            yield from _entry(dir_fd, name, f"{prefix}{name}", policy, skip, root, depth)


def _entry(dir_fd: int, name: str, relative: str, policy: Policy, skip: frozenset[str],
           root: Path, depth: int) -> Iterator[_Entry]:
    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    kind = _kind(info.st_mode)
    if kind == "folder":
        if depth >= MAX_DEPTH:
            _unusable(policy, relative, f"a folder more than {MAX_DEPTH} levels deep", root)
            return
        try:
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
        except OSError:
            _unusable(policy, relative, "changed while it was read", root)
            return
        try:
            yield _Entry(relative, is_dir=True)
            yield from _walk_fd(child, f"{relative}/", policy, skip, root, depth + 1)
        finally:
            os.close(child)
    elif kind == "file" and info.st_nlink == 1:
        fd = _open_regular(name, dir_fd)
        if fd is None:
            _unusable(policy, relative, "changed while it was read", root)
            return
        yield _Entry(relative, is_dir=False, fd=fd)
    else:
        _unusable(policy, relative, "a hard link" if kind == "file" else kind, root)


def _open_regular(name: str, dir_fd: int) -> int | None:
    """Open a regular file for reading, or None if it is not one any more (never blocks)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
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


def _unusable(policy: Policy, relative: str, what: str, root: Path) -> None:
    if policy == "refuse":
        raise UnsafeResult(f"'{relative}' is {what}: a result holds regular files and folders only")
    logger.warning("skipped '%s' in %s: it is %s (links and special files are never sent)",
                   relative, root, what)


# -- writing: our own opens, under folders we created ---------------------------------------


class _Writer:
    """Creates ``destination`` (which must not exist) and writes entries into it, capped."""

    def __init__(self, destination: Path, limits: Limits):
        self.tally = _Tally(limits)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(destination, _DIR_MODE)
        self._dirs: dict[str, int] = {
            "": os.open(destination, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)}

    def close(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    def folder(self, relative: str) -> int:
        """The descriptor of folder ``relative``, creating it (and its parents) if needed."""
        if relative in self._dirs:
            return self._dirs[relative]
        parent_path, _, name = relative.rpartition("/")
        parent = self.folder(parent_path)
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, _DIR_MODE, dir_fd=parent)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
        except OSError:
            raise UnsafeResult(f"'{relative}' is both a file and a folder") from None
        self._dirs[relative] = fd
        return fd

    def file(self, relative: str, declared_size: int, read: Callable[[int], bytes]) -> None:
        """Write one file from ``read(n)`` chunks, refusing what breaks a cap."""
        self.tally.add_file(relative, declared_size)
        parent_path, _, name = relative.rpartition("/")
        parent = self.folder(parent_path)
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                         _FILE_MODE, dir_fd=parent)
        except FileExistsError:
            raise UnsafeResult(f"'{relative}' appears twice") from None
        written = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := read(CHUNK):
                written += len(chunk)
                self.tally.check_size(relative, written)
                out.write(chunk)
        self.tally.bytes += written


class _Tally:
    """Files and bytes of one result against its limits; a refusal names the entry and the cap."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.files = 0
        self.bytes = 0

    def add_file(self, relative: str, declared_size: int) -> None:
        """Count one more file, refusing it by its declared size before any byte is read."""
        self.files += 1
        if self.files > self.limits.max_files:
            raise UnsafeResult(f"more than {self.limits.max_files} files "
                               f"(at '{relative}'; worker.result_limits.max_files)")
        self.check_size(relative, declared_size)

    def add(self, relative: str, size: int) -> None:
        """Count a whole file whose size is known (one already on disk)."""
        self.add_file(relative, size)
        self.bytes += size

    def check_size(self, relative: str, size: int) -> None:
        if size > self.limits.max_file_bytes:
            raise UnsafeResult(f"'{relative}' is larger than {self.limits.max_file_bytes} bytes "
                               "(worker.result_limits.max_file_bytes)")
        if self.bytes + size > self.limits.max_bytes:
            raise UnsafeResult(f"the result is larger than {self.limits.max_bytes} bytes "
                               f"(at '{relative}'; worker.result_limits.max_bytes)")


def _fill(destination: Path, limits: Limits, entries: Iterator[tuple[str, int, IO[bytes] | None]]
          ) -> None:
    """Write ``(relative, size, stream or None for a folder)`` into a new ``destination``."""
    writer = _Writer(destination, limits)
    try:
        for relative, size, stream in entries:
            if stream is None:
                writer.folder(relative)
            else:
                writer.file(relative, size, stream.read)
    finally:
        writer.close()


def _local_entries(root: Path, policy: Policy, skip: frozenset[str]
                   ) -> Iterator[tuple[str, int, IO[bytes] | None]]:
    for entry in _walk(root, policy, skip):
        if entry.fd is None:
            yield entry.relative, 0, None
            continue
        with os.fdopen(entry.fd, "rb") as stream:
            yield entry.relative, os.fstat(stream.fileno()).st_size, stream


# -- outbound: a participant's folder --------------------------------------------------------


def copy_submission(source: Path, destination: Path) -> None:
    """Copy a submission folder to a new ``destination`` (see the module docstring)."""
    _fill(destination, Limits.unbounded(), _local_entries(source, "skip", SKIPPED_NAMES))


def pack_submission(source: Path) -> bytes:
    """A submission folder as ``.tar.gz`` bytes (see the module docstring)."""
    return _pack(_local_entries(source, "skip", SKIPPED_NAMES))


def pack_results(source: Path, limits: Limits) -> bytes:
    """``training_output`` as ``.tar.gz`` bytes, on the host that ran it; refuses as receiving does."""
    return _pack(_local_entries(source, "refuse", frozenset()), limits)


def _pack(entries: Iterator[tuple[str, int, IO[bytes] | None]],
          limits: Limits | None = None) -> bytes:
    buffer = io.BytesIO()
    tally = _Tally(limits or Limits.unbounded())
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for relative, size, stream in entries:
            if stream is not None:
                tally.add(relative, size)
            info = tarfile.TarInfo(relative)
            info.mtime = 0
            if stream is None:
                info.type, info.mode = tarfile.DIRTYPE, _DIR_MODE
                tar.addfile(info)
            else:
                info.size, info.mode = size, _FILE_MODE
                tar.addfile(info, stream)
    return buffer.getvalue()


# -- inbound: what a run hands back -----------------------------------------------------------


def receive_folder(source: Path, destination: Path, limits: Limits) -> None:
    """Copy a run's local ``training_output`` into a new ``destination``, or refuse it."""
    _fill(destination, limits, _local_entries(source, "refuse", frozenset()))


def verify_tree(root: Path, limits: Limits) -> None:
    """Refuse a folder published by other code (a custom worker) unless it holds regular
    files and folders only, within ``limits``."""
    tally = _Tally(limits)
    for relative, size, stream in _local_entries(root, "refuse", frozenset()):
        if stream is not None:
            tally.add(relative, size)


def receive_archive(archive: bytes | Path, destination: Path, limits: Limits) -> None:
    """Write a ``.tar.gz`` a run handed back into a new ``destination``, or refuse it."""
    with contextlib.ExitStack() as stack:
        raw: IO[bytes] = (io.BytesIO(archive) if isinstance(archive, bytes)
                          else stack.enter_context(open(archive, "rb")))
        # Room for every header and padding block on top of the data itself.
        budget = limits.max_bytes + (min(limits.max_files, 1 << 40) + 2) * 3 * tarfile.BLOCKSIZE
        stream = _BoundedReader(gzip.GzipFile(fileobj=raw, mode="rb"), budget)
        try:
            tar = stack.enter_context(tarfile.open(fileobj=stream, mode="r:"))
            _fill(destination, limits, _archive_entries(tar))
        except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
            if isinstance(exc, UnsafeResult):
                raise
            raise UnsafeResult(f"not a readable .tar.gz archive ({exc.__class__.__name__}: "
                               f"{exc})") from None


def _archive_entries(tar: tarfile.TarFile) -> Iterator[tuple[str, int, IO[bytes] | None]]:
    for member in tar:
        if member.name in (".", "./") and member.isdir():
            continue  # the archive's root (``tar -C folder .``), which is the destination
        relative = check_name(member.name.removeprefix("./"))
        if member.isdir():
            yield relative, 0, None
        elif member.isreg():
            stream = tar.extractfile(member)
            if stream is None:  # pragma: no cover - isreg() members always have data
                raise UnsafeResult(f"'{relative}' has no data")
            yield relative, member.size, stream
        else:
            raise UnsafeResult(f"'{relative}' is {_member_kind(member)}: "
                               "a result holds regular files and folders only")


def _member_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"a symbolic link (to '{member.linkname}')"
    if member.islnk():
        return f"a hard link (to '{member.linkname}')"
    if member.isfifo():
        return "a FIFO"
    if member.ischr() or member.isblk():
        return "a device"
    return "a special entry"


def check_name(name: str) -> str:
    """``name`` as a safe relative path (``a/b``), or :class:`UnsafeResult` saying why not."""
    if not name or "\x00" in name or any(ord(char) < 32 for char in name):
        raise UnsafeResult(f"entry {name!r}: empty, or has control characters")
    if name.startswith("/") or "\\" in name:
        raise UnsafeResult(f"entry {name!r}: absolute, or has a backslash")
    relative = name.rstrip("/")
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafeResult(f"entry {name!r}: has an empty, '.' or '..' component")
    if (len(parts) > MAX_DEPTH or len(relative.encode()) > MAX_PATH
            or any(len(part.encode()) > MAX_COMPONENT for part in parts)):
        raise UnsafeResult(f"entry {name[:80]!r}...: too deep or too long a name")
    return str(PurePosixPath(*parts))


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _BoundedReader(io.RawIOBase):
    """A decompressed stream, read forward only, that refuses to expand past ``budget``
    bytes or to hand out a huge block at once (tarfile reads a pax header whole)."""

    def __init__(self, inner: _Readable, budget: int):
        self._inner = inner
        self._left = budget
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self._position + offset
        if whence not in (io.SEEK_SET, io.SEEK_CUR) or target < self._position:
            raise UnsafeResult("the archive asks to be read backwards")
        while self._position < target:
            if not self.read(min(CHUNK, target - self._position)):
                break
        return self._position

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > MAX_SINGLE_READ:
            raise UnsafeResult("the archive holds a header or entry too large to read")
        data = self._inner.read(size)
        self._position += len(data)
        self._left -= len(data)
        if self._left < 0:
            raise UnsafeResult("the archive expands beyond worker.result_limits.max_bytes")
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
