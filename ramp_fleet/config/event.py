"""The resolved event config: what every command and the Pulumi program read."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from ramp_fleet.config.layout import EventDirs
from ramp_fleet.config.sections import (
    DispatcherSection,
    InfraSection,
    RampSection,
    StoreSection,
    WorkerSection,
)


class WorkerConfig(dict[str, Any]):
    """The worker section as the mapping a RAMP-style worker reads (``self.config``),
    carrying its typed form (``section``) for the workers that want it."""

    def __init__(self, values: Mapping[str, Any], section: WorkerSection):
        super().__init__(values)
        self.section = section


@dataclass(frozen=True)
class EventConfig:
    """An event config, validated, with every path absolute."""

    path: Path
    #: The config file as the user named it, for messages.
    display: str
    ramp: RampSection
    worker: WorkerSection
    dispatcher: DispatcherSection
    infra: InfraSection
    store: StoreSection
    store_path: Path
    dirs: EventDirs
    warnings: tuple[str, ...] = ()

    @property
    def event_name(self) -> str:
        return self.ramp.event_name

    @property
    def event_dir(self) -> Path:
        return self.dirs.event

    @property
    def worker_type(self) -> str:
        return self.worker.worker_type

    @property
    def scratch_dir(self) -> Path:
        """Where local runs work on private copies of submissions."""
        return self.event_dir / ".scratch"

    @property
    def n_slots(self) -> int:
        """Worker slots: RAMP's rule, a negative ``n_workers`` counts from the CPUs."""
        n_workers = self.dispatcher.n_workers
        if n_workers < 0:
            return max(1, (os.cpu_count() or 1) + 1 + n_workers)
        return max(1, n_workers)

    def worker_mapping(self) -> WorkerConfig:
        """The worker section as the mapping a RAMP-style worker reads as ``self.config``.

        Paths are absolute strings and secrets are revealed: this mapping goes
        to worker code, never to a log.
        """
        mapping: dict[str, Any] = {}
        for key, value in self.worker.model_dump().items():
            mapping[key] = _plain(value)
        mapping.update((key, _plain(value)) for key, value in (self.worker.model_extra or {}).items())
        mapping["n_threads"] = self.dispatcher.n_threads
        mapping["time_between_collection"] = self.dispatcher.time_between_collection
        mapping["scratch_dir"] = str(self.scratch_dir)
        mapping["event_name"] = self.ramp.event_name
        mapping["problem_name"] = self.ramp.problem_name
        return WorkerConfig(mapping, self.worker)

    def describe(self) -> dict[str, Any]:
        """The resolved config for `ramp-fleet validate`, secrets masked."""
        return {
            "config": str(self.path),
            "ramp": _plain(self.ramp.model_dump(exclude_none=True)),
            "directories": {key: {"path": str(origin.path), "from": origin.source}
                            for key, origin in self.dirs.by_key().items()},
            "worker": _plain(self.worker.model_dump(mode="json", exclude_none=True))
            | _plain(dict(self.worker.model_extra or {})),
            "dispatcher": {**self.dispatcher.model_dump(), "slots": self.n_slots},
            "infra": _plain(self.infra.model_dump(mode="json", exclude_none=True)),
            "store": {"path": str(self.store_path),
                      **_plain(self.store.model_dump(exclude={"path"}, exclude_none=True))},
        }


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
