"""An owner killed with SIGKILL leaves its cluster running; the next owner, or `reap`, ends it."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ramp_fleet.config import EventConfig
from ramp_fleet.dask.elastic import ElasticCluster
from tests.dask_elastic.conftest import EVENT, host_processes, settings_of, wait_for_no_host_processes
from tests.dask_elastic.local_hosts import REPO
from tests.dask_elastic.test_cluster import hosts
from tests.fixtures.moto_ec2 import live_instances

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def killed_owner(elastic_event: Callable[..., EventConfig], stand_in_hosts: Path,
                 ec2: Any) -> Iterator[tuple[EventConfig, str]]:
    """An event whose cluster (scheduler + one worker) outlived its owner's SIGKILL."""
    event = elastic_event(min_workers=1, max_workers=2)
    owner = subprocess.Popen([sys.executable, "-m", "tests.dask_elastic.owner", str(event.path)],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline()
        assert line.startswith("READY "), f"the owner did not start: {line!r}"
        cluster_id = line.split()[1]
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert len(hosts(ec2, cluster_id)) == 2  # what a dead dispatcher leaves on EC2
    assert len(host_processes(stand_in_hosts)) == 2
    yield event, cluster_id


def test_the_next_owner_reaps_what_a_killed_one_left(
    killed_owner: tuple[EventConfig, str], ec2: Any, ssm: Any, stand_in_hosts: Path
) -> None:
    event, dead = killed_owner
    with ElasticCluster.open(settings_of(event), event) as cluster:
        assert not hosts(ec2, dead)
        assert [item["InstanceId"] for item in live_instances(ec2)] == \
            [item["InstanceId"] for item in hosts(ec2, cluster.cluster_id)]
        names = [p["Name"] for p in ssm.get_parameters_by_path(
            Path=f"/ramp-fleet/{EVENT}/dask-elastic", Recursive=True)["Parameters"]]
        assert names == [f"/ramp-fleet/{EVENT}/dask-elastic/{cluster.cluster_id}/host-key"]
    assert not live_instances(ec2)
    assert wait_for_no_host_processes(stand_in_hosts) == []


def test_ramp_fleet_reap_ends_a_killed_owners_cluster(
    killed_owner: tuple[EventConfig, str], ec2: Any, ssm: Any, stand_in_hosts: Path
) -> None:
    event, dead = killed_owner
    done = subprocess.run([sys.executable, "-m", "ramp_fleet", "reap", str(event.path)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("terminated i-") == 2
    assert f"cluster {dead}" in done.stdout
    assert not live_instances(ec2)
    assert not ssm.get_parameters_by_path(Path=f"/ramp-fleet/{EVENT}", Recursive=True)["Parameters"]
    assert wait_for_no_host_processes(stand_in_hosts) == []
