"""Dask settings for the scheduler and worker processes of a RAMP cluster.

A RAMP task is one ``ramp-test`` subprocess that the Dask worker waits on
for minutes. Dask's defaults suit many short tasks instead: each worker's
statistical profiler samples its threads every 10 ms, every process checks
its event loop every 20 ms, and the nanny and the system monitor poll
several times a second. On an idle two-worker cluster that is about 15% of
a core, taken from the submissions that run beside it; with these settings
it is under 2% (``benchmarks/dask_local.py`` on two cores, A/B in one
sitting: overhead per submission +0.42 s → +0.12 s, makespan efficiency
0.85 → 0.95).

The scheduler of a real cluster (the Pulumi one, the elastic one) also
refuses the operations that run code a client sends, or change the cluster,
none of which the dispatcher uses (:data:`BLOCKED_HANDLERS`): a process
holding a certificate of the cluster — a worker host's, if one is taken —
cannot have the scheduler run its code (distributed no longer lets a
scheduler refuse pickles altogether). ``ramp-fleet dask local``, on
loopback, keeps them for those who debug with ``client.run``.

``ramp-fleet dask local`` and the Pulumi Dask cluster start their
processes with these settings; organisers who start workers by hand can
export :func:`environment` the same way.
"""

from __future__ import annotations

import json
import os

#: dask config key → value.
SETTINGS: dict[str, object] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
}


#: Scheduler operations that run a client's code or reshape the cluster (distributed's
#: ``distributed.scheduler.blocked-handlers``).
BLOCKED_HANDLERS = (
    "run_function", "feed", "broadcast", "proxy", "register_scheduler_plugin",
    "unregister_scheduler_plugin", "register_worker_plugin", "unregister_worker_plugin",
    "register_nanny_plugin", "unregister_nanny_plugin", "restart", "restart_workers",
    "rebalance", "replicate", "dump_cluster_state_to_url",
)
SCHEDULER_SETTINGS: dict[str, object] = {
    "distributed.scheduler.blocked-handlers": list(BLOCKED_HANDLERS),
}


def variable_name(key: str) -> str:
    """The ``DASK_*`` environment variable that sets the dask config ``key``."""
    return "DASK_" + key.upper().replace(".", "__").replace("-", "_")


def environment(role: str = "worker") -> dict[str, str]:
    """:data:`SETTINGS` (and for a real cluster's ``scheduler``, :data:`SCHEDULER_SETTINGS`)
    as environment variables, in the form dask reads them."""
    settings = {**SETTINGS, **(SCHEDULER_SETTINGS if role == "scheduler" else {})}
    return {variable_name(key): json.dumps(value) if isinstance(value, list) else str(value)
            for key, value in settings.items()}


def with_settings() -> dict[str, str]:
    """Our environment plus the settings it does not set itself."""
    env = dict(os.environ)
    for name, value in environment().items():
        env.setdefault(name, value)
    return env
