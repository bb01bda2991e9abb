"""One AWS run driven as a slot drives it, and what EC2 says about its instance."""

from __future__ import annotations

from typing import Any

from ramp_fleet.workers.aws import AWSWorker
from tests.lifecycle import Outcome, run_one


def run(event: Any, name: str, shared: Any = None, **options: Any) -> Outcome:
    return run_one(AWSWorker(event, name), shared, **options)


def instance_of(outcome: Outcome) -> str:
    instance_id = outcome.worker.place.instance_id
    assert instance_id is not None
    return instance_id


def state_of(ec2: Any, instance_id: str) -> str:
    reply = ec2.describe_instances(InstanceIds=[instance_id])
    return str(reply["Reservations"][0]["Instances"][0]["State"]["Name"])


def all_instances(ec2: Any) -> dict[str, str]:
    """Every instance moto knows, by id, with its state."""
    reservations = ec2.describe_instances()["Reservations"]
    return {instance["InstanceId"]: instance["State"]["Name"]
            for reservation in reservations for instance in reservation["Instances"]}
