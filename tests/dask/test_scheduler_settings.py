"""The scheduler of a real cluster refuses the operations that run a client's code."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from ramp_fleet.dask import host_settings
from ramp_fleet.dask.local import dask_executable
from ramp_fleet.process import kill_tree


def whoami() -> int:
    return os.getpid()


def test_a_cluster_scheduler_refuses_to_run_a_clients_code(tmp_path: Path) -> None:
    from distributed import Client

    info = tmp_path / "scheduler.json"
    env = {**os.environ, **host_settings.environment("scheduler")}
    scheduler = subprocess.Popen([dask_executable(), "scheduler", "--host", "127.0.0.1",
                                  "--port", "0", "--no-dashboard", "--scheduler-file", str(info)],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        with Client(address, set_as_default=False, timeout=30) as client:
            assert client.scheduler_info()["address"] == address, "an ordinary client works"
            with pytest.raises(ValueError, match="'run_function' handler has been explicitly "
                                                 "disallowed"):
                client.run_on_scheduler(whoami)
    finally:
        kill_tree(scheduler.pid)
        scheduler.wait()


def test_the_settings_reach_a_systemd_unit_intact() -> None:
    from ramp_fleet.templating import systemd_quote

    [(name, value)] = [item for item in host_settings.environment("scheduler").items()
                       if "BLOCKED" in item[0]]
    assert systemd_quote(f"{name}={value}") == '"' + f"{name}={value}".replace('"', '\\"') + '"'
    assert json.loads(value) == list(host_settings.BLOCKED_HANDLERS)
