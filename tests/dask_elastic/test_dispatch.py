"""A Dask event with ``dask_cluster: {provider: ec2}`` dispatched end to end: the dispatcher
opens the elastic cluster, its workers train real ramp-test runs, nothing is left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ramp_fleet.config import load_event_config
from ramp_fleet.dispatcher import Dispatcher
from ramp_fleet.progress import Reporter
from ramp_fleet.store import State, Store
from tests.conftest import EventFactory
from tests.dask_elastic.conftest import wait_for_no_host_processes
from tests.fixtures.moto_ec2 import live_instances

pytestmark = pytest.mark.timeout(300)


class Quiet(Reporter):
    def line(self, text: str) -> None:
        pass


def test_an_elastic_dask_event_is_dispatched_and_leaves_nothing(
    elastic_worker_config: dict[str, Any], make_event: EventFactory, ec2: Any,
    stand_in_hosts: Path,
) -> None:
    config = make_event(("logreg", "knn", "broken"), worker=elastic_worker_config,
                        dispatcher={"n_workers": 2, "time_between_collection": 0.5})
    event = load_event_config(config)
    Dispatcher(event, Quiet()).run()
    store = Store(event.store_path)
    assert {s.name: s.state for s in store.all()} == {
        "logreg": State.SCORED, "knn": State.SCORED, "broken": State.TRAINING_ERROR}
    assert {run.dask_worker is not None for run in store.runs()} == {True}
    assert not live_instances(ec2)
    assert wait_for_no_host_processes(stand_in_hosts) == []
