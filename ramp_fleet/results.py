"""Putting a run's results in place: all of them or none, and a readable error.

Every backend ends the same way — a log under ``logs_dir/S/log`` and, on
success, ``training_output`` under ``predictions_dir/S`` — so the rules live
here once.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

#: How much of a failed run's log is kept as its error message.
EXCERPT_LINES = 20


def publish_dir(source: Path, target: Path) -> None:
    """Move ``source`` to ``target`` atomically, replacing any earlier result.

    The new tree is staged next to the target (same filesystem), then swapped
    in with renames, so a reader never sees a half-written folder.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        incoming = staging / "new"
        try:
            source.rename(incoming)
        except OSError:  # another filesystem: copy instead
            shutil.copytree(source, incoming, symlinks=True)
        if target.exists():
            target.rename(staging / "old")
        incoming.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish_file(data: bytes, target: Path) -> None:
    """Write ``data`` to ``target`` atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as tmp:
        tmp.write(data)
    Path(tmp.name).replace(target)


def error_excerpt(log_file: Path, lines: int = EXCERPT_LINES) -> str:
    """The part of a failed run's log a person needs: its last traceback, trimmed."""
    try:
        text = log_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "the run failed and left no log"
    return excerpt(text, lines)


def excerpt(text: str, lines: int = EXCERPT_LINES) -> str:
    all_lines = text.rstrip().splitlines()
    start = max((i for i, line in enumerate(all_lines) if line.startswith("Traceback")), default=None)
    chosen = all_lines[start:] if start is not None else all_lines
    if len(chosen) > lines:
        chosen = ["...", *chosen[-lines:]]
    return "\n".join(chosen) or "the run failed without output"
