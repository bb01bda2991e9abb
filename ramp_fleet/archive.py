"""Folders into and out of a run: the one module that packs, copies and receives them.

**Outbound** — a participant's submission going to a run (the conda
worker's scratch copy, ``submit``, the AWS upload, the Dask task): regular
files and folders only. Symbolic links, hard links, special files and
unusable names are never followed nor shipped: each is skipped with one
warning naming it. ``training_output``, ``__pycache__`` and
``.ipynb_checkpoints`` are skipped at every depth.

**Inbound** — what a run hands back is untrusted. It always arrives as an
archive the runner packed (:mod:`ramp_fleet.sandbox.run`), from a local
file or a worker host's bytes; it is read by our own tar parser
(:mod:`ramp_fleet.sandbox.tar`: no sparse member, no header chain, bounded
memory) and written by :mod:`ramp_fleet.sandbox.tree` (regular files and
folders only, names checked, everything capped, our own ``O_NOFOLLOW |
O_EXCL`` opens under folders we created). A refusal is an
:class:`UnsafeResult` naming the entry and the rule.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ramp_fleet.sandbox.tar import pack, unpack
from ramp_fleet.sandbox.tree import Limits, Tally, UnsafeResult, entries, fill, open_folder

__all__ = ["SKIPPED_NAMES", "Limits", "UnsafeResult", "copy_submission",
           "pack_submission", "receive_archive", "verify_tree"]

#: Never part of a submission sent to a run, at any depth.
SKIPPED_NAMES = frozenset({"training_output", "__pycache__", ".ipynb_checkpoints"})


# -- outbound: a participant's folder --------------------------------------------------------


def copy_submission(source: Path, destination: Path) -> None:
    """Copy a submission folder to a new ``destination`` (see the module docstring)."""
    with _folder(source) as root:
        fill(destination, Limits.unbounded(), entries(root, "skip", SKIPPED_NAMES, str(source)))


def pack_submission(source: Path) -> bytes:
    """A submission folder as ``.tar.gz`` bytes (see the module docstring)."""
    buffer = io.BytesIO()
    with _folder(source) as root:
        pack(entries(root, "skip", SKIPPED_NAMES, str(source)), buffer)
    return buffer.getvalue()


# -- inbound: what a run hands back -----------------------------------------------------------


def verify_tree(root: Path, limits: Limits) -> None:
    """Refuse a folder published by other code (a custom worker) unless it holds regular
    files and folders only, within ``limits``."""
    tally = Tally(limits)
    with _folder(root) as fd:
        for relative, size, stream in entries(fd, "refuse"):
            if stream is None:
                tally.add_entry(relative)
            else:
                tally.add(relative, size)


def receive_archive(archive: bytes | Path, destination: Path, limits: Limits) -> None:
    """Write a ``.tar.gz`` a run handed back into a new ``destination``, or refuse it.

    ``archive`` is bytes, or a local file that our own code wrote (it is
    opened without following a link and must be a regular file).
    """
    with contextlib.ExitStack() as stack:
        raw: IO[bytes] = (io.BytesIO(archive) if isinstance(archive, bytes)
                          else stack.enter_context(_open_archive(archive)))
        unpack(raw, destination, limits)


@contextlib.contextmanager
def _folder(path: Path) -> Iterator[int]:
    try:
        fd = open_folder(path)
    except OSError as exc:
        raise FileNotFoundError(f"{path}: not a folder ({exc.strerror})") from None
    try:
        yield fd
    finally:
        os.close(fd)


def _open_archive(path: Path) -> IO[bytes]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    stream = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        stream.close()
        raise UnsafeResult(f"{path} is not a regular file")
    return stream
