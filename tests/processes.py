"""Finding the processes a test started, by what their command lines hold."""

from __future__ import annotations

import time
import uuid

import psutil


def processes_with(*needles: str) -> list[psutil.Process]:
    """The processes whose command line has each of ``needles`` in one of its arguments."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        arguments = process.info["cmdline"] or []
        if all(any(needle in argument for argument in arguments) for needle in needles):
            found.append(process)
    return found


def wait_until_gone(*needles: str, timeout: float = 15.0) -> list[psutil.Process]:
    """Those of :func:`processes_with` still there after ``timeout`` (none: ``[]``)."""
    deadline = time.monotonic() + timeout
    while (left := processes_with(*needles)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def unique(prefix: str) -> str:
    """A marker no other process on this machine has: ``tmp_path.name`` is not one, as two
    pytest-xdist workers number their temporary folders alike (``test_x0`` in each)."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"
