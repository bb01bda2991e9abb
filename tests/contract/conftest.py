"""Every backend behind one fixture, for the worker contract suite.

``conda`` runs on this machine; ``aws`` on moto EC2 with the loopback sshd
standing in for the instances; ``dask`` on a real local scheduler and
workers; ``guide`` is a custom worker written as the RAMP guide shows.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ramp_fleet.config import EventConfig, load_event_config
from ramp_fleet.dispatcher import Dispatcher
from ramp_fleet.progress import Reporter
from ramp_fleet.store import Store
from tests.conftest import EventFactory


class Quiet(Reporter):
    def line(self, text: str) -> None:
        pass


@dataclass
class Backend:
    name: str
    #: The worker section's keys (without timeout).
    worker: dict[str, Any]
    #: The class of this backend that asks for a retry mid-run (tests/contract/workers.py).
    retrying: str
    dispatcher: dict[str, Any] = field(default_factory=dict)

    @property
    def slots(self) -> set[str]:
        """The labels of an event's two slots: ``conda-1``..., ``GuideWorker-2``."""
        prefix = self.worker["worker_type"].rpartition(":")[2]
        return {f"{prefix}-1", f"{prefix}-2"}


@pytest.fixture(params=["conda", "aws", "dask", "guide"])
def backend(request: pytest.FixtureRequest) -> Backend:
    name = request.param
    if name == "conda":
        return Backend(name, {"worker_type": "conda"}, "RetryingConda")
    if name == "aws":
        request.getfixturevalue("aws")
        request.getfixturevalue("loopback_only")
        keys = dict(request.getfixturevalue("aws_worker_keys"))
        return Backend(name, keys, "RetryingAWS", {"time_between_collection": 0.2})
    if name == "dask":
        cluster = request.getfixturevalue("plain_cluster")
        keys = {"worker_type": "dask", **cluster.worker_config(), "dask_connect_timeout": 10}
        return Backend(name, keys, "RetryingDask", {"time_between_collection": 0.2})
    return Backend(name, {"worker_type": "tests.guide_worker:GuideWorker"}, "RetryingGuide")


@pytest.fixture
def contract_event(make_event: EventFactory, backend: Backend):  # type: ignore[no-untyped-def]
    """``build(submissions, timeout=..., retrying=False, worker={...}, **dispatcher)`` →
    the EventConfig (``worker``: keys added to the backend's)."""

    def build(submissions: tuple[str, ...] = (), *, timeout: float = 120,
              retrying: bool = False, worker: dict[str, Any] | None = None,
              **dispatcher: Any) -> EventConfig:
        worker = {**backend.worker, "timeout": timeout, **(worker or {})}
        if retrying:
            worker["worker_type"] = f"tests.contract.workers:{backend.retrying}"
        config = make_event(submissions, worker=worker,
                            dispatcher={**backend.dispatcher, **dispatcher})
        return load_event_config(config)

    return build


#: Sets variables in the environment where a backend's runs start; returns the worker
#: keys that do it (AWS: through ``remote_activate``), to pass to ``contract_event``.
RunEnvironment = Callable[[dict[str, str]], dict[str, Any]]


@pytest.fixture
def run_environment(backend: Backend, request: pytest.FixtureRequest,
                    monkeypatch: pytest.MonkeyPatch) -> Iterator[RunEnvironment]:
    """Variables for the processes that start runs: the dispatcher (conda, guide), the
    instance's shell (AWS), the Dask workers; ``PATH`` values are put in front of theirs."""
    undo: list[Callable[[], None]] = []

    def plant(variables: dict[str, str]) -> dict[str, Any]:
        if backend.name in ("conda", "guide"):
            for name, value in variables.items():
                monkeypatch.setenv(name, f"{value}:{os.environ['PATH']}" if name == "PATH" else value)
            return {}
        if backend.name == "aws":
            exports = "; ".join(f"export {name}={value}" + (":$PATH" if name == "PATH" else "")
                                for name, value in variables.items())
            return {"remote_activate": f"{backend.worker['remote_activate']}; {exports}"}
        undo.append(_plant_in_dask_workers(request.getfixturevalue("plain_cluster"), variables))
        return {}

    yield plant
    for step in undo:
        step()


def _plant_in_dask_workers(cluster: Any, variables: dict[str, str]) -> Callable[[], None]:
    from distributed import Client

    def apply(values: dict[str, str | None]) -> dict[str, str | None]:
        before = {name: os.environ.get(name) for name in values}
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            elif name == "PATH" and before[name]:
                os.environ[name] = f"{value}:{before[name]}"
            else:
                os.environ[name] = value
        return before

    with Client(cluster.address, set_as_default=False) as client:
        previous = client.run(apply, dict(variables))

    def put_back(before: dict[str, str | None]) -> None:  # nested: sent by value, not by name
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def restore() -> None:
        with Client(cluster.address, set_as_default=False) as client:
            for worker, before in previous.items():
                client.run(put_back, before, workers=[worker])

    return restore


def dispatch(event: EventConfig) -> Store:
    Dispatcher(event, Quiet()).run()
    return Store(event.store_path)


def submissions_dir(event: EventConfig) -> Path:
    return event.dirs.submissions.path
