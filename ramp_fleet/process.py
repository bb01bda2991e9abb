"""The one door for local processes: argv lists, never a shell.

Runs that may need to be stopped (``ramp-test``) start in their own process
group, so a timeout or a second Ctrl-C can take down the whole tree —
including grandchildren that ignore SIGTERM or that moved to a session of
their own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import psutil

from ramp_fleet.errors import CommandError

#: Return code recorded for a run stopped by its timeout (as coreutils' timeout).
TIMEOUT_RETURNCODE = 124

#: A process started through this module (the dispatcher's door to ``subprocess``).
Child = subprocess.Popen[bytes]
TimeoutExpired = subprocess.TimeoutExpired
DEVNULL = subprocess.DEVNULL


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a short command to completion and capture its output."""
    try:
        done = subprocess.run(
            list(argv), cwd=cwd, env=dict(env) if env is not None else None,
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    except FileNotFoundError:
        raise CommandError(argv, 127, stderr=f"{argv[0]}: command not found") from None
    except subprocess.TimeoutExpired as exc:
        raise CommandError(argv, TIMEOUT_RETURNCODE, stderr=f"timed out after {exc.timeout} s") from None
    if check and done.returncode != 0:
        raise CommandError(argv, done.returncode, done.stdout, done.stderr)
    return done


def spawn_group(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    output: IO[bytes] | int | None = None,
    niceness: int = 0,
) -> subprocess.Popen[bytes]:
    """Start a long run in a new session (its own process group), niced.

    ``output`` receives both stdout and stderr, like a log file.
    """

    def lower_priority() -> None:  # runs in the child, before exec
        if niceness:
            os.nice(niceness)

    return subprocess.Popen(
        list(argv), cwd=cwd, env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
        start_new_session=True, preexec_fn=lower_priority if niceness else None,
    )


def start_service(argv: Sequence[str], *, keep_stderr: bool = True, niceness: int = 0) -> Child:
    """Start a helper we talk to over its stdin and stdout (unbuffered), in a session of
    its own so that a signal to ours is not also its; stderr is a pipe (``keep_stderr``:
    the caller drains it) or discarded. Raises ``OSError`` when it cannot start."""

    def lower_priority() -> None:  # runs in the child, before exec
        os.nice(niceness)

    return subprocess.Popen(
        list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if keep_stderr else subprocess.DEVNULL, bufsize=0,
        start_new_session=True, preexec_fn=lower_priority if niceness else None,
    )


def descendants(pid: int) -> list[psutil.Process]:
    """The live descendants of ``pid`` (empty when it is gone)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def kill_tree(pid: int, pgid: int | None = None, grace: float = 2.0) -> None:
    """Stop a process, its process group and every descendant.

    SIGTERM first, SIGKILL for whatever is left after ``grace`` seconds.
    Descendants are listed before anything is signalled, so children that
    escaped the group (``setsid``) are still found.
    """
    group = pid if pgid is None else pgid
    victims = [p for p in [_process(pid), *descendants(pid)] if p is not None]
    _signal_group(group, signal.SIGTERM)
    for proc in victims:
        _signal(proc, signal.SIGTERM)
    _, alive = psutil.wait_procs(victims, timeout=grace)
    _signal_group(group, signal.SIGKILL)
    for proc in alive:
        _signal(proc, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=grace)


def group_alive(pgid: int) -> bool:
    """True while any process of the group ``pgid`` still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_members(pgid: int) -> list[psutil.Process]:
    """The live processes of group ``pgid``."""
    return [p for p in psutil.process_iter(["pid"]) if _pgid(p) == pgid]


def groups_working_in(folder: Path) -> set[int]:
    """The process groups with a process whose working folder is under ``folder``."""
    groups = set()
    for proc in psutil.process_iter(["pid"]):
        try:
            if Path(proc.cwd()).is_relative_to(folder):
                groups.add(os.getpgid(proc.pid))
        except (psutil.Error, OSError):
            continue
    return groups


def kill_group(pgid: int, grace: float = 2.0) -> None:
    """Stop a process group left behind by a dead dispatcher (no parent known)."""
    members = group_members(pgid)
    victims = members + [d for p in members for d in descendants(p.pid)]
    _signal_group(pgid, signal.SIGTERM)
    _, alive = psutil.wait_procs(victims, timeout=grace)
    _signal_group(pgid, signal.SIGKILL)
    for proc in alive:
        _signal(proc, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except OSError:
        return None


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _signal(proc: psutil.Process, signum: signal.Signals) -> None:
    with contextlib.suppress(psutil.Error):
        proc.send_signal(signum)
