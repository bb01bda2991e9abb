"""A compromised Dask worker answers with a pickled object: the dispatcher never unpickles it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ramp_fleet.dask.local import LocalDaskCluster
from ramp_fleet.workers.dask import DaskWorker
from tests.dask.helpers import worker_config
from tests.lifecycle import run_one

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]


def test_a_pickled_reply_is_refused_and_never_unpickled(
    iris: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned"
    monkeypatch.setenv("RAMP_FLEET_TEST_PWNED", str(marker))
    monkeypatch.setenv("PYTHONPATH", f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    with LocalDaskCluster(0, workdir=tmp_path / "cluster") as cluster:
        cluster.start_worker("compromised", "--preload", "tests.dask.compromised_worker")
        cluster.wait_for_workers(1)
        config = worker_config(cluster, iris, tmp_path)
        shared = DaskWorker.open_shared(config, None)
        try:
            outcome = run_one(DaskWorker(config, "logreg"), shared)
        finally:
            DaskWorker.close_shared(shared)
    assert outcome.error is not None and outcome.error.startswith(
        "the Dask worker's reply is not plain data (refused")
    pids = marker.read_text().split() if marker.exists() else []
    assert str(os.getpid()) not in pids, "the dispatcher unpickled what the cluster sent"
    assert not (tmp_path / "predictions" / "logreg").exists()
