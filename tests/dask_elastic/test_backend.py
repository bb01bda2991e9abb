"""DaskWorker on the elastic cluster: what ``open_shared`` returns for ``dask_cluster``, real ramp-test."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ramp_fleet.config import load_event_config
from ramp_fleet.dask.connection import DaskConnection
from ramp_fleet.dask.elastic import ElasticConnection
from ramp_fleet.workers.dask import DaskWorker
from tests.conftest import EventFactory
from tests.dask_elastic.conftest import wait_for_no_host_processes
from tests.fixtures.moto_ec2 import live_instances
from tests.lifecycle import run_one

pytestmark = pytest.mark.timeout(240)


def test_submissions_train_on_workers_the_cluster_starts_for_them(
    elastic_worker_config: dict[str, Any], make_event: EventFactory, ec2: Any,
    stand_in_hosts: Path,
) -> None:
    event = load_event_config(make_event(("logreg", "broken"), worker=elastic_worker_config))
    shared = DaskWorker.open_shared(event)
    try:
        assert isinstance(shared, DaskConnection) and isinstance(shared, ElasticConnection)
        assert not shared.client().scheduler_info(n_workers=-1)["workers"]  # min_workers: 0
        with ThreadPoolExecutor(2) as pool:
            logreg, broken = pool.map(lambda name: run_one(DaskWorker(event, name), shared),
                                      ["logreg", "broken"])
    finally:
        DaskWorker.close_shared(shared)
    assert logreg.result is not None and logreg.result.returncode == 0
    assert broken.result is not None and broken.result.returncode == 1
    assert "broken on purpose" in broken.result.error
    predictions = event.dirs.by_key()["predictions_dir"].path
    assert (predictions / "logreg" / "bagged_scores.csv").is_file()
    assert not live_instances(ec2)
    assert wait_for_no_host_processes(stand_in_hosts) == []
