"""TEST ONLY: ``ramp-fleet dispatch`` with an outside part made to fail at one step of a run.

    python -m tests.faults.inject CONFIG

``RAMP_FLEET_FAULT_STEP`` names the step (start, setup, launch, running, fetch,
publish, teardown, close) and ``RAMP_FLEET_FAULT_SOCKET`` the test's fault
controller: the first time the dispatcher enters that step, this asks the
controller to break the part (stop a server, fill a disk, send a signal...)
and waits until it is broken; then the step goes on, and meets the fault.
Everything else is the real command, in a process of its own, as an
organiser runs it.
"""

from __future__ import annotations

import functools
import inspect
import os
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

_fired = threading.Event()
_lock = threading.Lock()


def trigger() -> None:
    """Ask the controller to break the part, once."""
    with _lock:
        if _fired.is_set():
            return
        _fired.set()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as channel:
        channel.connect(os.environ["RAMP_FLEET_FAULT_SOCKET"])
        channel.sendall(f"break {os.getpid()}\n".encode())
        channel.recv(16)


def before(owner: Any, name: str) -> None:
    """Make ``owner.name`` (a method, a class method, a module's function) trigger first."""
    raw = inspect.getattr_static(owner, name)
    function: Callable[..., Any] = raw.__func__ if isinstance(raw, classmethod) else raw

    @functools.wraps(function)
    def hooked(*args: Any, **kwargs: Any) -> Any:
        trigger()
        return function(*args, **kwargs)

    setattr(owner, name, classmethod(hooked) if isinstance(raw, classmethod) else hooked)


def hook(step: str, worker_type: str, board: bool) -> None:
    from ramp_fleet.workers import base, worker_class

    worker = worker_class(worker_type)
    if step == "start":
        if board:
            from ramp_fleet.ramp_board.sync import BoardSync

            before(BoardSync, "start")
        else:
            before(worker, "open_shared")
    elif step == "publish":
        before(base, "receive")  # the one receive path: log, predictions, scores
    else:
        method = {"setup": "prepare", "launch": "start", "running": "wait",
                  "fetch": "fetch_output", "teardown": "release", "close": "close_shared"}[step]
        before(worker, method)


def main(config: str) -> None:
    from ramp_fleet.cli import main as cli
    from ramp_fleet.config import load_event_config

    event = load_event_config(config)
    hook(os.environ["RAMP_FLEET_FAULT_STEP"], event.worker_type,
         event.store.backend == "ramp-board")
    cli(["dispatch", config])


if __name__ == "__main__":
    main(sys.argv[1])
