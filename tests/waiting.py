"""Waiting in a test for what must happen."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

#: How long a test may wait for what must happen; never a measure of speed.
PATIENCE = 120.0


def wait_for(predicate: Callable[[], object], what: str, timeout: float = PATIENCE) -> None:
    """Poll until ``predicate()`` is true; a generous deadline only turns a hang into a failure."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


def dispatch_past_a_gate(run: Callable[[], object], gate: Path, predicate: Callable[[], object],
                         what: str, timeout: float = 60) -> None:
    """Run a dispatcher (``run``) in a thread while ``gate`` is closed (the kit's code waits
    for that file), until ``predicate()``; then open the gate and wait for the dispatcher's
    end (failing if it does not end)."""
    runner = threading.Thread(target=run, name="dispatcher", daemon=True)
    runner.start()
    try:
        wait_for(predicate, what, timeout)
    finally:
        gate.touch()
        runner.join(timeout=PATIENCE)
    assert not runner.is_alive(), "the dispatcher did not end once the gate opened"
