"""Folders as compressed bytes, packed and extracted safely.

A submission travels to the Dask worker host, and its ``training_output``
comes back, as a gzip-compressed tar archive. Extraction refuses anything
that could write outside the destination: absolute names, ``..`` components,
links pointing outside, hard links, devices and FIFOs.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path, PurePosixPath

#: Never extract more than this (a gzip bomb would fill the worker's disk).
MAX_EXTRACTED_BYTES = 2 * 1024**3
_SKIPPED_NAMES = frozenset({"__pycache__", ".ipynb_checkpoints"})


class UnsafeArchive(ValueError):
    """An archive member would land outside the destination folder."""


def pack(folder: Path) -> bytes:
    """The files and folders under ``folder`` as ``.tar.gz`` bytes (names relative).

    Symbolic links are kept only when they point inside ``folder``.
    """
    root = folder.resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for path in sorted(_walk(root)):
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                _check_link_inside(root, path)
            tar.add(path, arcname=relative, recursive=False)
    return buffer.getvalue()


def extract(data: bytes, destination: Path, *, max_bytes: int = MAX_EXTRACTED_BYTES) -> None:
    """Extract ``pack`` bytes into ``destination`` (created), refusing unsafe members."""
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
        total = 0
        for member in members:
            check_member(member)
            total += member.size
            if total > max_bytes:
                raise UnsafeArchive(f"archive expands to more than {max_bytes} bytes")
        # The "data" filter re-checks everything above and drops odd permissions.
        tar.extractall(destination, members=members, filter="data")


def check_member(member: tarfile.TarInfo) -> None:
    """Raise :class:`UnsafeArchive` unless ``member`` stays inside the destination."""
    name = member.name
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"absolute path in archive: {name!r}")
    if ".." in parts or ".." in name.split("\\"):
        raise UnsafeArchive(f"'..' in archive path: {name!r}")
    if member.islnk():
        raise UnsafeArchive(f"hard link in archive: {name!r}")
    if member.issym():
        target = PurePosixPath(member.linkname)
        resolved = _normalise(PurePosixPath(name).parent / target)
        if target.is_absolute() or resolved is None:
            raise UnsafeArchive(f"link pointing outside the archive: {name!r} -> {member.linkname!r}")
    elif not (member.isfile() or member.isdir()):
        raise UnsafeArchive(f"special file in archive: {name!r}")


def _normalise(path: PurePosixPath) -> PurePosixPath | None:
    """``path`` with ``..`` folded in, or None when it climbs above its root."""
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part != ".":
            parts.append(part)
    return PurePosixPath(*parts)


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIPPED_NAMES]
        base = Path(dirpath)
        found.extend(base / name for name in dirnames)
        found.extend(base / name for name in filenames)
    return found


def _check_link_inside(root: Path, link: Path) -> None:
    target = os.readlink(link)
    if os.path.isabs(target):
        raise UnsafeArchive(f"link pointing outside the folder: {link} -> {target}")
    if _normalise(PurePosixPath(link.parent.relative_to(root).as_posix()) / target) is None:
        raise UnsafeArchive(f"link pointing outside the folder: {link} -> {target}")
