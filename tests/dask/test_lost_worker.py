"""A Dask worker killed mid-run: the submission comes back as ``retry``, nothing is left running."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import pytest

from ramp_fleet.dask.local import LocalDaskCluster
from tests.dask.helpers import add_hanging_submission, worker_config
from tests.lifecycle import run_one
from tests.processes import processes_with, wait_until_gone

pytestmark = pytest.mark.timeout(180)


def test_worker_killed_mid_run_means_retry(iris: Path, tmp_path: Path) -> None:
    marker = add_hanging_submission(iris, "hangs_lost")
    with LocalDaskCluster(2, workdir=tmp_path / "cluster") as cluster:
        config = worker_config(cluster, iris, tmp_path)
        from ramp_fleet.workers.dask import DaskWorker

        shared = DaskWorker.open_shared(config)
        try:
            killer = _kill_worker_running(marker)
            outcome = run_one(DaskWorker(config, "hangs_lost"), shared)
            killed_pid = killer()
        finally:
            DaskWorker.close_shared(shared)
        assert killed_pid is not None
        assert outcome.retry is not None and "lost" in outcome.retry
        assert wait_until_gone(marker) == []
        assert not (tmp_path / "predictions" / "hangs_lost").exists()


def _kill_worker_running(marker: str):  # type: ignore[no-untyped-def]
    """Start a thread that SIGKILLs the Dask worker process running ``marker``."""
    import threading

    killed: list[int] = []

    def kill() -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            for proc in processes_with(marker):
                runner = _ancestor_running(proc, "ramp_fleet.sandbox.runner")
                if runner is not None:
                    worker = runner.parent()
                    assert worker is not None
                    worker.send_signal(signal.SIGKILL)
                    killed.append(worker.pid)
                    return
            time.sleep(0.2)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()

    def result() -> int | None:
        thread.join(timeout=1)
        return killed[0] if killed else None

    return result


def _ancestor_running(proc: psutil.Process, needle: str) -> psutil.Process | None:
    try:
        for parent in proc.parents():
            if any(needle in part for part in parent.cmdline()):
                return parent
    except psutil.Error:
        return None
    return None
