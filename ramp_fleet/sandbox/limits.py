"""Per-run limits: memory and process count, and what the run used.

**cgroup v2**, where this process may create one: as root on a host whose
cgroup v2 hierarchy has the memory and pids controllers (a cgroup
``ramp-fleet`` under its root), or in a subtree delegated to our user (a
systemd ``Delegate=yes`` unit: the processes there move to a leaf so the
controllers can be enabled). Each run gets its own cgroup: ``memory.max``
(swap off), ``pids.max``; afterwards ``memory.peak`` and ``memory.events``'
``oom_kill`` say what happened, for certain.

**Otherwise, rlimits**, set inside the sandbox by a few lines of Python that
start the run and report its peak resident memory (rusage does not cross
bwrap's PID namespace, so it is measured in there):

* ``RLIMIT_AS`` caps the address space of *each process* — stricter than
  resident memory (a process that maps much and touches little is refused
  too), and per process, not per run. Going over it is an allocation that
  fails (Python's ``MemoryError``), recognised in the log.
* ``RLIMIT_NPROC``, set inside the run's own user namespace, counts the
  processes (threads included) of that namespace only. The kernel ignores it
  for root, so a dispatcher running as root without a usable cgroup v2 has no
  process cap; the PID namespace still ends every process of a run with it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

CGROUP_V2 = "cgroup v2"
RLIMIT = "RLIMIT_AS"
#: Substrings of a log that mean an allocation failed (Python, C++, C).
MEMORY_ERRORS = ("MemoryError", "std::bad_alloc", "Cannot allocate memory", "out of memory")
#: Signals of C code whose allocation failed: SIGSEGV, SIGABRT, SIGBUS.
CRASH_SIGNALS = (11, 6, 7)
#: How many bytes of a log's end are searched for them.
LOG_TAIL_BYTES = 64 << 10
DISPATCHER_LEAF = "ramp-fleet-dispatcher"

#: Run inside the sandbox by the run's own Python: set the rlimits, start the
#: command, report its peak RSS (KiB) on file descriptor ``fd``. Written for
#: any Python 3, since it runs with whatever interpreter the event's environment has.
PEAK_WRAPPER = """\
import os, resource, sys
fd, memory, processes = [int(a) for a in sys.argv[1:4]]
if fd >= 0:
    os.set_inheritable(fd, False)
    os.set_blocking(fd, False)
if memory:
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
if processes:
    resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[5], sys.argv[5:])
    finally:
        os._exit(127)
status, usage = os.wait4(pid, 0)[1:]
if fd >= 0:
    try:
        os.write(fd, str(usage.ru_maxrss).encode())
    except OSError:
        pass
os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
"""


@dataclass(frozen=True)
class Limits:
    """What one run may use; None: not limited."""

    memory_mb: int | None = None
    max_processes: int | None = None


@dataclass(frozen=True)
class Usage:
    """What a run used, as far as it was measured, and the limit it had."""

    memory_limit_mb: int | None = None
    #: ``cgroup v2``, ``RLIMIT_AS``, or empty when memory was not limited.
    enforced_by: str = ""
    peak_mb: float | None = None
    #: The cgroup's OOM killer killed a process of the run.
    oom_killed: bool = False

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> Usage | None:
        """A usage read from a report (untrusted: a remote host wrote it)."""
        if not isinstance(data, dict):
            return None
        limit, peak = data.get("memory_limit_mb"), data.get("peak_mb")
        return cls(
            memory_limit_mb=limit if isinstance(limit, int) and not isinstance(limit, bool) else None,
            enforced_by=str(data.get("enforced_by") or "")[:32],
            peak_mb=float(peak) if isinstance(peak, int | float) and not isinstance(peak, bool)
            else None,
            oom_killed=data.get("oom_killed") is True,
        )


def over_limit_message(usage: Usage | None, returncode: int, log_tail: str) -> str | None:
    """The message of a run that failed by going over its memory limit, else None.

    Certain with a cgroup (its OOM killer counts its kills). Under RLIMIT_AS an
    allocation fails instead: Python says ``MemoryError``; C code often crashes
    (SIGSEGV, SIGABRT, SIGBUS), which is then reported as probable.
    """
    if usage is None or usage.memory_limit_mb is None or returncode == 0:
        return None
    peak = "not measured" if usage.peak_mb is None else f"{usage.peak_mb:.0f} MB"
    limit = (f"memory limit of {usage.memory_limit_mb} MB (worker.isolation.memory_mb, "
             f"{usage.enforced_by}: "
             f"{'the address space of each process' if usage.enforced_by == RLIMIT else 'the run'})")
    if usage.oom_killed or (usage.enforced_by == RLIMIT
                            and any(marker in log_tail for marker in MEMORY_ERRORS)):
        return f"the run went over its {limit}; peak memory {peak}"
    if usage.enforced_by == RLIMIT and returncode - 128 in CRASH_SIGNALS:
        return (f"the run crashed (signal {returncode - 128}) under its {limit}, as a failed "
                f"allocation does: probably over the limit; peak memory {peak}")
    return None


# -- rlimits, applied inside the sandbox ------------------------------------------------


def rlimit_prefix(limits: Limits, *, python: str | None, peak_fd: int | None,
                  limit_processes: bool) -> list[str]:
    """The argv to put before the command so that the rlimits apply to it.

    With ``peak_fd`` (or a memory limit) the Python wrapper, which also reports
    the peak; for a process cap alone ``prlimit`` (util-linux) when installed.
    """
    processes = limits.max_processes if limit_processes else None
    memory = None if limits.memory_mb is None else limits.memory_mb << 20
    if memory is None and peak_fd is None:
        if processes is None:
            return []
        prlimit = shutil.which("prlimit", path="/usr/bin:/bin")
        if prlimit is not None:
            return [prlimit, f"--nproc={processes}:{processes}", "--"]
    if python is None:
        raise LimitError("no Python interpreter to apply the limits with")
    return [python, "-I", "-S", "-c", PEAK_WRAPPER, str(-1 if peak_fd is None else peak_fd),
            str(memory or 0), str(processes or 0), "--"]


class LimitError(Exception):
    """The limits cannot be applied here."""


def read_peak(fd: int) -> float | None:
    """The peak (MB) the wrapper wrote on the pipe ``fd``; closes it."""
    try:
        data = os.read(fd, 64)
    except OSError:
        data = b""
    finally:
        os.close(fd)
    text = data.decode("ascii", "replace").strip()
    return int(text) / 1024 if text.isdigit() else None


def running_as_root() -> bool:
    """RLIMIT_NPROC means nothing for root (the kernel does not check it)."""
    return os.geteuid() == 0


# -- cgroup v2 ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CgroupHost:
    """Where this process may create the cgroups of its runs, or why it may not."""

    parent: Path | None
    problem: str | None = None


def cgroup_host(mountinfo: str = "/proc/self/mountinfo", own: str = "/proc/self/cgroup",
                prepare: bool = True) -> CgroupHost:
    """Find the cgroup under which runs get theirs, and prepare it (unless ``prepare`` is
    false: then only say whether it could be)."""
    mount = _cgroup2_mount(mountinfo)
    if mount is None:
        return CgroupHost(None, "no cgroup v2 hierarchy is mounted")
    top = Path(mount)
    enabled = _words(top / "cgroup.controllers")
    if not {"memory", "pids"} <= enabled:
        return CgroupHost(None, f"the cgroup v2 hierarchy at {mount} has no memory and pids "
                                f"controllers (only: {' '.join(sorted(enabled)) or 'none'})")
    if os.geteuid() == 0:
        return _prepare_root(top, prepare)
    return _prepare_delegated(top, _own_cgroup(own), prepare)


def _prepare_root(top: Path, prepare: bool) -> CgroupHost:
    parent = top / "ramp-fleet"
    if not prepare:
        return CgroupHost(parent if os.access(top, os.W_OK) else None,
                          None if os.access(top, os.W_OK) else f"{top} is read-only")
    try:
        _enable(top)
        parent.mkdir(exist_ok=True)
        _enable(parent)
    except OSError as exc:
        return CgroupHost(None, f"cannot create {parent} ({exc})")
    return CgroupHost(parent)


def _prepare_delegated(top: Path, own: str | None, prepare: bool) -> CgroupHost:
    if own is None:
        return CgroupHost(None, "this process is in no cgroup v2")
    here = top / own.lstrip("/")
    try:
        delegated = here.stat().st_uid == os.getuid() and os.access(here, os.W_OK)
    except OSError:
        delegated = False
    if not delegated:
        return CgroupHost(None, f"{here} is not delegated to this user (run the dispatcher in a "
                                "systemd unit with Delegate=yes, or as root)")
    if not prepare:
        return CgroupHost(here)
    try:
        if not {"memory", "pids"} <= _words(here / "cgroup.subtree_control"):
            # A cgroup with processes cannot enable controllers for its children:
            # move this cgroup's processes (ours included) to a leaf first.
            leaf = here / DISPATCHER_LEAF
            leaf.mkdir(exist_ok=True)
            for pid in _words(here / "cgroup.procs"):
                with contextlib.suppress(OSError):  # gone meanwhile
                    (leaf / "cgroup.procs").write_text(pid)
            _enable(here)
    except OSError as exc:
        return CgroupHost(None, f"cannot enable memory and pids in {here} ({exc})")
    return CgroupHost(here)


class Cgroup:
    """One run's cgroup: created with its limits, joined by the run, read and removed after."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def create(cls, parent: Path, name: str, limits: Limits) -> Cgroup:
        path = parent / name
        path.mkdir()
        group = cls(path)
        try:
            if limits.memory_mb is not None:
                (path / "memory.max").write_text(str(limits.memory_mb << 20))
                with contextlib.suppress(OSError):  # no swap accounting on this kernel
                    (path / "memory.swap.max").write_text("0")
            if limits.max_processes is not None:
                (path / "pids.max").write_text(str(limits.max_processes))
        except OSError:
            group.remove()
            raise
        return group

    def join(self) -> None:
        """Move the calling process here: run in the child, between fork and exec."""
        fd = os.open(self.path / "cgroup.procs", os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)

    def peak_mb(self) -> float | None:
        text = _read(self.path / "memory.peak").strip()
        return int(text) / (1 << 20) if text.isdigit() else None

    def oom_killed(self) -> bool:
        for line in _read(self.path / "memory.events").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value) > 0
        return False

    def remove(self) -> None:
        """Kill what is left in it (nothing, normally) and remove it."""
        kill = self.path / "cgroup.kill"  # Linux 5.14+
        with contextlib.suppress(OSError):
            if kill.exists():
                kill.write_text("1")
        with contextlib.suppress(OSError):
            self.path.rmdir()


def _cgroup2_mount(mountinfo: str) -> str | None:
    for line in _read(Path(mountinfo)).splitlines():
        before, _, after = line.partition(" - ")
        fields = before.split()
        if after.split()[:1] == ["cgroup2"] and len(fields) > 4:
            return fields[4]
    return None


def _own_cgroup(own: str) -> str | None:
    for line in _read(Path(own)).splitlines():
        if line.startswith("0::"):
            return line[3:].strip()
    return None


def _enable(group: Path) -> None:
    if not {"memory", "pids"} <= _words(group / "cgroup.subtree_control"):
        (group / "cgroup.subtree_control").write_text("+memory +pids")


def _words(path: Path) -> set[str]:
    return set(_read(path).split())


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
