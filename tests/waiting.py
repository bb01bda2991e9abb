"""Waiting in a test for what must happen."""

from __future__ import annotations

import time
from collections.abc import Callable

#: How long a test may wait for what must happen; never a measure of speed.
PATIENCE = 120.0


def wait_for(predicate: Callable[[], object], what: str, timeout: float = PATIENCE) -> None:
    """Poll until ``predicate()`` is true; a generous deadline only turns a hang into a failure."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)
