"""Fixtures for the elastic Dask cluster: moto EC2 + SSM on loopback, stand-in hosts.

Every test here runs with the EC2 and SSM calls going to the moto server and
every host booted as local Dask processes (:mod:`tests.dask_elastic.local_hosts`).
Afterwards no instance may be live, no stand-in process left, no thread of
a cluster running, and Dask's process-wide config must be as it was.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask.config
import psutil
import pytest

from ramp_fleet.config import EventConfig, load_event_config
from ramp_fleet.config.sections import ElasticDaskSection
from tests.conftest import EventFactory
from tests.dask_elastic.local_hosts import HOSTS_DIR_VARIABLE, SHIM_MODULE, local_hosts
from tests.fixtures.loopback import loopback_only
from tests.fixtures.moto_ec2 import (
    MotoServer,
    moto_server,
    register_image,
)
from tests.processes import processes_with, wait_until_gone

__all__ = ["loopback_only", "moto_server"]

EVENT = "iris_test"  # tests.conftest.make_event's event
BASE = f"ramp-{EVENT}"
PROCESS_POOLS = ("Dask-Offload", "Dask-Callback-Thread")
#: The newest image is the one booted (versions compare as numbers: 1.10.0 > 1.9.0).
IMAGES = (f"{BASE} 1.9.0", f"{BASE} 1.10.0", f"{BASE} 1.2.0")


@pytest.fixture(autouse=True)
def _loopback(loopback_only: list[object]) -> list[object]:
    return loopback_only


@pytest.fixture(autouse=True)
def _aws(aws: MotoServer) -> MotoServer:
    """moto for every test here (tests.fixtures.aws: no instance may be left live)."""
    return aws


@pytest.fixture(autouse=True)
def dask_config_unchanged() -> Iterator[None]:
    """Opening a cluster must not change Dask's process-wide config (TLS settings...)."""
    before = copy.deepcopy(dask.config.config)
    yield
    after = copy.deepcopy(dask.config.config)
    dask.config.config.clear()
    dask.config.config.update(before)
    assert after == before, "the process-wide dask config was changed"


@pytest.fixture(autouse=True)
def no_thread_left() -> Iterator[None]:
    """No cluster event loop, client or Adaptive thread outlives a test."""
    before = {thread.ident for thread in threading.enumerate()}
    yield
    deadline = time.monotonic() + 10
    while (left := _new_threads(before)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"threads left running: {left}"


def _new_threads(before: set[int | None]) -> list[str]:
    # Dask's offload and future-callback pools live as long as the process; not a cluster's.
    return [thread.name for thread in threading.enumerate()
            if thread.ident not in before and not thread.name.startswith(PROCESS_POOLS)]


@pytest.fixture
def ec2(aws: MotoServer) -> Any:
    return aws.client()


@pytest.fixture
def ssm(aws: MotoServer) -> Any:
    return aws.client("ssm")


@pytest.fixture
def event_aws(ec2: Any, aws: MotoServer) -> dict[str, str]:
    """What ``pulumi up`` creates for the event, and its AMI in three versions."""
    scheduler = ec2.create_security_group(GroupName=f"{BASE}-dask-scheduler",
                                          Description="Dask scheduler")["GroupId"]
    workers = ec2.create_security_group(GroupName=f"{BASE}-dask-workers",
                                        Description="Dask workers")["GroupId"]
    aws.client("iam").create_instance_profile(InstanceProfileName=f"{BASE}-dask-elastic")
    images = {name: register_image(ec2, name) for name in IMAGES}
    return {"scheduler_group": scheduler, "workers_group": workers,
            "newest_image": images[f"{BASE} 1.10.0"]}


@pytest.fixture
def stand_in_hosts(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Hosts boot as local processes; afterwards none may be left."""
    folder = tmp_path_factory.mktemp("hosts")
    monkeypatch.setenv(HOSTS_DIR_VARIABLE, str(folder))
    with local_hosts():
        yield folder
    left = wait_for_no_host_processes(folder)
    for process in left:
        process.kill()
    assert not left, f"stand-in host processes left: {[p.pid for p in left]}"


def host_processes(folder: Path) -> list[psutil.Process]:
    """The stand-in hosts (shims) started with ``folder`` as their hosts' folder."""
    return processes_with(SHIM_MODULE, str(folder))


def wait_for_no_host_processes(folder: Path, timeout: float = 30.0) -> list[psutil.Process]:
    return wait_until_gone(SHIM_MODULE, str(folder), timeout=timeout)


ElasticSettings = Callable[..., dict[str, Any]]


@pytest.fixture
def elastic_keys() -> ElasticSettings:
    """``elastic_keys(max_workers=3, ...)``: a ``dask_cluster`` section for the test setup."""

    def keys(**overrides: Any) -> dict[str, Any]:
        return {"provider": "ec2", "max_workers": 2, "min_workers": 0, "idle_timeout": 3,
                "region_name": "us-east-1", "instance_type": "t3.micro",
                "scheduler_instance_type": "t3.micro", "boot_timeout": 60, **overrides}

    return keys


@pytest.fixture
def elastic_worker_config(
    event_aws: dict[str, str], stand_in_hosts: Path, elastic_keys: ElasticSettings,
    make_event: EventFactory,
) -> dict[str, Any]:
    """The ``worker`` section of a Dask event served by an elastic cluster, ready to dispatch.

    The cluster's EC2 calls go to moto (its security groups, instance profile
    and AMI exist there) and its hosts boot as local processes in this test
    process (for ``ramp-fleet`` in a process of its own, run it as
    ``python -m tests.dask_elastic.with_local_hosts ...``). The kit and the
    data are this machine's: the stand-in hosts share its folders. Use it as
    ``make_event(submissions, worker=elastic_worker_config)``.
    """
    root = make_event().parent
    return {
        "worker_type": "dask",
        "kit_dir": str(root / "ramp-kits" / "iris"),
        "data_dir": str(root / "ramp-data" / "iris"),
        "timeout": 120,
        "dask_cluster": elastic_keys(max_workers=2, idle_timeout=5),
    }


@pytest.fixture
def elastic_event(
    event_aws: dict[str, str], stand_in_hosts: Path, elastic_keys: ElasticSettings,
    make_event: EventFactory,
) -> Callable[..., EventConfig]:
    """``elastic_event(max_workers=3)``: an event whose worker is an elastic cluster."""

    def build(submissions: tuple[str, ...] = (), **cluster: Any) -> EventConfig:
        worker = {"worker_type": "dask", "dask_cluster": elastic_keys(**cluster)}
        return load_event_config(make_event(submissions, worker=worker), runtime_files=False)

    return build


def settings_of(event: EventConfig) -> ElasticDaskSection:
    cluster = getattr(event.worker, "dask_cluster", None)
    assert isinstance(cluster, ElasticDaskSection)
    return cluster
