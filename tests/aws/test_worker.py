"""The AWS worker's lifecycle against moto EC2 and a real sshd running ramp-test."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from ramp_fleet.aws import instances
from ramp_fleet.aws.instances import InstanceError
from ramp_fleet.workers.aws import AWSWorker
from tests.aws.runs import instance_of, run, state_of
from tests.fixtures.aws import AWSEventFactory
from tests.fixtures.instance_hosts import InstanceHosts
from tests.fixtures.moto_ec2 import live_instances
from tests.fixtures.sshd import free_port


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def tags_of(ec2: Any, instance_id: str) -> dict[str, str]:
    reply = ec2.describe_instances(InstanceIds=[instance_id])
    instance = reply["Reservations"][0]["Instances"][0]
    return {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}


def test_one_submission_end_to_end(aws_event: AWSEventFactory, ec2: Any, image_id: str) -> None:
    event = aws_event(("logreg",))
    outcome = run(event, "logreg")
    assert outcome.result is not None and (outcome.result.returncode, outcome.result.error) == (0, "")
    assert outcome.worker.status == "killed"
    assert outcome.worker.place.market == "on-demand"
    assert outcome.worker.place.instance_type == "t3.micro"
    instance_id = instance_of(outcome)
    assert state_of(ec2, instance_id) == "terminated"
    reply = ec2.describe_instances(InstanceIds=[instance_id])
    instance = reply["Reservations"][0]["Instances"][0]
    assert instance["ImageId"] == image_id
    tags = tags_of(ec2, instance_id)
    assert tags[instances.EVENT_TAG] == "iris_test"
    assert tags[instances.SUBMISSION_TAG] == "logreg"
    assert tags[instances.MARKER_TAG] == "worker"
    assert tags[instances.SLOT_TAG] == "0"
    assert not live_instances(ec2)


# -- several submissions, failures of the submission ---------------------------------


def test_several_submissions_in_parallel_each_on_its_own_instance(
    aws_event: AWSEventFactory, ec2: Any
) -> None:
    event = aws_event(("logreg", "knn", "broken"))
    fleet = AWSWorker.open_shared(event)
    try:
        with ThreadPoolExecutor(3) as pool:
            outcomes = dict(zip(["logreg", "knn", "broken"], pool.map(
                lambda name: run(event, name, shared=fleet), ["logreg", "knn", "broken"]),
                strict=True))
    finally:
        AWSWorker.close_shared(fleet)
    results = {name: outcome.result for name, outcome in outcomes.items()}
    assert [(r.returncode if r else None) for r in results.values()] == [0, 0, 1]
    broken = results["broken"]
    assert broken is not None and broken.error.startswith("Traceback")
    assert broken.error.endswith("ValueError: BrokenClassifier.fit: this submission is broken on purpose")
    assert not (event.event_dir / "predictions" / "broken").exists()
    ids = {instance_of(outcome) for outcome in outcomes.values()}
    assert len(ids) == 3
    assert fleet.stats.instances_launched == 3
    assert fleet.stats.ssh_connections == 3  # one persistent connection per instance
    assert all(state_of(ec2, i) == "terminated" for i in ids if i)
    slots = sorted(tags_of(ec2, i)[instances.SLOT_TAG] for i in ids if i)
    assert slots == ["0", "1", "2"]


def test_the_runner_measures_the_peak_on_the_instance(aws_event: AWSEventFactory) -> None:
    event = aws_event(("logreg",))
    outcome = run(event, "logreg")
    assert outcome.result is not None and outcome.result.returncode == 0
    assert outcome.result.peak_memory_mb is not None
    assert 20 < outcome.result.peak_memory_mb < 4000


# -- infrastructure failures -----------------------------------------------------------


def test_instances_answer_metadata_only_to_imdsv2_one_hop_away(
    aws_event: AWSEventFactory, ec2: Any
) -> None:
    """The instance's user-data holds its SSH host key: no IMDSv1, and no second hop (a
    container, a sandbox with the network) may read it."""
    outcome = run(aws_event(("logreg",)), "logreg")
    assert outcome.result is not None and outcome.result.returncode == 0
    reply = ec2.describe_instances(InstanceIds=[instance_of(outcome)])
    options = reply["Reservations"][0]["Instances"][0]["MetadataOptions"]
    assert (options["HttpTokens"], options["HttpPutResponseHopLimit"]) == ("required", 1)


def test_spot_instances_are_requested_when_asked(aws_event: AWSEventFactory, ec2: Any) -> None:
    event = aws_event(("logreg",), use_spot_instance=True)
    outcome = run(event, "logreg")
    assert outcome.result is not None and outcome.result.returncode == 0
    assert outcome.worker.place.market == "spot"
    reply = ec2.describe_instances(InstanceIds=[instance_of(outcome)])
    assert reply["Reservations"][0]["Instances"][0].get("InstanceLifecycle") == "spot"


def refuse_run_instances(ec2: Any, code: str, only_spot: bool) -> list[str]:
    """Make EC2 answer RunInstances with ``code`` (as AWS does when capacity is short)."""
    seen: list[str] = []

    def handler(params: dict[str, Any], **_: Any) -> Any:
        body = params.get("body") or {}
        spot = "InstanceMarketOptions.MarketType" in body
        seen.append("spot" if spot else "on-demand")
        if spot or not only_spot:
            error = {"Error": {"Code": code, "Message": f"{code} (test)"},
                     "ResponseMetadata": {"HTTPStatusCode": 500}}
            return SimpleNamespace(status_code=500, headers={}), error
        return None

    ec2.meta.events.register("before-call.ec2.RunInstances", handler)
    return seen


def test_no_spot_capacity_falls_back_to_on_demand(aws_event: AWSEventFactory, ec2: Any) -> None:
    event = aws_event(("logreg",), use_spot_instance=True)
    fleet = AWSWorker.open_shared(event)
    seen = refuse_run_instances(fleet.ec2, "InsufficientInstanceCapacity", only_spot=True)
    try:
        outcome = run(event, "logreg", shared=fleet)
    finally:
        AWSWorker.close_shared(fleet)
    assert outcome.result is not None and outcome.result.returncode == 0
    assert seen == ["spot", "on-demand"]
    reply = ec2.describe_instances(InstanceIds=[instance_of(outcome)])
    assert "InstanceLifecycle" not in reply["Reservations"][0]["Instances"][0]


def test_no_capacity_at_all_means_retry_not_error(aws_event: AWSEventFactory, ec2: Any) -> None:
    event = aws_event(("logreg",), use_spot_instance=True)
    fleet = AWSWorker.open_shared(event)
    refuse_run_instances(fleet.ec2, "InsufficientInstanceCapacity", only_spot=False)
    try:
        outcome = run(event, "logreg", shared=fleet)
    finally:
        AWSWorker.close_shared(fleet)
    assert outcome.retry is not None and "InsufficientInstanceCapacity" in outcome.retry
    assert outcome.worker.place.instance_id is None


def test_run_instances_refused_is_an_error_and_leaks_nothing(
    aws_event: AWSEventFactory, ec2: Any
) -> None:
    # The run never starts: no trusted scorer hands it data (labels visible).
    event = aws_event(("logreg",), subnet_id="subnet-00000000",
                      isolation={"labels": "visible"})
    worker = AWSWorker(event, "logreg")
    try:
        with pytest.raises(InstanceError, match="InvalidSubnetID"):
            worker.prepare()
    finally:
        worker.release()
    assert worker.status == "killed"
    assert not live_instances(ec2)


def test_an_instance_terminated_mid_run_means_retry(
    aws_event: AWSEventFactory, ec2: Any
) -> None:
    event = aws_event(("logreg",))

    def terminate(worker: AWSWorker) -> None:
        ec2.terminate_instances(InstanceIds=[worker.instance_id])

    outcome = run(event, "logreg", during_wait=terminate)
    assert outcome.retry is not None and "terminated" in outcome.retry
    assert outcome.result is None
    assert not (event.event_dir / "predictions" / "logreg").exists()


def test_a_spot_interruption_mid_run_means_retry(aws_event: AWSEventFactory, ec2: Any) -> None:
    event = aws_event(("logreg",), use_spot_instance=True)

    def interrupt(worker: AWSWorker) -> None:
        time.sleep(0.5)
        ec2.stop_instances(InstanceIds=[worker.instance_id])

    outcome = run(event, "logreg", during_wait=interrupt)
    assert outcome.retry is not None and "stopped" in outcome.retry
    assert state_of(ec2, instance_of(outcome)) == "terminated"


def test_a_dropped_ssh_connection_is_reopened_and_the_run_completes(
    aws_event: AWSEventFactory, instance_hosts: InstanceHosts
) -> None:
    event = aws_event(("logreg",))
    fleet = AWSWorker.open_shared(event)
    cut: list[int] = []

    def drop(worker: AWSWorker) -> None:
        assert worker.poll() == "running"  # one poll over the first connection
        cut.append(instance_hosts.cut_connections())

    try:
        outcome = run(event, "logreg", shared=fleet, during_wait=drop)
    finally:
        AWSWorker.close_shared(fleet)
    assert cut and cut[0] >= 1
    assert outcome.result is not None and outcome.result.returncode == 0
    assert fleet.stats.ssh_connections == 2


def test_an_unreachable_instance_is_retried_and_terminated(
    aws_event: AWSEventFactory, ec2: Any, tmp_path: Path
) -> None:
    closed = tmp_path / "ssh_config_closed"
    closed.write_text(f"Host *\n    HostName 127.0.0.1\n    Port {free_port()}\n")
    event = aws_event(("logreg",), ssh_config_file=str(closed), ssh_connect_timeout=2)
    outcome = run(event, "logreg")
    assert outcome.retry is not None and "SSH connection" in outcome.retry
    assert not live_instances(ec2)
