"""``.tar.gz`` archives of results and submissions: written with tarfile, read by our own parser.

Reading is where a hostile archive attacks, so it is not left to
:mod:`tarfile`, which reads whole headers, sparse maps and chains of
extended headers into memory before a caller can look at a member (a
78 KB GNU sparse 1.0 member grew a reader by gigabytes). This parser
accepts what ``tar`` and :mod:`tarfile` write for plain files and folders —
ustar, GNU and pax headers, GNU long names — and nothing more:

* every header is checked (its checksum) and bounded: a pax record or a
  long name is at most :data:`MAX_META` bytes, and one of each kind may precede a
  member, never a chain of them;
* sparse members (GNU ``S`` headers, pax ``GNU.sparse.*``: all their
  formats), global headers, multi-volume and unknown entries are refused
  before any of their data is read;
* links, devices and FIFOs are reported as what they are, for the caller to
  refuse; a member's data is read in chunks, never whole.

Memory while reading is a few chunks, whatever the archive. Standard
library only (Python 3.10+): shipped to worker hosts with the runner.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Protocol

from ramp_fleet.sandbox.tree import (
    CHUNK,
    DIR_MODE,
    FILE_MODE,
    Limits,
    Tally,
    UnsafeResult,
    check_name,
    fill,
    shown,
)

BLOCK = 512
#: Largest pax record set or GNU long name accepted (a name is at most 1 KiB anyway).
MAX_META = 64 << 10
_KINDS = {b"0": "file", b"\0": "file", b"7": "file", b"5": "folder", b"1": "a hard link",
          b"2": "a symbolic link", b"3": "a device", b"4": "a device", b"6": "a FIFO"}
#: pax keys of a member that change what we read; the others (times, owners...) are ignored.
_PAX_USED = ("path", "linkpath", "size")


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class Member:
    """One entry of an archive: ``kind`` is ``file``, ``folder`` or a description of
    anything else (``a symbolic link``...) for the caller's refusal."""

    name: str
    kind: str
    size: int = 0
    linkname: str = ""


class TarReader:
    """Members of an uncompressed tar stream, in order; read a file's data with :meth:`read`."""

    def __init__(self, stream: _Readable):
        self._stream = stream
        self._left = 0
        self._padding = 0

    def __iter__(self) -> Iterator[Member]:
        while True:
            self._skip_rest()
            member = self._next_member()
            if member is None:
                return
            self._left = member.size if member.kind == "file" else 0
            self._padding = -member.size % BLOCK if member.kind == "file" else 0
            yield member

    def read(self, size: int = CHUNK) -> bytes:
        """Up to ``size`` bytes of the current file's data (b"" at its end)."""
        wanted = min(size, self._left)
        if wanted <= 0:
            return b""
        data = self._stream.read(wanted)
        if len(data) < wanted:
            raise UnsafeResult("the archive ends inside a file")
        self._left -= len(data)
        return data

    # -- headers ---------------------------------------------------------------------------

    def _next_member(self) -> Member | None:
        pax: dict[str, str] = {}
        long_name = long_link = None
        extended: set[bytes] = set()  # one of each kind may precede a member
        while True:
            block = self._stream.read(BLOCK)
            if not block or block == bytes(BLOCK):
                return None  # the end (two zero blocks, or a stream that stops after one)
            if len(block) < BLOCK:
                raise UnsafeResult("the archive ends inside a header")
            _check_sum(block)
            flag = block[156:157]
            if flag in (b"x", b"X", b"L", b"K"):
                kind = b"x" if flag == b"X" else flag
                if kind in extended:
                    raise UnsafeResult("the archive chains extended headers")
                extended.add(kind)
                data = self._meta(block)
                if flag in (b"x", b"X"):
                    pax = _pax_records(data)
                elif flag == b"L":
                    long_name = _text(data.split(b"\0", 1)[0], "a long name")
                else:
                    long_link = _text(data.split(b"\0", 1)[0], "a long link name")
                continue
            return self._member(block, flag, pax, long_name, long_link)

    def _member(self, block: bytes, flag: bytes, pax: dict[str, str], long_name: str | None,
                long_link: str | None) -> Member:
        name = pax.get("path") or long_name or _header_name(block)
        if flag == b"S" or any(key.startswith("GNU.sparse.") for key in pax):
            raise UnsafeResult(f"entry {shown(name)} is a sparse file: refused before its map "
                               "is read")
        if flag == b"g":
            raise UnsafeResult("the archive has a global header: not one we write")
        kind = _KINDS.get(flag)
        if kind is None:
            raise UnsafeResult(f"entry {shown(name)} is of an unknown type {flag!r}")
        if kind == "file" and name.endswith("/"):
            kind = "folder"  # old tar writes folders as files named with a slash
        size = _number(block[124:136], "size")
        if "size" in pax:
            if not pax["size"].isdigit():
                raise UnsafeResult(f"entry {shown(name)} has a size that is not a number")
            size = int(pax["size"])
        linkname = pax.get("linkpath") or long_link or _field(block[157:257], "a link name")
        if kind != "file":
            if size and kind == "folder":
                raise UnsafeResult(f"entry {shown(name)} is a folder with data")
            self._skip(size + -size % BLOCK)  # a link or device has no data to speak of
            size = 0
        return Member(name, kind, size, linkname)

    def _meta(self, block: bytes) -> bytes:
        size = _number(block[124:136], "size")
        if size > MAX_META:
            raise UnsafeResult("the archive holds a header too large to read "
                               f"({size} bytes; at most {MAX_META})")
        data = self._stream.read(size + -size % BLOCK)
        if len(data) < size:
            raise UnsafeResult("the archive ends inside a header")
        return data[:size]

    def _skip_rest(self) -> None:
        self._skip(self._left + self._padding)
        self._left = self._padding = 0

    def _skip(self, count: int) -> None:
        while count > 0:
            data = self._stream.read(min(CHUNK, count))
            if not data:
                raise UnsafeResult("the archive ends inside a file")
            count -= len(data)


def _check_sum(block: bytes) -> None:
    recorded = _number(block[148:156], "checksum")
    blank = block[:148] + b" " * 8 + block[156:]
    unsigned = sum(blank)
    if recorded == unsigned:  # what tar writes; the signed sum (old writers) is a loop in
        return                # Python, paid only when the unsigned one does not match
    signed = sum(byte - 256 if byte > 127 else byte for byte in blank)
    if recorded != signed:
        raise UnsafeResult("not a readable .tar.gz archive (a header's checksum is wrong)")


def _number(field: bytes, what: str) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256, for sizes past 8 GiB
        value = int.from_bytes(field[1:], "big")
        if field[0] & 0x40:
            raise UnsafeResult(f"a header has a negative {what}")
        return value
    digits = field.replace(b"\0", b" ").strip()
    if not digits:
        return 0
    try:
        return int(digits, 8)
    except ValueError:
        raise UnsafeResult(f"not a readable .tar.gz archive (a header's {what} is not a "
                           "number)") from None


def _field(raw: bytes, what: str) -> str:
    return _text(raw.split(b"\0", 1)[0], what)


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsafeResult(f"{what} in the archive is not UTF-8: {shown(raw.decode('latin-1'))}"
                           ) from None


def _header_name(block: bytes) -> str:
    name = _field(block[0:100], "a name")
    if block[257:263] == b"ustar\x00":  # POSIX: a prefix before the name
        prefix = _field(block[345:500], "a name")
        if prefix:
            name = f"{prefix}/{name}"
    return name


def _pax_records(data: bytes) -> dict[str, str]:
    """``length key=value\\n`` records; a malformed one refuses the archive."""
    records: dict[str, str] = {}
    position = 0
    while position < len(data):
        space = data.find(b" ", position, position + 12)
        length_text = data[position:space] if space > 0 else b""
        if not length_text.isdigit() or int(length_text) <= space - position + 1:
            raise UnsafeResult("not a readable .tar.gz archive (a malformed pax record)")
        end = position + int(length_text)
        record = data[space + 1:end]
        if end > len(data) or not record.endswith(b"\n") or b"=" not in record:
            raise UnsafeResult("not a readable .tar.gz archive (a malformed pax record)")
        key, _, value = record[:-1].partition(b"=")
        name = _text(key, "a pax key")
        if name == "hdrcharset" and value != b"ISO-IR 10646 2000 UTF-8":
            raise UnsafeResult("the archive declares names that are not UTF-8")
        if name in _PAX_USED or name.startswith("GNU.sparse."):
            records[name] = _text(value, f"the pax {name}")
        position = end
    return records


# -- gzip, bounded ----------------------------------------------------------------------------


class BoundedReader(io.RawIOBase):
    """A decompressed stream, read forward only, that refuses to expand past ``budget``
    bytes or to hand out a huge block at once."""

    def __init__(self, inner: _Readable, budget: int, what: str = "worker.result_limits.max_bytes"):
        self._inner = inner
        self._left = budget
        self._what = what

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > 4 * CHUNK:
            raise UnsafeResult("the archive holds a header or entry too large to read")
        data = self._inner.read(size)
        self._left -= len(data)
        if self._left < 0:
            raise UnsafeResult(f"the archive expands beyond {self._what}")
        return data


def gzip_members(raw: IO[bytes], budget: int) -> tuple[TarReader, BoundedReader]:
    """A reader of the ``.tar.gz`` in ``raw``, decompressing at most ``budget`` bytes."""
    stream = BoundedReader(gzip.GzipFile(fileobj=raw, mode="rb"), budget)
    return TarReader(stream), stream


def budget_for(max_bytes: int, max_files: int) -> int:
    """Decompressed bytes an archive within these caps can need: the data, and room for every
    header, extended header and padding block on top of it."""
    return max_bytes + (min(max_files, 1 << 40) + 2) * 4 * BLOCK + 2 * MAX_META


def unpack(raw: IO[bytes], destination: str | os.PathLike[str], limits: Limits) -> None:
    """Write the ``.tar.gz`` in ``raw`` into a new ``destination`` (regular files and folders
    only, names checked, everything capped: :func:`~ramp_fleet.sandbox.tree.fill`), or
    raise :class:`UnsafeResult` saying why not."""
    reader, _ = gzip_members(raw, budget_for(limits.max_bytes, limits.max_files))
    try:
        fill(destination, limits, _entries(reader))
    except UnsafeResult:
        raise
    except OSError as exc:
        if exc.errno is not None:  # our disk's fault (full, read-only), not the archive's
            raise
        raise _unreadable(exc) from None
    except (EOFError, zlib.error) as exc:
        raise _unreadable(exc) from None


def _unreadable(exc: BaseException) -> UnsafeResult:
    """gzip's errors (BadGzipFile is an OSError without errno), a stream cut short."""
    return UnsafeResult(f"not a readable .tar.gz archive ({exc.__class__.__name__}: {exc})")


def _entries(reader: TarReader) -> Iterator[tuple[str, int, IO[bytes] | None]]:
    data = _MemberData(reader)
    for member in reader:
        if member.name in (".", "./") and member.kind == "folder":
            continue  # the archive's root (``tar -C folder .``), which is the destination
        relative = check_name(member.name)
        if member.kind == "folder":
            yield relative, 0, None
        elif member.kind == "file":
            yield relative, member.size, data  # type: ignore[misc]  # a readable stream
        else:
            target = f" (to {member.linkname!r})" if member.linkname else ""
            raise UnsafeResult(f"'{relative}' is {member.kind}{target}: "
                               "a result holds regular files and folders only")


class _MemberData(io.RawIOBase):
    """The current member's data, as the writer reads it."""

    def __init__(self, reader: TarReader):
        self._reader = reader

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._reader.read(size if size > 0 else 1 << 20)


# -- writing ---------------------------------------------------------------------------------


def pack(items: Iterator[tuple[str, int, IO[bytes] | None]], out: IO[bytes],
         tally: Tally | None = None, compresslevel: int = 6) -> None:
    """Write ``(relative, size, stream or None for a folder)`` as ``.tar.gz`` into ``out``."""
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=compresslevel,
                      format=tarfile.PAX_FORMAT) as archive:
        for relative, size, stream in items:
            if tally is not None and stream is not None:
                tally.add(relative, size)
            elif tally is not None:
                tally.add_entry(relative)
            info = tarfile.TarInfo(relative)
            info.mtime = 0
            if stream is None:
                info.type, info.mode = tarfile.DIRTYPE, DIR_MODE
                archive.addfile(info)
            else:
                info.size, info.mode = size, FILE_MODE
                archive.addfile(info, stream)
