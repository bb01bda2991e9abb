"""DaskWorker end to end on a real plaintext cluster (scheduler + 2 single-thread workers)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ramp_fleet.dask.local import LocalDaskCluster
from ramp_fleet.workers.dask import DaskWorker
from tests.dask.helpers import add_hanging_submission, processes_with, wait_until_gone, worker_config
from tests.dask.lifecycle import run_many

pytestmark = pytest.mark.timeout(180)


def test_several_submissions_through_the_lifecycle(
    plain_cluster: LocalDaskCluster, iris: Path, tmp_path: Path
) -> None:
    config = worker_config(plain_cluster, iris, tmp_path)
    outcomes = run_many(config, ["dummy", "logreg", "broken"], slots=2)

    for name in ("dummy", "logreg"):
        assert outcomes[name].status == "finished"
        assert (outcomes[name].returncode, outcomes[name].error_msg) == (0, "")
        assert (tmp_path / "predictions" / name / "fold_0" / "y_pred_test.npz").is_file()
        assert (tmp_path / "predictions" / name / "bagged_scores.csv").is_file()
        assert "Testing" in (tmp_path / "logs" / name / "log").read_text() or \
            (tmp_path / "logs" / name / "log").stat().st_size > 0
    broken = outcomes["broken"]
    assert broken.status == "finished" and broken.returncode == 1
    assert "broken on purpose" in broken.error_msg
    assert "broken on purpose" in (tmp_path / "logs" / "broken" / "log").read_text()
    assert not (tmp_path / "predictions" / "broken").exists()
    # nothing left behind: no temporary folders next to the outputs
    assert sorted(p.name for p in (tmp_path / "predictions").iterdir()) == ["dummy", "logreg"]


def test_timeout_kills_the_whole_tree_on_the_worker_host(
    plain_cluster: LocalDaskCluster, iris: Path, tmp_path: Path
) -> None:
    marker = add_hanging_submission(iris, "hangs_timeout")
    config = worker_config(plain_cluster, iris, tmp_path, timeout=6.0)
    outcome = run_many(config, ["hangs_timeout"], slots=1)["hangs_timeout"]

    assert outcome.status == "timeout"
    assert outcome.returncode == 124
    assert "timeout" in outcome.error_msg
    assert "timeout" in (tmp_path / "logs" / "hangs_timeout" / "log").read_text()
    assert not (tmp_path / "predictions" / "hangs_timeout").exists()
    assert wait_until_gone(marker, timeout=5) == []


def test_kill_submission_stops_the_run_on_the_worker_host(
    plain_cluster: LocalDaskCluster, iris: Path, tmp_path: Path
) -> None:
    marker = add_hanging_submission(iris, "hangs_killed")
    config = worker_config(plain_cluster, iris, tmp_path)
    shared = DaskWorker.open_shared(config, None)
    worker = DaskWorker(config, "hangs_killed")
    worker.shared = shared
    try:
        worker.setup()
        worker.launch_submission()
        _wait_for(lambda: processes_with(marker), "the hanging child to start")
        worker.kill_submission()
        assert worker.status == "killed"
        assert wait_until_gone(marker) == []
    finally:
        worker.teardown()
        DaskWorker.close_shared(shared)


def test_stop_event_returns_and_teardown_kills_the_run(
    plain_cluster: LocalDaskCluster, iris: Path, tmp_path: Path
) -> None:
    marker = add_hanging_submission(iris, "hangs_teardown")
    config = worker_config(plain_cluster, iris, tmp_path)
    worker = DaskWorker(config, "hangs_teardown")  # no shared client: opens its own
    stop = threading.Event()
    try:
        worker.setup()
        worker.launch_submission()
        _wait_for(lambda: processes_with(marker), "the hanging child to start")
        stop.set()
        assert worker.wait(0.5, stop) == "running"
    finally:
        worker.teardown()
    assert worker.status == "killed"
    assert wait_until_gone(marker) == []


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
