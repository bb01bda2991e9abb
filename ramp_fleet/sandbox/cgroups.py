"""A cgroup per run: its resident memory and its processes capped, its peak measured.

**cgroup v2** where this process may create one: as root on a host whose
v2 hierarchy has the memory and pids controllers (a cgroup ``ramp-fleet``
under its root), or in a subtree delegated to our user (a systemd
``Delegate=yes`` unit: the processes there move to a leaf so the
controllers can be enabled). ``memory.max`` (swap off), ``pids.max``;
``memory.peak``, ``memory.events``' ``oom_kill`` and ``pids.events``' ``max``
say afterwards what happened.

**cgroup v1** otherwise, where the memory and pids hierarchies are mounted
and writable (root, or a delegated folder): the run's cgroups go under this
process's own (so that whatever caps the dispatcher caps the runs too).
``memory.limit_in_bytes`` and ``memory.memsw.limit_in_bytes`` (no swap, where
the kernel accounts it), ``pids.max``; ``memory.max_usage_in_bytes``,
``memory.oom_control``'s ``oom_kill`` and ``pids.events``.

Neither: :func:`create` says why, and the runner falls back to its
resident-memory watchdog (:mod:`ramp_fleet.sandbox.watchdog`). Files a run
writes in its memory-backed folders are charged to its cgroup, as Docker
charges a container's tmpfs.

Standard library only (Python 3.10+): shipped to worker hosts with the runner.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

V2 = "cgroup v2"
V1 = "cgroup v1"
RUN_PREFIX = "ramp-fleet-run-"
DISPATCHER_LEAF = "ramp-fleet-dispatcher"
MOUNTINFO = "/proc/self/mountinfo"
OWN = "/proc/self/cgroup"


@dataclass(frozen=True)
class Wanted:
    """What a run's cgroup must cap (None: not capped), and whether it measures memory."""

    memory_mb: int | None = None
    max_processes: int | None = None
    measure: bool = False

    @property
    def controllers(self) -> list[str]:
        memory = self.memory_mb is not None or self.measure
        return [name for name, wanted in (("memory", memory),
                                          ("pids", self.max_processes is not None)) if wanted]

    def __bool__(self) -> bool:
        return bool(self.controllers)


class RunCgroup:
    """One run's cgroup (one folder in v2; one per controller in v1)."""

    kind = V2

    def __init__(self, folders: dict[str, Path]):
        #: Controller name → folder; in v2 every controller maps to the same one.
        self.folders = folders

    def procs(self) -> tuple[str, ...]:
        """The ``cgroup.procs`` files a process writes ``0`` into to join the run's cgroup."""
        return tuple(str(folder / "cgroup.procs") for folder in dict.fromkeys(self.folders.values()))

    def join(self) -> None:
        """Move the calling process in: run in the child, between fork and exec."""
        for path in self.procs():
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)

    def peak_mb(self) -> float | None:
        return None

    def measures_peak(self) -> bool:
        return "memory" in self.folders

    def oom_killed(self) -> bool:
        return False

    def hit_process_limit(self) -> bool:
        folder = self.folders.get("pids")
        return folder is not None and _field(folder / "pids.events", "max") > 0

    def pids(self) -> list[int]:
        found: set[int] = set()
        for folder in dict.fromkeys(self.folders.values()):
            found.update(int(word) for word in _read(folder / "cgroup.procs").split()
                         if word.isdigit())
        return sorted(found)

    def kill(self) -> None:
        """SIGKILL every process of the run, until none is left (a fork bomb included)."""
        deadline = time.monotonic() + 10
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def remove(self) -> None:
        """Kill what is left in it (nothing, normally) and remove it."""
        self.kill()
        for folder in dict.fromkeys(self.folders.values()):
            for _ in range(50):  # the last processes may take a moment to leave
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


class CgroupV2(RunCgroup):
    kind = V2

    @property
    def folder(self) -> Path:
        return next(iter(self.folders.values()))

    def peak_mb(self) -> float | None:
        text = _read(self.folder / "memory.peak").strip()
        return int(text) / (1 << 20) if text.isdigit() else None

    def measures_peak(self) -> bool:
        return (self.folder / "memory.peak").exists()  # Linux 5.19+

    def oom_killed(self) -> bool:
        return _field(self.folder / "memory.events", "oom_kill") > 0

    def kill(self) -> None:
        kill = self.folder / "cgroup.kill"  # Linux 5.14+: the kernel does it at once
        if kill.exists():
            with contextlib.suppress(OSError):
                kill.write_text("1")
        super().kill()


class CgroupV1(RunCgroup):
    kind = V1

    def peak_mb(self) -> float | None:
        folder = self.folders.get("memory")
        text = _read(folder / "memory.max_usage_in_bytes").strip() if folder else ""
        return int(text) / (1 << 20) if text.isdigit() else None

    def oom_killed(self) -> bool:
        folder = self.folders.get("memory")
        return folder is not None and _field(folder / "memory.oom_control", "oom_kill") > 0


@dataclass(frozen=True)
class Made:
    """A run's cgroup, or why there is none (then the runner falls back to its watchdog)."""

    cgroup: RunCgroup | None
    problem: str | None = None


def create(name: str, wanted: Wanted, mountinfo: str = MOUNTINFO, own: str = OWN) -> Made:
    """A cgroup for the run ``name`` with ``wanted`` caps: v2, else v1, else why neither."""
    made_v2 = _create_v2(name, wanted, mountinfo, own)
    if made_v2.cgroup is not None:
        return made_v2
    made_v1 = _create_v1(name, wanted, mountinfo, own)
    if made_v1.cgroup is not None:
        return made_v1
    return Made(None, f"{made_v2.problem}; {made_v1.problem}")


def available(mountinfo: str = MOUNTINFO, own: str = OWN) -> tuple[str | None, str]:
    """Which kind a run would get here (without creating anything), and the details."""
    mount = _v2_mount(mountinfo)
    if mount is not None and {"memory", "pids"} <= _words(Path(mount) / "cgroup.controllers"):
        parent = _v2_parent(Path(mount), own, prepare=False)
        if isinstance(parent, Path):
            return V2, f"{V2} under {parent}"
    folders = _v1_parents(mountinfo, own)
    if "memory" in folders and all(os.access(f, os.W_OK) for f in folders.values()):
        return V1, f"{V1} under {folders['memory']}"
    return None, "no usable cgroup v2 or v1 memory controller"


# -- v2 -------------------------------------------------------------------------------------------


def _create_v2(name: str, wanted: Wanted, mountinfo: str, own: str) -> Made:
    mount = _v2_mount(mountinfo)
    if mount is None:
        return Made(None, "no cgroup v2 hierarchy is mounted")
    top = Path(mount)
    enabled = _words(top / "cgroup.controllers")
    if not {"memory", "pids"} <= enabled:
        return Made(None, f"the cgroup v2 hierarchy at {mount} has no memory and pids "
                          f"controllers (only: {' '.join(sorted(enabled)) or 'none'})")
    parent = _v2_parent(top, own, prepare=True)
    if isinstance(parent, str):
        return Made(None, parent)
    _remove_stale([parent])
    folder = parent / f"{RUN_PREFIX}{name}"
    try:
        folder.mkdir()
    except OSError as exc:
        return Made(None, f"cannot create {folder} ({exc.strerror})")
    group = CgroupV2({"memory": folder, "pids": folder})
    try:
        if wanted.memory_mb is not None:
            (folder / "memory.max").write_text(str(wanted.memory_mb << 20))
            with contextlib.suppress(OSError):  # no swap accounting on this kernel
                (folder / "memory.swap.max").write_text("0")
        if wanted.max_processes is not None:
            (folder / "pids.max").write_text(str(wanted.max_processes))
    except OSError as exc:
        group.remove()
        return Made(None, f"cannot set the limits of {folder} ({exc.strerror})")
    return Made(group)


def _v2_parent(top: Path, own: str, prepare: bool) -> Path | str:
    """Where runs get their v2 cgroups, or why nowhere."""
    if os.geteuid() == 0:
        parent = top / "ramp-fleet"
        if not prepare:
            return parent if os.access(top, os.W_OK) else f"{top} is read-only"
        try:
            _enable(top)
            parent.mkdir(exist_ok=True)
            _enable(parent)
        except OSError as exc:
            return f"cannot create {parent} ({exc.strerror})"
        return parent
    path = _own_path(own, "")
    if path is None:
        return "this process is in no cgroup v2"
    here = top / path.lstrip("/")
    try:
        delegated = here.stat().st_uid == os.getuid() and os.access(here, os.W_OK)
    except OSError:
        delegated = False
    if not delegated:
        return (f"{here} is not delegated to this user (run the dispatcher in a systemd unit "
                "with Delegate=yes, or as root)")
    if not prepare:
        return here
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
        return f"cannot enable memory and pids in {here} ({exc.strerror})"
    return here


def _enable(group: Path) -> None:
    if not {"memory", "pids"} <= _words(group / "cgroup.subtree_control"):
        (group / "cgroup.subtree_control").write_text("+memory +pids")


def _v2_mount(mountinfo: str) -> str | None:
    for fields, fstype, _ in _mounts(mountinfo):
        if fstype == "cgroup2":
            return fields[4]
    return None


# -- v1 -------------------------------------------------------------------------------------------


def _create_v1(name: str, wanted: Wanted, mountinfo: str, own: str) -> Made:
    parents = _v1_parents(mountinfo, own)
    needed = wanted.controllers
    missing = [controller for controller in needed if controller not in parents]
    if missing or not needed:
        return Made(None, f"no cgroup v1 {' and '.join(missing or ['memory'])} hierarchy is mounted")
    _remove_stale([parents[c] for c in needed])
    folders: dict[str, Path] = {}
    group = CgroupV1(folders)
    try:
        for controller in needed:
            folder = parents[controller] / f"{RUN_PREFIX}{name}"
            folder.mkdir()
            folders[controller] = folder
        if wanted.memory_mb is not None:
            limit = str(wanted.memory_mb << 20)
            (folders["memory"] / "memory.limit_in_bytes").write_text(limit)
            with contextlib.suppress(OSError):  # swap is accounted only with swapaccount=1
                (folders["memory"] / "memory.memsw.limit_in_bytes").write_text(limit)
        if wanted.max_processes is not None:
            (folders["pids"] / "pids.max").write_text(str(wanted.max_processes))
    except OSError as exc:
        group.remove()
        return Made(None, f"cannot create the run's cgroup v1 ({exc.strerror}: {exc.filename})")
    return Made(group)


def _v1_parents(mountinfo: str, own: str) -> dict[str, Path]:
    """Controller → the folder of this process's own v1 cgroup, for memory and pids."""
    parents: dict[str, Path] = {}
    for fields, fstype, options in _mounts(mountinfo):
        if fstype != "cgroup":
            continue
        for controller in ("memory", "pids"):
            if controller in options.split(",") and controller not in parents:
                path = _own_path(own, controller)
                if path is not None:
                    parents[controller] = Path(fields[4]) / _under_mount(fields, path).lstrip("/")
    return parents


# -- shared -------------------------------------------------------------------------------------


def _remove_stale(parents: list[Path]) -> None:
    """Remove the run cgroups a killed runner left: those named after a process that is gone
    (``ramp-fleet-run-<pid>-...``) and empty (a busy one refuses: kept)."""
    for parent in parents:
        with contextlib.suppress(OSError):
            for child in parent.iterdir():
                owner = child.name.removeprefix(RUN_PREFIX).partition("-")[0]
                if (child.name.startswith(RUN_PREFIX) and owner.isdigit()
                        and not os.path.exists(f"/proc/{owner}")):
                    with contextlib.suppress(OSError):
                        child.rmdir()


def _mounts(mountinfo: str) -> list[tuple[list[str], str, str]]:
    """``(fields before " - ", fstype, super options)`` of each mount."""
    found = []
    for line in _read(Path(mountinfo)).splitlines():
        before, _, after = line.partition(" - ")
        fields, rest = before.split(), after.split()
        if len(fields) > 4 and len(rest) >= 3:
            found.append((fields, rest[0], rest[2]))
    return found


def _own_path(own: str, controller: str) -> str | None:
    """This process's cgroup path for a v1 ``controller`` (``""``: its v2 cgroup)."""
    for line in _read(Path(own)).splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if (controller in controllers.split(",")) if controller else (controllers == ""):
            return path.strip()
    return None


def _under_mount(fields: list[str], path: str) -> str:
    """``path`` (from /proc/self/cgroup) relative to what the mount shows (its root field)."""
    root = fields[3]
    if root != "/" and (path == root or path.startswith(root + "/")):
        return path[len(root):] or "/"
    return path


def _field(path: Path, key: str) -> int:
    for line in _read(path).splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def _words(path: Path) -> set[str]:
    return set(_read(path).split())


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
