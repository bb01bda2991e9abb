"""The parent of every bwrap we start: the sandbox ends whole, whoever is killed first.

    python -I -S -c <this file> PARENT_PID [CGROUP_PROCS_FILE...] -- BWRAP_ARGV...

Why it exists. With ``--unshare-pid``, bwrap's first process clones the
sandbox's first process, which then blocks reading an eventfd until bwrap
has set it up (uid maps, ``--info-fd``) and writes to it. If bwrap's first
process dies in between — SIGKILLed alone by a tree kill that listed the
processes before the clone, its own ``--die-with-parent`` SIGKILL when the
runner is SIGKILLed, SIGPIPE on ``--info-fd`` when the runner that reads it
is gone — the cloned process waits forever: a lone ``bwrap``, parent 1, no
child, holding the run's pipes, that nothing will ever wake. It cannot set
its own parent-death signal before that read (bwrap's code), so neither a
runner that was SIGKILLed (it cleans up nothing) nor any list of pids can be
relied on. Two things reach it: a signal to its process group (the kernel
signals a group at once, a process being forked included) and its parent.

So bwrap is started by this process, which (in order):

1. leads a session of its own, and starts bwrap as the leader of a process
   group, which bwrap's first process and the sandbox's first process share
   until the run's command starts (that one starts a session of its own
   inside the sandbox's PID namespace, which dies with the sandbox's first
   process);
2. turns SIGTERM, SIGINT, SIGHUP — and the death of ``PARENT_PID`` (the
   runner: ``PR_SET_PDEATHSIG``, delivered by the kernel even when the
   runner was SIGKILLed) — into one SIGKILL of bwrap's whole group, and
   stays alive itself:
3. it is the subreaper of what bwrap leaves (``PR_SET_CHILD_SUBREAPER``):
   whatever of the sandbox's setup outlives bwrap's first process (a clone
   that left the group, or was not signalled with it) becomes this one's
   child, and is SIGKILLed and reaped, again and again, until none is left;
   only then does this process exit. (When it killed its own group, itself
   included, a clone orphaned in that instant went to PID 1 instead: 1 in 8
   kills at bwrap's start on a loaded CI machine.)
4. puts bwrap in the run's cgroups (the ``cgroup.procs`` files given; this
   process stays out: it is not the run's), and exits with bwrap's status
   (128 + N for a signal N).

A kill of this process alone, by pid, is the one thing it cannot turn into
the group's: whoever kills a run's tree also kills the process groups of
what it listed (the runner's own ``stop``).

Standard library only, any Python 3.8+ (it runs with the runner's interpreter).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
#: What the group is killed on (and the signal the parent's death is delivered as).
ENDS_THE_GROUP = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: Exit status when the command could not be started (as a shell's).
NOT_STARTED = 127
#: Seconds between two looks at the parent, where prctl cannot be called.
PARENT_CHECK = 1.0
#: Seconds between two sweeps of what is left once bwrap has ended.
SWEEP = 0.01

#: bwrap's pid, once started: the leader of the group an end signal kills.
_bwrap: int | None = None


def main(argv: list[str]) -> int:
    split = argv.index("--")
    parent, procs, command = int(argv[0]), argv[1:split], argv[split + 1:]
    if os.getsid(0) != os.getpid():
        os.setsid()
    for signum in ENDS_THE_GROUP:
        signal.signal(signum, _end_the_group)
    prctl = _Prctl()
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if not prctl.works:  # no ctypes: the parent is looked at every second instead
        signal.signal(signal.SIGALRM, functools.partial(_end_the_group_without, parent))
        signal.setitimer(signal.ITIMER_REAL, PARENT_CHECK, PARENT_CHECK)
    if os.getppid() != parent:  # it died before the line above: nothing would tell us
        return 128 + signal.SIGKILL
    guard = os.getpid()
    pid = os.fork()
    if pid == 0:
        _start(command, procs, prctl, guard)
    with contextlib.suppress(OSError):  # (the child does it too: whichever comes first)
        os.setpgid(pid, pid)
    global _bwrap
    _bwrap = pid
    _close_all_but_stdio()  # the run's pipes are bwrap's: the runner waits for their end
    return _wait_for(pid)


def _start(command: list[str], procs: list[str], prctl: _Prctl, guard: int) -> None:
    """In the child: bwrap, dying with this process until it binds itself to it."""
    try:
        for signum in ENDS_THE_GROUP:
            signal.signal(signum, signal.SIG_DFL)
        os.setpgid(0, 0)
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != guard:
            os._exit(128 + signal.SIGKILL)
        for path in procs:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        os.execv(command[0], command)  # noqa: S606 - an argv, as every run
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.write(2, f"ramp-fleet: cannot start {command[0]}: {exc}\n".encode())
    finally:
        os._exit(NOT_STARTED)


def _wait_for(pid: int) -> int:
    """bwrap's exit status, once it and every process that came back to us have ended."""
    code = NOT_STARTED
    while True:
        try:
            ended, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return code
        if ended == pid:
            code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else \
                os.WEXITSTATUS(status)
            break
    while True:  # orphans of the sandbox's setup: bwrap is gone, nothing of theirs may stay
        for child in _children():  # (listed again each time: orphans keep coming back)
            with contextlib.suppress(OSError):
                os.kill(child, signal.SIGKILL)
        try:
            ended, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return code
        if ended == 0:
            time.sleep(SWEEP)


def _end_the_group(signum: int, frame: object) -> None:
    """bwrap's group killed; this process lives on to kill and reap what comes back to it
    (:func:`_wait_for`). Before bwrap is started, there is nothing to wait for."""
    if _bwrap is None:
        os._exit(128 + signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.killpg(_bwrap, signal.SIGKILL)


def _end_the_group_without(parent: int, signum: int, frame: object) -> None:
    if os.getppid() != parent:
        _end_the_group(signum, frame)


def _children() -> list[int]:
    try:
        with open(f"/proc/self/task/{os.getpid()}/children", "rb") as listing:
            return [int(word) for word in listing.read().split()]
    except OSError:
        return []


def _close_all_but_stdio() -> None:
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc/self/fd"):
            if int(name) > 2:
                with contextlib.suppress(OSError):
                    os.close(int(name))


class _Prctl:
    """``prctl(option, value)``, or nothing where ctypes is missing (a minimal Python)."""

    def __init__(self) -> None:
        self._call = None
        with contextlib.suppress(Exception):
            import ctypes

            self._call = ctypes.CDLL(None, use_errno=True).prctl

    @property
    def works(self) -> bool:
        return self._call is not None

    def __call__(self, option: int, value: int) -> None:
        if self._call is not None:
            self._call(option, value, 0, 0, 0)


def argv(command: list[str], python: str | None = None, procs: tuple[str, ...] = ()) -> list[str]:
    """``command`` (a bwrap command line) started through this program, for this process."""
    import pkgutil

    source = pkgutil.get_data("ramp_fleet.sandbox", "guard.py")
    assert source is not None
    return [python or sys.executable, "-I", "-S", "-c", source.decode("utf-8"), str(os.getpid()),
            *procs, "--", *command]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
