"""The resident memory of a run's process tree, sampled, for hosts without a usable cgroup.

Every :data:`INTERVAL` seconds the watchdog sums the memory of every
process under the run's first one (its descendants through
``/proc/<pid>/task/<tid>/children``: a process that leaves its session is
still found, and in a sandbox orphans are re-parented to its init, which is
under the run too). Each process counts its proportional set size (shared
pages split between the processes sharing them, so forked workers are not
counted twice) where ``smaps_rollup`` is readable, else its resident size.
Over the limit, the watchdog calls ``on_over`` once (the runner kills the
tree). The peak it saw is the run's peak, to within one interval; past half
the limit it samples five times as often, so a fast allocation is caught
soon after it crosses. It also keeps the most processes and threads the run
had at once (where no cgroup counts them, that is how a run that reached
``max_processes`` is told from one that failed on its own).

Standard library only (Python 3.10+): shipped to worker hosts with the runner.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

#: Seconds between two samples.
INTERVAL = 0.1
PAGE = os.sysconf("SC_PAGE_SIZE")


class Watchdog:
    """Samples the memory of ``root_pid``'s tree until stopped; see the module docstring."""

    def __init__(self, root_pid: int, limit_mb: int | None,
                 on_over: Callable[[float], None], interval: float = INTERVAL,
                 count_root: bool = True):
        self.root_pid = root_pid
        #: False: ``root_pid`` is not the run's (the guard that started bwrap), only its tree.
        self.count_root = count_root
        self.limit_mb = limit_mb
        self.peak_mb = 0.0
        #: The most processes and threads the run had at once.
        self.peak_tasks = 0
        #: The sample that went over the limit, if one did.
        self.over_mb: float | None = None
        self._on_over = on_over
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling (idempotent)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = tree(self.root_pid)[0 if self.count_root else 1:]
            used = sum(process_memory(pid) for pid in pids) / (1 << 20)
            self.peak_mb = max(self.peak_mb, used)
            self.peak_tasks = max(self.peak_tasks, sum(tasks(pid) for pid in pids))
            near = self.limit_mb is not None and used > self.limit_mb / 2
            if self.limit_mb is not None and used > self.limit_mb and self.over_mb is None:
                self.over_mb = used
                self._on_over(used)
            self._stop.wait(self._interval / 5 if near else self._interval)


def tasks(pid: int) -> int:
    """Threads of ``pid`` (0 when it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def tree(root: int) -> list[int]:
    """``root`` and its live descendants (empty when it is gone)."""
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children(pid))
    return found


def children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as listing:
                kids.extend(int(word) for word in listing.read().split())
        except (OSError, ValueError):
            continue
    return kids


def process_memory(pid: int) -> int:
    """Bytes: the proportional set size, else the resident size; 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
            for line in rollup:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0
