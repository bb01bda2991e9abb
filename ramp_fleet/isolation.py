"""Isolation as the dispatcher sees it: the settings runs carry, the check at start,
and what ``validate`` says. The sandbox itself is :mod:`ramp_fleet.sandbox`.

Where runs start on this machine (conda, custom workers), bubblewrap is
tried here when the dispatcher starts: ``auto`` without it is one warning
line, ``required`` without it refuses to start (exit status 2). AWS and
Dask runs are checked where they run, at each run.
"""

from __future__ import annotations

from typing import Any

from ramp_fleet.config import EventConfig
from ramp_fleet.config.sections import IsolationSection
from ramp_fleet.errors import UsageError
from ramp_fleet.sandbox import cgroups
from ramp_fleet.sandbox.probe import check
from ramp_fleet.sandbox.watchdog import INTERVAL

#: What a run that is not isolated can do, for the warnings.
EXPOSED = ("a submission can read whatever the dispatcher's user can (its home and credentials, "
           "the event and deployment configs, other submissions), write wherever it can, "
           "and reach the network")


def start_check(event: EventConfig, here: bool) -> str | None:
    """The one warning line a dispatcher starts with, if any.

    Raises :class:`UsageError` (exit status 2) for ``mode: required`` when the
    runs start here and bubblewrap does not work here.
    """
    mode = event.worker.isolation.mode
    if mode == "off":
        return f"worker.isolation.mode is off: submissions run NOT isolated: {EXPOSED}"
    if not here:
        return None
    result = check()
    if result.works:
        return None
    if mode == "required":
        raise UsageError(f"{event.display}: {result.refusal()}")
    return f"submissions run NOT isolated ({result.describe()}): {EXPOSED}; {result.advice}"


def isolated_line(event: EventConfig, here: bool) -> str | None:
    """The line a dispatcher starts with when its runs will be isolated here."""
    if event.worker.isolation.mode == "off" or not here:
        return None
    result = check()
    if not result.works:
        return None
    limits = _limits_here(event.worker.isolation, isolated=True)
    return (f"runs are isolated ({result.describe()}); memory: {limits['memory']}; "
            f"processes: {limits['processes']}; disk: {limits['disk']}")


def describe(event: EventConfig, here: bool) -> dict[str, Any]:
    """The isolation block of ``validate``'s output: which mode applies, and how
    (``here``: the event's runs start on this machine)."""
    section = event.worker.isolation
    local = here
    result = check()
    if section.mode == "off":
        applies = "NOT isolated (mode off)"
    elif not local:
        applies = ("checked on each instance or Dask host when a run starts "
                   f"({'refused' if section.mode == 'required' else 'NOT isolated'} where "
                   "bubblewrap does not work there)")
    elif result.works:
        applies = "isolated"
    else:
        applies = "refused: dispatch exits" if section.mode == "required" else "NOT isolated"
    info: dict[str, Any] = {"mode": section.mode, "applies": applies,
                            "bubblewrap": result.describe(),
                            "network": "allowed" if section.network else "none",
                            "labels": ("hidden (runs get the training data, the test features "
                                       "and the folds, never the data folder)"
                                       if section.hides_labels else
                                       "visible (ramp-test reads the data folder, test labels "
                                       "included)")}
    if local:
        info.update(_limits_here(section, isolated=applies == "isolated"))
    else:
        info["limits"] = ("on the machine of each run: a cgroup (v2, else v1) where possible, "
                          "else a resident-memory watchdog")
    return info


def _limits_here(section: IsolationSection, isolated: bool) -> dict[str, str]:
    """How memory_mb, max_processes and disk_mb are held on this machine (see the runner)."""
    kind, detail = cgroups.available()
    if section.memory_mb is None:
        memory = "not limited"
    elif kind is not None:
        memory = f"{section.memory_mb} MB of resident memory per run ({detail})"
    else:
        memory = (f"{section.memory_mb} MB of resident memory per run (watchdog over the run's "
                  f"processes, sampled every {INTERVAL * 1000:.0f} ms: {detail})")
    if not isolated:
        processes = "not capped: runs are not isolated"
        disk = "not capped: runs are not isolated"
    else:
        processes = (f"{section.max_processes} per run (pids.max, {kind})" if kind is not None
                     else f"{section.max_processes} per run (RLIMIT_NPROC of the run's own uid)")
        disk = f"{section.disk_mb} MB in its own folder and in its /tmp, each (memory-backed)"
    return {"memory": memory, "processes": processes, "disk": disk}
