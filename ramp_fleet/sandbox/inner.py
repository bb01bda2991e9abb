"""The first process inside a run's sandbox: trusted code that prepares, starts and ends the run.

    python -I -S -c <this file> STATUS_FD GO_FD UID GID NPROC STAGING TARGET -- COMMAND...

The runner starts it (through bubblewrap) with the run's own Python, so it
is written for any Python 3.8+ and the standard library. In order:

1. as root's sandbox: become the run's unprivileged uid and gid (UID/GID,
   -1: stay), with no supplementary group;
2. become non-dumpable (no process of the run may read or write its memory);
3. copy the submission from STAGING (read-only) into TARGET, the run's own
   capped folder (skipping anything but regular files and folders);
4. cap the processes (NPROC, 0: no cap here) and core dumps;
5. start COMMAND (ramp-test) and wait for it;
6. kill every other process of the sandbox (a child left running, a fork
   bomb), so that nothing changes what the run made while it is collected;
7. write ``{"returncode", "maxrss_kb"}`` on STATUS_FD, then wait until the
   runner, which collects ``training_output`` from outside meanwhile,
   writes on or closes GO_FD; exit with the command's status (128 + N for a
   signal N).

Whatever the run does to this process, it gains nothing: the runner checks
everything it collects, and without a status the run has failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import stat
import sys

PR_SET_DUMPABLE = 4


def main(argv: list[str]) -> int:
    status_fd, go_fd, uid, gid, nproc = (int(word) for word in argv[:5])
    staging, target = argv[5], argv[6]
    command = argv[8:]
    for fd in (status_fd, go_fd):
        os.set_inheritable(fd, False)
    if gid >= 0:
        os.setgroups([])
        os.setgid(gid)
    if uid >= 0:
        os.setuid(uid)
    _not_dumpable()
    if staging:
        _copy(staging, target, skip=("training_output",))  # a previous run's: never an input
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if nproc > 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    try:
        pid = os.fork()
    except OSError as exc:
        sys.stderr.write(f"ramp-fleet: cannot start the run: {exc}\n")
        return _finish(status_fd, go_fd, 127, 0)
    if pid == 0:
        try:
            os.execvp(command[0], command)  # noqa: S606 - an argv, as every run
        except OSError as exc:
            sys.stderr.write(f"ramp-fleet: cannot start {command[0]}: {exc}\n")
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    _end_the_others()
    return _finish(status_fd, go_fd, code, usage.ru_maxrss)


def _finish(status_fd: int, go_fd: int, code: int, maxrss_kb: int) -> int:
    os.write(status_fd, json.dumps({"returncode": code, "maxrss_kb": maxrss_kb}).encode())
    os.close(status_fd)
    with contextlib.suppress(OSError):
        os.read(go_fd, 1)
    return code


def _not_dumpable() -> None:
    with contextlib.suppress(Exception):  # no ctypes here: the seccomp filter refuses ptrace
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def _copy(source: str, target: str, skip: tuple[str, ...] = ()) -> None:
    """Regular files and folders of ``source`` into ``target``, never following a link."""
    for name in os.listdir(source):
        if name in skip:
            continue
        path, into = os.path.join(source, name), os.path.join(target, name)
        info = os.lstat(path)
        if stat.S_ISDIR(info.st_mode):
            os.mkdir(into, 0o755)
            _copy(path, into)
        elif stat.S_ISREG(info.st_mode):
            with open(path, "rb") as data, open(into, "xb") as out:
                while True:
                    chunk = data.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)


def _end_the_others() -> None:
    """SIGKILL every process of the sandbox but its init and this one, then reap ours.

    ``kill(-1)`` signals them all at once under the kernel's task-list lock,
    so a fork bomb cannot outrun it; a few rounds catch a process that was
    being created meanwhile.
    """
    for _ in range(5):
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            break  # no process left to signal
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                break
        except ChildProcessError:
            break


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
