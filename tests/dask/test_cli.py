"""``ramp-fleet dask local``: a real cluster on loopback until Ctrl-C, then nothing left."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from ramp_fleet.dask.connection import DaskConnection, security_from_tls

pytestmark = pytest.mark.timeout(120)


def test_dask_local_prints_a_working_config_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("ramp: {problem_name: iris, event_name: e}\ndispatcher: {n_workers: 1}\n")
    argv = [sys.executable, "-m", "ramp_fleet", "dask", "local", str(config),
            "--workdir", str(tmp_path / "cluster")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        printed = _read_until_config(proc)
        worker = yaml.safe_load(printed)["worker"]
        assert worker["dask_scheduler"].startswith("tls://127.0.0.1:")
        assert Path(worker["dask_tls"]["key"]).stat().st_mode & 0o077 == 0
        parts = psutil.Process(proc.pid).children(recursive=True)
        assert len(parts) >= 3  # scheduler, worker nanny, worker

        connection = DaskConnection(worker["dask_scheduler"], security_from_tls(worker["dask_tls"]))
        try:
            workers = connection.client().scheduler_info(n_workers=-1)["workers"]
            assert [w["nthreads"] for w in workers.values()] == [1]
        finally:
            connection.close()

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _, alive = psutil.wait_procs(parts, timeout=10)
    assert alive == []


def _read_until_config(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.strip().startswith("key:"):
            return "".join(lines)
    raise AssertionError(f"no config printed: {''.join(lines)}")
