"""The elastic cluster against moto, its hosts real Dask processes on 127.0.0.1.

What is checked is what the EC2 API recorded (image, tags, groups, user-data,
instance states) and what the Dask processes do (TLS, tasks, workers coming
and going) — never an address moto made up.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from distributed import Client

from ramp_fleet.aws.instances import MARKER_TAG
from ramp_fleet.config import EventConfig
from ramp_fleet.dask.certs import write_tls_files
from ramp_fleet.dask.connection import open_client, security_from_tls
from ramp_fleet.dask.elastic import ElasticCluster, ElasticClusterError
from ramp_fleet.dask.elastic.plan import CLUSTER_TAG, ROLE_TAG
from ramp_fleet.errors import UsageError
from ramp_fleet.names import EVENT_TAG
from tests.dask_elastic import local_hosts
from tests.dask_elastic.conftest import BASE, EVENT, settings_of
from tests.fixtures.moto_ec2 import live_instances

pytestmark = pytest.mark.timeout(240)

ElasticEvent = Callable[..., EventConfig]


def square(number: int) -> int:
    return number * number


def slow_square(number: int, seconds: float = 2.0) -> int:
    time.sleep(seconds)
    return number * number


def unknown_task_duration(dask_scheduler: Any) -> float:
    return float(dask_scheduler.UNKNOWN_TASK_DURATION)


def scheduler_environment(address: str) -> dict[str, str]:
    """The environment of the local "host" process serving the scheduler at ``address``."""
    port = address.rsplit(":", 1)[1]
    for process in psutil.process_iter(["cmdline", "environ"]):
        cmdline = process.info["cmdline"] or []
        if "distributed.cli.dask_scheduler" in cmdline and port in cmdline:
            return dict(process.info["environ"] or {})
    raise AssertionError(f"no scheduler process on port {port}")


def tags_of(instance: dict[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in instance.get("Tags") or []}


def hosts(ec2: Any, cluster_id: str, role: str | None = None) -> list[dict[str, Any]]:
    return [item for item in live_instances(ec2)
            if tags_of(item).get(CLUSTER_TAG) == cluster_id
            and (role is None or tags_of(item).get(ROLE_TAG) == role)]


def user_data(ec2: Any, instance_id: str) -> str:
    reply = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    return base64.b64decode(reply["UserData"]["Value"]).decode()


def wait_for(condition: Callable[[], bool], timeout: float = 90.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


def test_the_cluster_boots_the_newest_event_ami_with_tls_and_tags(
    elastic_event: ElasticEvent, ec2: Any, ssm: Any, event_aws: dict[str, str]
) -> None:
    event = elastic_event(min_workers=1, max_workers=2)
    with ElasticCluster.open(settings_of(event), event) as cluster:
        assert cluster.address.startswith("tls://127.0.0.1:")
        with Client(cluster.address, security=cluster.security, set_as_default=False) as client:
            assert client.submit(square, 7).result(timeout=60) == 49
        scheduler, = hosts(ec2, cluster.cluster_id, "scheduler")
        worker, = hosts(ec2, cluster.cluster_id, "worker")
        assert {scheduler["ImageId"], worker["ImageId"]} == {event_aws["newest_image"]}
        assert cluster.image.chosen.name == f"{BASE} 1.10.0"
        for instance, role in ((scheduler, "scheduler"), (worker, "worker")):
            tags = tags_of(instance)
            assert tags[EVENT_TAG] == EVENT and tags[MARKER_TAG] == "dask-elastic"
            assert tags[ROLE_TAG] == role and tags[CLUSTER_TAG] == cluster.cluster_id
            assert instance["IamInstanceProfile"]["Arn"].endswith(f"/{BASE}-dask-elastic")
            group = event_aws["scheduler_group" if role == "scheduler" else "workers_group"]
            assert [g["GroupId"] for g in instance["NetworkInterfaces"][0]["Groups"]] == [group]
        key_parameter = f"/ramp-fleet/{EVENT}/dask-elastic/{cluster.cluster_id}/host-key"
        key = ssm.get_parameter(Name=key_parameter, WithDecryption=True)["Parameter"]
        assert key["Type"] == "SecureString" and "PRIVATE KEY" in key["Value"]
        boot = user_data(ec2, scheduler["InstanceId"])
        assert "/opt/conda/envs/iris/bin/python -m distributed.cli.dask_scheduler" in boot
        assert key_parameter in boot and "PRIVATE KEY" not in boot and "docker" not in boot
        assert "PRIVATE KEY" not in user_data(ec2, worker["InstanceId"])
        files = cluster.tls
        assert files.key.stat().st_mode & 0o077 == 0
    assert not live_instances(ec2)
    assert not ssm.get_parameters_by_path(Path=f"/ramp-fleet/{EVENT}", Recursive=True)["Parameters"]
    assert not files.key.exists()


def test_only_clients_with_the_clusters_certificate_get_in(
    elastic_event: ElasticEvent, tmp_path: Path
) -> None:
    event = elastic_event()
    with ElasticCluster.open(settings_of(event), event) as cluster:
        plaintext = cluster.address.replace("tls://", "tcp://")
        with pytest.raises(OSError):
            open_client(plaintext, None, timeout=3)
        other_ca = security_from_tls(write_tls_files(tmp_path / "other").as_config())
        with pytest.raises(OSError):
            open_client(cluster.address, other_ca, timeout=3)
        with Client(cluster.address, security=cluster.security, set_as_default=False) as client:
            assert client.scheduler_info()["address"].startswith("tls://")


def test_a_burst_grows_the_cluster_to_max_workers_then_it_shrinks_to_min_workers(
    elastic_event: ElasticEvent, ec2: Any
) -> None:
    event = elastic_event(min_workers=1, max_workers=3, idle_timeout=3)
    with ElasticCluster.open(settings_of(event), event) as cluster, \
            Client(cluster.address, security=cluster.security, set_as_default=False) as client:
        client.wait_for_workers(1, timeout=60)
        # Every waiting task asks for a worker before the scheduler has seen one end...
        env = scheduler_environment(cluster.address)
        assert env["DASK_DISTRIBUTED__SCHEDULER__UNKNOWN_TASK_DURATION"] == "1s"
        # ...and it never runs a client's code.
        with pytest.raises(ValueError, match="'run_function' handler has been explicitly"):
            client.run_on_scheduler(unknown_task_duration)
        futures = client.map(slow_square, range(6), seconds=3.0)
        most, names = 0, set()
        while not all(future.done() for future in futures):
            workers = client.scheduler_info(n_workers=-1)["workers"].values()
            most = max(most, len(workers))
            names |= {worker["name"] for worker in workers}
            time.sleep(0.25)
        assert client.gather(futures) == [n * n for n in range(6)]
        assert most == 3
        # Dask knows each worker by its name in the cluster's spec: Adaptive can retire it.
        assert names == {f"dask-{cluster.cluster_id}-worker-{n}" for n in range(3)}
        del futures
        assert wait_for(lambda: len(cluster.requested_workers()) == 1
                        and len(hosts(ec2, cluster.cluster_id, "worker")) == 1)
        assert len(client.scheduler_info(n_workers=-1)["workers"]) == 1
        assert len(hosts(ec2, cluster.cluster_id, "scheduler")) == 1


def test_a_cluster_that_cannot_launch_leaves_nothing(
    elastic_event: ElasticEvent, ec2: Any, ssm: Any, aws: Any
) -> None:
    event = elastic_event()
    aws.client("iam").delete_instance_profile(InstanceProfileName=f"{BASE}-dask-elastic")
    with pytest.raises(ElasticClusterError, match=r"[Ii]nstance profile"):
        ElasticCluster.open(settings_of(event), event)
    assert not live_instances(ec2)
    assert not ssm.get_parameters_by_path(Path=f"/ramp-fleet/{EVENT}", Recursive=True)["Parameters"]
    assert not (event.event_dir / ".dask-elastic").exists() or \
        not any((event.event_dir / ".dask-elastic").iterdir())


def test_a_scheduler_that_never_listens_fails_within_boot_timeout_and_leaves_nothing(
    elastic_event: ElasticEvent, ec2: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = elastic_event(boot_timeout=3)
    never_listens = ["sleep", "120"]
    monkeypatch.setattr(local_hosts.LocalScheduler, "local_argv", lambda self, boot: never_listens)
    with pytest.raises(ElasticClusterError, match=r"did not listen .* within 3 s"):
        ElasticCluster.open(settings_of(event), event)
    assert not live_instances(ec2)


def test_a_missing_security_group_is_named_before_anything_is_launched(
    elastic_event: ElasticEvent, ec2: Any
) -> None:
    event = elastic_event(security_group="no-such-group")
    with pytest.raises(UsageError, match=re.escape(
            "worker.dask_cluster.security_group: no security group named 'no-such-group'")):
        ElasticCluster.open(settings_of(event), event)
    reservations = ec2.describe_instances()["Reservations"]
    assert not reservations
