"""The resolved event config: what every command and the Pulumi program read."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from ramp_fleet.config.layout import EventDirs
from ramp_fleet.config.sections import (
    DispatcherSection,
    InfraSection,
    RampSection,
    StoreSection,
    WorkerSection,
)


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
    def handed_data_path(self) -> Path:
        """With ``isolation.labels: hidden``: what the trusted scorer hands the runs."""
        return self.event_dir / ".handed" / "train_test.pkl"

    @property
    def n_slots(self) -> int:
        """Worker slots: RAMP's rule, a negative ``n_workers`` counts from the CPUs."""
        n_workers = self.dispatcher.n_workers
        if n_workers < 0:
            return max(1, (os.cpu_count() or 1) + 1 + n_workers)
        return max(1, n_workers)

    def describe(self) -> dict[str, Any]:
        """The resolved config for `ramp-fleet validate`, secrets masked."""
        return {
            "config": str(self.path),
            "ramp": plain(self.ramp.model_dump(exclude_none=True)),
            "directories": {key: {"path": str(origin.path), "from": origin.source}
                            for key, origin in self.dirs.by_key().items()},
            "worker": plain(self.worker.model_dump(mode="json", exclude_none=True))
            | plain(dict(self.worker.model_extra or {})),
            "dispatcher": {**self.dispatcher.model_dump(), "slots": self.n_slots},
            "infra": plain(self.infra.model_dump(mode="json", exclude_none=True)),
            "store": {"path": str(self.store_path),
                      **plain(self.store.model_dump(exclude={"path"}, exclude_none=True))},
        }


def plain(value: Any) -> Any:
    """``value`` as plain data (paths as strings, secrets revealed, models as dicts): for
    worker code and ``validate``'s output, where secrets are masked beforehand."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, BaseModel):
        return {key: plain(getattr(value, key)) for key in type(value).model_fields}
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value
