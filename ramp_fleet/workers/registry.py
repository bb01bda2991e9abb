"""Find the worker class a config's ``worker_type`` names."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from ramp_fleet.config.checks import ENTRY_POINT_GROUP, custom_worker_problem
from ramp_fleet.errors import UsageError

BUILTIN = {
    "conda": "ramp_fleet.workers.conda:CondaEnvWorker",
    "aws": "ramp_fleet.workers.aws:AWSWorker",
    "dask": "ramp_fleet.workers.dask:DaskWorker",
}


def worker_class(worker_type: str) -> type:
    """``conda``/``aws``/``dask``, ``package.module:Class``, or an entry-point name."""
    target = BUILTIN.get(worker_type)
    if target is None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == worker_type:
                loaded: type = ep.load()
                return loaded
        problem = custom_worker_problem(worker_type)
        if problem:
            raise UsageError(f"worker_type {worker_type!r}: {problem}")
        target = worker_type
    module_name, _, class_name = target.partition(":")
    cls: type = getattr(importlib.import_module(module_name), class_name)
    return cls
