"""Find the worker class a config's ``worker_type`` names."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from ramp_fleet.config.checks import ENTRY_POINT_GROUP, custom_worker_problem
from ramp_fleet.config.sections import WORKER_SECTIONS
from ramp_fleet.errors import UsageError
from ramp_fleet.extras import require


def worker_class(worker_type: str) -> type:
    """``conda``/``aws``/``dask``, ``package.module:Class``, or an entry-point name.

    A built-in backend whose extra is not installed is a :class:`~ramp_fleet.extras.MissingExtra`
    (one line, exit status 2), raised before its module is imported.
    """
    section = WORKER_SECTIONS.get(worker_type)
    target = section.worker_class if section is not None else None
    if section is not None and section.extra is not None:
        require(section.extra, f"worker_type: {worker_type}")
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
