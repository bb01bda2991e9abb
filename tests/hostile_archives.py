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
