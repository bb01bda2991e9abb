"""``self.config`` as the RAMP guide's custom workers read it: ``self.config["logs_dir"]``.

Workers receive the typed event config (``self.event``, ``self.settings``);
a worker written from the guide reads keys instead. :class:`GuideConfig`
answers those reads from the typed config as they come — a read-only view,
never a copy that could drift from it. Paths are strings and secrets are
revealed: this goes to worker code, never to a log.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ramp_fleet.config import EventConfig
from ramp_fleet.config.event import plain

#: Keys a guide-style worker may read beyond the worker section's own.
EVENT_KEYS = ("n_threads", "time_between_collection", "scratch_dir", "event_name", "problem_name")


class GuideConfig(Mapping[str, Any]):
    """The worker section, and a few event-wide keys, by name (see the module docstring)."""

    def __init__(self, event: EventConfig):
        self._event = event

    def __getitem__(self, key: str) -> Any:
        event, worker = self._event, self._event.worker
        if key in type(worker).model_fields:
            return plain(getattr(worker, key))
        extra = worker.model_extra or {}
        if key in extra:
            return plain(extra[key])
        if key in ("n_threads", "time_between_collection"):
            return getattr(event.dispatcher, key)
        if key == "scratch_dir":
            return str(event.scratch_dir)
        if key in ("event_name", "problem_name"):
            return getattr(event.ramp, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        worker = self._event.worker
        yield from dict.fromkeys([*type(worker).model_fields, *(worker.model_extra or {}),
                                  *EVENT_KEYS])

    def __len__(self) -> int:
        return sum(1 for _ in self)
