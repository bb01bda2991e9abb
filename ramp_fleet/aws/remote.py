"""The command lines run on an instance, rendered from ``templates/remote_run.sh.j2``.

Each function returns the exact text sent over SSH (tests assert on it);
every interpolated value is shell-quoted by the template.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from ramp_fleet.ramp_test import ramp_test_command
from ramp_fleet.templating import environment

TEMPLATE = "remote_run.sh.j2"

#: Used for memory_profiling when the instance has no GNU time: the peak RSS (KiB)
#: of the run's processes, as ``getrusage(RUSAGE_CHILDREN)`` reports it.
PEAK_RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    'open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n'
    "sys.exit(rc)\n"
)
#: Seconds between SIGTERM and SIGKILL when a run is stopped.
KILL_GRACE = 5
#: The dispatcher stops a run at its timeout; the instance's own ``timeout`` is a
#: safety net (a dead dispatcher) that fires this much later.
REMOTE_TIMEOUT_MARGIN = 30


@cache
def _module() -> Any:
    template = environment(trim_blocks=False).get_template(TEMPLATE)
    return template.make_module({"peak_rss_wrapper": PEAK_RSS_WRAPPER})


def _render(macro: str, *args: Any) -> str:
    return str(getattr(_module(), macro)(*args)).strip()


def remote_path(kit: str, *parts: str) -> str:
    """A path under the kit folder as SFTP sees it (relative paths are from $HOME)."""
    base = kit[2:] if kit.startswith("~/") else ("." if kit == "~" else kit)
    return "/".join([base.rstrip("/"), *parts])


def prepare(kit: str, submission: str) -> str:
    return _render("prepare", kit, submission)


def unpack(kit: str, submission: str, archive: str) -> str:
    return _render("unpack", kit, submission, archive)


def start(kit: str, submission: str, *, activate: str, timeout: float,
          n_threads: int | None, memory_profiling: bool) -> str:
    """Start ``ramp-test`` detached, from the kit folder, as :mod:`ramp_fleet.ramp_test` says."""
    command = ramp_test_command("ramp-test", submission, ".", ".", "submissions",
                                n_threads=n_threads)
    return _render("start", kit, submission, activate,
                   str(math.ceil(timeout) + REMOTE_TIMEOUT_MARGIN),
                   str(KILL_GRACE), command.argv, command.env, memory_profiling)


def poll(kit: str, submission: str) -> str:
    return _render("poll", kit, submission)


def kill(kit: str, submission: str) -> str:
    return _render("kill", kit, submission, KILL_GRACE)


def pack(kit: str, submission: str, archive: str) -> str:
    return _render("pack", kit, submission, archive)


def peak(kit: str, submission: str) -> str:
    """Print the run's peak memory in KiB (memory_profiling), at most 32 bytes of it."""
    return _render("peak", kit, submission)


def clean(kit: str, submission: str) -> str:
    return _render("clean", kit, submission)


def quick_test(kit: str, activate: str, submission: str) -> str:
    """``ramp-test --quick-test`` of one submission in the kit (``build-ami --test``)."""
    return _render("quick_test", kit, activate, submission)


def state_path(kit: str, submission: str, name: str) -> str:
    """Where the run's files are, for shell commands (quoted) — see ``remote_path`` for SFTP."""
    return f"{kit.rstrip('/')}/.ramp-fleet/{submission}/{name}"
