"""DaskWorker on a real plaintext cluster (scheduler + 2 single-thread workers): what the
worker contract suite does not cover (its own client, the shared connection, host settings)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ramp_fleet.dask.local import LocalDaskCluster
from ramp_fleet.workers.dask import DaskWorker
from tests.dask.helpers import add_hanging_submission, worker_config
from tests.lifecycle import run_one
from tests.processes import processes_with, wait_until_gone

pytestmark = pytest.mark.timeout(180)


def test_stop_returns_and_teardown_kills_the_run_without_a_shared_client(
    plain_cluster: LocalDaskCluster, iris: Path, tmp_path: Path
) -> None:
    marker = add_hanging_submission(iris, "hangs_teardown")
    config = worker_config(plain_cluster, iris, tmp_path)
    worker = DaskWorker(config, "hangs_teardown")  # no shared client: opens its own
    stop = threading.Event()

    def stop_once_it_runs(_worker: DaskWorker) -> None:
        _wait_for(lambda: processes_with(marker), "the hanging child to start")
        stop.set()

    outcome = run_one(worker, during_wait=stop_once_it_runs, stop=stop)
    assert outcome.status_after_wait == "running"  # stopped waiting, not finished
    assert worker.status == "killed"
    assert wait_until_gone(marker) == []
    assert worker.run_state is not None and worker.run_state.startswith("ramp-fleet-iris_dask-")


def _wait_for(condition, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_the_shared_connection_reopens_a_closed_client(plain_cluster: LocalDaskCluster) -> None:
    from ramp_fleet.dask.connection import DaskConnection

    connection = DaskConnection(plain_cluster.address, connect_timeout=10)
    try:
        first = connection.client()
        first.close()  # what distributed does when it gives up reconnecting
        second = connection.client()
        assert second is not first and second.status == "running"
        assert second.submit(sum, [1, 2], pure=False).result(timeout=30) == 3
    finally:
        connection.close()


def test_the_local_cluster_runs_with_the_quiet_host_settings(
    plain_cluster: LocalDaskCluster,
) -> None:
    from ramp_fleet.dask.connection import DaskConnection
    from ramp_fleet.dask.host_settings import SETTINGS

    def read_settings() -> list[object]:
        import dask.config

        return [dask.config.get(key) for key in SETTINGS]

    connection = DaskConnection(plain_cluster.address, connect_timeout=10)
    try:
        client = connection.client()
        expected = list(SETTINGS.values())
        assert client.run_on_scheduler(read_settings) == expected
        assert set(map(tuple, client.run(read_settings).values())) == {tuple(expected)}
    finally:
        connection.close()
