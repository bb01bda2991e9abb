"""``ramp-fleet dask ec2``: the event's elastic cluster by hand, until Ctrl-C, then nothing left."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ramp_fleet.config import EventConfig
from ramp_fleet.dask.connection import DaskConnection, security_from_tls
from tests.dask.test_cli import _read_until_config
from tests.dask_elastic.conftest import wait_for_no_host_processes
from tests.dask_elastic.local_hosts import REPO
from tests.dask_elastic.test_cluster import square
from tests.fixtures.moto_ec2 import live_instances

pytestmark = pytest.mark.timeout(180)


def ramp_fleet(*args: str) -> list[str]:
    """``ramp-fleet ARGS`` in a process of its own, its hosts booted as local processes."""
    return [sys.executable, "-m", "tests.dask_elastic.with_local_hosts", *args]


def test_dask_ec2_prints_a_working_config_and_terminates_everything_on_ctrl_c(
    elastic_event: Callable[..., EventConfig], ec2: Any, stand_in_hosts: Path
) -> None:
    event = elastic_event(max_workers=3)
    proc = subprocess.Popen(ramp_fleet("dask", "ec2", str(event.path), "--workers", "2"), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        printed = _read_until_config(proc)
        assert "2 worker(s), image ami-" in printed
        worker = yaml.safe_load(printed)["worker"]
        assert worker["dask_scheduler"].startswith("tls://127.0.0.1:")
        assert Path(worker["dask_tls"]["key"]).stat().st_mode & 0o077 == 0
        connection = DaskConnection(worker["dask_scheduler"], security_from_tls(worker["dask_tls"]))
        try:
            client = connection.client()
            client.wait_for_workers(2, timeout=60)
            assert client.submit(square, 12).result(timeout=60) == 144
        finally:
            connection.close()
        assert len(live_instances(ec2)) == 3

        # The cluster has an owner: `ramp-fleet reap` only lists its hosts.
        reap = subprocess.run(ramp_fleet("reap", str(event.path)), cwd=REPO, capture_output=True,
                              text=True, timeout=60)
        assert reap.returncode == 0 and "listing only" in reap.stderr
        assert reap.stdout.count("would terminate") == 3
        assert len(live_instances(ec2)) == 3

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not live_instances(ec2)
    assert not Path(worker["dask_tls"]["key"]).exists()
    assert wait_for_no_host_processes(stand_in_hosts) == []


def test_dask_ec2_refuses_an_event_without_an_elastic_cluster(make_event: Any) -> None:
    config = make_event(worker={"worker_type": "dask", "dask_scheduler": "tcp://127.0.0.1:8786"})
    done = subprocess.run([sys.executable, "-m", "ramp_fleet", "dask", "ec2", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "worker.dask_cluster: is not set" in done.stderr and "Traceback" not in done.stderr
