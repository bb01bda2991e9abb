"""What a finished run used, and which of its limits ended it (one line saying so, if one did).

The figures come from what held the limits: the run's cgroup (v2 or v1),
else the resident-memory watchdog, and the kernel's peak of the run's
largest process as the sandbox's first process saw it.
"""

from __future__ import annotations

import math
import os

from ramp_fleet.sandbox import cgroups
from ramp_fleet.sandbox.spec import Isolation, Usage
from ramp_fleet.sandbox.view import SANDBOX_HOME, SANDBOX_SHM, SANDBOX_TMP
from ramp_fleet.sandbox.watchdog import INTERVAL, Watchdog

#: Below this many free bytes, a run's memory-backed folder counts as full.
FULL_MARGIN = 64 << 10
#: A failed run that had this share of its process cap (watched, without a cgroup) hit it.
NEAR_LIMIT = 0.9
#: What a run says when RLIMIT_NPROC refuses it a process or a thread (Python, C).
NO_MORE_TASKS = ("can't start new thread", "Resource temporarily unavailable", "BlockingIOError")


def limit_hit(isolation: Isolation, *, isolated: bool, stopped_by: str | None,
              returncode: int | None, cgroup: cgroups.RunCgroup | None,
              watchdog: Watchdog | None, sandbox_pid: int | None,
              submission_dir: str) -> str | None:
    """The one line that says which limit ended the run, if one did."""
    if stopped_by == "memory" or (cgroup is not None and cgroup.oom_killed()):
        return memory_message(isolation.memory_mb, cgroup, watchdog)
    if stopped_by is not None or returncode == 0:
        return None
    limit = isolation.max_processes
    if cgroup is not None and cgroup.hit_process_limit():
        return (f"the run reached its limit of {limit} processes and threads "
                f"(worker.isolation.max_processes, {cgroup.kind} pids)")
    uncounted = cgroup is None or "pids" not in cgroup.folders
    if limit is not None and isolated and uncounted:
        seen = watchdog.peak_tasks if watchdog is not None else 0
        if seen >= limit * NEAR_LIMIT or any(marker in _log_tail() for marker in NO_MORE_TASKS):
            return (f"the run reached its limit of {limit} processes and threads "
                    f"(worker.isolation.max_processes, RLIMIT_NPROC of the run's own uid): "
                    "it could start no more")
    full = full_folder(sandbox_pid, submission_dir)
    if full is not None:
        return (f"the run filled the {isolation.disk_mb} MB it may write in {full} "
                "(worker.isolation.disk_mb)")
    return None


def memory_message(limit: int | None, cgroup: cgroups.RunCgroup | None,
                   watchdog: Watchdog | None) -> str:
    if watchdog is not None and watchdog.over_mb is not None:
        how = (f"watchdog: the resident memory of the run's processes, sampled every "
               f"{INTERVAL * 1000:.0f} ms")
        # Rounded up: a sample of 400.3 MB over a 400 MB limit must not read "400 MB".
        reached = f"it had reached {math.ceil(watchdog.over_mb)} MB when it was stopped"
    else:
        kind = cgroup.kind if cgroup is not None else "cgroup"
        how = f"{kind}: the resident memory of the whole run"
        peak = cgroup.peak_mb() if cgroup is not None else None
        reached = ("the kernel stopped it at the limit" if peak is None
                   else f"it reached {peak:.0f} MB and the kernel stopped it")
    return (f"the run went over its memory limit of {limit} MB "
            f"(worker.isolation.memory_mb, {how}); {reached}")


def full_folder(sandbox_pid: int | None, submission_dir: str) -> str | None:
    """The run's memory-backed folder that is full, seen from outside, if one is."""
    if sandbox_pid is None:
        return None
    for inside in (submission_dir, SANDBOX_TMP, SANDBOX_HOME, SANDBOX_SHM):
        try:
            info = os.statvfs(f"/proc/{sandbox_pid}/root{inside}")
        except OSError:
            continue
        if info.f_bavail * info.f_frsize < FULL_MARGIN:
            return "its own folder" if inside == submission_dir else inside
    return None


def usage(isolation: Isolation, *, stopped_by: str | None, cgroup: cgroups.RunCgroup | None,
          watchdog: Watchdog | None, largest_kb: int | None) -> Usage:
    """The run's peak memory and how it was measured, and how its memory limit was held."""
    limit = isolation.memory_mb
    peak, peak_by = None, ""
    if cgroup is not None and "memory" in cgroup.folders:
        peak, peak_by = cgroup.peak_mb(), cgroup.kind
    if peak is None:  # what the watchdog saw, and the kernel's peak of the largest process
        sampled = watchdog.peak_mb if watchdog is not None else 0.0
        largest = largest_kb / 1024 if largest_kb is not None else 0.0
        if sampled or largest:
            peak = max(sampled, largest)
            peak_by = (f"sampled every {INTERVAL * 1000:.0f} ms" if sampled >= largest
                       else "its largest process")
    enforced_by = ""
    if limit is not None:
        enforced_by = "watchdog" if watchdog is not None and watchdog.limit_mb \
            else (cgroup.kind if cgroup is not None else "")
    oom = stopped_by == "memory" or (cgroup is not None and cgroup.oom_killed())
    return Usage(limit, enforced_by, peak, peak_by, oom)


def _log_tail(size: int = 64 << 10) -> str:
    """The end of the run's log (the runner's own output is the log)."""
    try:
        length = os.fstat(1).st_size
        return os.pread(1, size, max(0, length - size)).decode("utf-8", "replace")
    except OSError:
        return ""
