"""Run a command and take its whole process tree down if our parent dies.

    python -m ramp_fleet.dask.guard PARENT_PID -- ramp-test --submission ...

The Dask task starts ``ramp-test`` through this guard. A Dask worker process
can die without running any clean-up (out of memory, SIGKILL, its nanny
restarting it); the guard notices that its parent is gone and kills the run,
so a lost worker never leaves a training process behind on its host. The
guard exits with the command's return code (128 + N for a signal N).
"""

from __future__ import annotations

import os
import subprocess
import sys

POLL_SECONDS = 0.5


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m ramp_fleet.dask.guard PARENT_PID -- COMMAND...", file=sys.stderr)
        return 2
    parent = int(argv[0])
    # The child gets a process group of its own, so killing it never kills us
    # halfway through killing its descendants.
    try:
        child = subprocess.Popen(argv[2:], stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        print(f"cannot start {argv[2]!r}: {exc}", file=sys.stderr, flush=True)
        return 127
    while True:
        try:
            code = child.wait(timeout=POLL_SECONDS)
        except subprocess.TimeoutExpired:
            if os.getppid() != parent:
                return _orphaned(child)
            continue
        return code if code >= 0 else 128 - code


def _orphaned(child: subprocess.Popen[bytes]) -> int:
    from ramp_fleet.process import kill_tree  # only paid for when needed

    print("ramp-fleet: the Dask worker died; stopping the run", file=sys.stderr, flush=True)
    kill_tree(child.pid)
    return 137


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
