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
from tests.aws.conftest import AWSEventFactory
from tests.aws.lifecycle import run_one
from tests.conftest import hanging_estimator, write_submission
from tests.fixtures.moto_ec2 import live_instances
from tests.fixtures.sshd import SSHServer, free_port


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def tags_of(ec2: Any, instance_id: str) -> dict[str, str]:
    reply = ec2.describe_instances(InstanceIds=[instance_id])
    instance = reply["Reservations"][0]["Instances"][0]
    return {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}


def state_of(ec2: Any, instance_id: str) -> str:
    reply = ec2.describe_instances(InstanceIds=[instance_id])
    return str(reply["Reservations"][0]["Instances"][0]["State"]["Name"])


def test_one_submission_end_to_end(aws_event: AWSEventFactory, ec2: Any, image_id: str) -> None:
    event = aws_event(("logreg",))
    outcome = run_one(event, "logreg")
    assert outcome.result == (0, "")
    assert outcome.final_status == "killed"
    worker = outcome.worker
    log = Path(worker.config["logs_dir"]) / "logreg" / "log"
    assert "Mean CV scores" in log.read_text() or "mean" in log.read_text().lower()
    predictions = Path(worker.config["predictions_dir"]) / "logreg"
    assert (predictions / "fold_0").is_dir()
    assert outcome.instance_id is not None
    assert state_of(ec2, outcome.instance_id) == "terminated"
    reply = ec2.describe_instances(InstanceIds=[outcome.instance_id])
    instance = reply["Reservations"][0]["Instances"][0]
    assert instance["ImageId"] == image_id
    tags = tags_of(ec2, outcome.instance_id)
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
    fleet = AWSWorker.open_shared(event.worker_mapping(), event)
    try:
        with ThreadPoolExecutor(3) as pool:
            outcomes = dict(zip(["logreg", "knn", "broken"], pool.map(
                lambda name: run_one(event, name, shared=fleet), ["logreg", "knn", "broken"]),
                strict=True))
    finally:
        AWSWorker.close_shared(fleet)
    assert outcomes["logreg"].result == (0, "")
    assert outcomes["knn"].result == (0, "")
    returncode, error = outcomes["broken"].result or (None, "")
    assert returncode == 1
    assert "Traceback" in error and "broken on purpose" in error
    assert not (event.event_dir / "predictions" / "broken").exists()
    ids = {outcome.instance_id for outcome in outcomes.values()}
    assert len(ids) == 3
    assert fleet.stats.instances_launched == 3
    assert fleet.stats.ssh_connections == 3  # one persistent connection per instance
    assert all(state_of(ec2, i) == "terminated" for i in ids if i)
    slots = sorted(tags_of(ec2, i)[instances.SLOT_TAG] for i in ids if i)
    assert slots == ["0", "1", "2"]


def test_memory_profiling_measures_the_peak_on_the_instance(aws_event: AWSEventFactory) -> None:
    event = aws_event(("logreg",), memory_profiling=True)
    outcome = run_one(event, "logreg")
    assert outcome.result == (0, "")
    assert outcome.worker.peak_memory_mb is not None
    assert 20 < outcome.worker.peak_memory_mb < 4000


def test_a_timeout_stops_the_remote_tree_with_124(
    aws_event: AWSEventFactory, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids"
    event = aws_event(timeout=8)
    write_submission(Path(event.worker_mapping()["submissions_dir"]), "hang",
                     hanging_estimator(pid_file=str(pid_file)))
    outcome = run_one(event, "hang")
    assert outcome.status_after_wait == "timeout"
    assert outcome.result is not None and outcome.result[0] == 124
    assert "timed out after 8 s" in outcome.result[1]
    pids = [int(line) for line in pid_file.read_text().split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in pids), "the remote run outlived its timeout"


# -- infrastructure failures -----------------------------------------------------------


def test_spot_instances_are_requested_when_asked(aws_event: AWSEventFactory, ec2: Any) -> None:
    event = aws_event(("logreg",), use_spot_instance=True)
    outcome = run_one(event, "logreg")
    assert outcome.result == (0, "")
    assert outcome.instance_id is not None
    reply = ec2.describe_instances(InstanceIds=[outcome.instance_id])
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
    fleet = AWSWorker.open_shared(event.worker_mapping(), event)
    seen = refuse_run_instances(fleet.ec2, "InsufficientInstanceCapacity", only_spot=True)
    try:
        outcome = run_one(event, "logreg", shared=fleet)
    finally:
        AWSWorker.close_shared(fleet)
    assert outcome.result == (0, "")
    assert seen == ["spot", "on-demand"]
    reply = ec2.describe_instances(InstanceIds=[outcome.instance_id])
    assert "InstanceLifecycle" not in reply["Reservations"][0]["Instances"][0]


def test_no_capacity_at_all_means_retry_not_error(aws_event: AWSEventFactory, ec2: Any) -> None:
    event = aws_event(("logreg",), use_spot_instance=True)
    fleet = AWSWorker.open_shared(event.worker_mapping(), event)
    refuse_run_instances(fleet.ec2, "InsufficientInstanceCapacity", only_spot=False)
    try:
        outcome = run_one(event, "logreg", shared=fleet)
    finally:
        AWSWorker.close_shared(fleet)
    assert outcome.status_after_wait == "retry"
    assert "InsufficientInstanceCapacity" in outcome.worker.retry_reason
    assert outcome.instance_id is None


def test_run_instances_refused_is_an_error_and_leaks_nothing(
    aws_event: AWSEventFactory, ec2: Any
) -> None:
    event = aws_event(("logreg",), subnet_id="subnet-00000000")
    worker = AWSWorker(event.worker_mapping(), "logreg")
    try:
        with pytest.raises(InstanceError, match="InvalidSubnetID"):
            worker.setup()
        assert worker.status == "error"
        assert "InvalidSubnetID" in worker.error_reason
    finally:
        worker.teardown()
    assert worker.status == "killed"
    assert not live_instances(ec2)


def test_an_instance_terminated_mid_run_means_retry(
    aws_event: AWSEventFactory, ec2: Any
) -> None:
    event = aws_event(("logreg",))

    def terminate(worker: AWSWorker) -> None:
        ec2.terminate_instances(InstanceIds=[worker.instance_id])

    outcome = run_one(event, "logreg", during_wait=terminate)
    assert outcome.status_after_wait == "retry"
    assert "terminated" in outcome.worker.retry_reason
    assert outcome.result is not None and outcome.result[0] != 0
    assert not (event.event_dir / "predictions" / "logreg").exists()


def test_a_spot_interruption_mid_run_means_retry(aws_event: AWSEventFactory, ec2: Any) -> None:
    event = aws_event(("logreg",), use_spot_instance=True)

    def interrupt(worker: AWSWorker) -> None:
        time.sleep(0.5)
        ec2.stop_instances(InstanceIds=[worker.instance_id])

    outcome = run_one(event, "logreg", during_wait=interrupt)
    assert outcome.status_after_wait == "retry"
    assert outcome.instance_id is not None
    assert state_of(ec2, outcome.instance_id) == "terminated"


def test_a_dropped_ssh_connection_is_reopened_and_the_run_completes(
    aws_event: AWSEventFactory, sshd: SSHServer
) -> None:
    event = aws_event(("logreg",))
    fleet = AWSWorker.open_shared(event.worker_mapping(), event)
    cut: list[int] = []

    def drop(worker: AWSWorker) -> None:
        assert worker.poll() == "running"  # one poll over the first connection
        cut.append(sshd.cut_connections())

    try:
        outcome = run_one(event, "logreg", shared=fleet, during_wait=drop)
    finally:
        AWSWorker.close_shared(fleet)
    assert cut and cut[0] >= 1
    assert outcome.result == (0, "")
    assert fleet.stats.ssh_connections == 2


def test_an_unreachable_instance_is_retried_and_terminated(
    aws_event: AWSEventFactory, ec2: Any, tmp_path: Path
) -> None:
    closed = tmp_path / "ssh_config_closed"
    closed.write_text(f"Host *\n    HostName 127.0.0.1\n    Port {free_port()}\n")
    event = aws_event(("logreg",), ssh_config_file=str(closed), ssh_connect_timeout=2)
    outcome = run_one(event, "logreg")
    assert outcome.status_after_wait == "retry"
    assert "SSH connection" in outcome.worker.retry_reason
    assert not live_instances(ec2)
