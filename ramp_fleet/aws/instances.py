"""EC2 instances of an event: launch (spot or on-demand), watch, terminate, reap.

Every instance is tagged at creation (``TagSpecifications``), so an instance
exists only with the tags that let :func:`find_event_instances` find it —
even if the dispatcher dies on the next line. :func:`reap_event_instances` is
the one way to terminate what is found so: the AWS worker's fleet and the
elastic Dask cluster each reap their own kind (the ``ramp-fleet`` tag).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions

from ramp_fleet.errors import RampFleetError
from ramp_fleet.names import EVENT_TAG
from ramp_fleet.waiting import Backoff, WaitTimeout

logger = logging.getLogger("ramp_fleet.aws")

#: Says which kind of ramp-fleet instance this is (the AWS worker's: ``worker``).
MARKER_TAG = "ramp-fleet"
WORKER_MARKER = "worker"
SUBMISSION_TAG = "ramp-fleet:submission"
SLOT_TAG = "ramp-fleet:slot"

#: States of an instance that still costs money or may start to.
LIVE_STATES = ("pending", "running", "stopping", "stopped")
#: States that mean the instance is gone or going for good.
LOST_STATES = frozenset({"shutting-down", "terminated", "stopping", "stopped"})

#: Spot could not be had now: launch on-demand instead.
SPOT_UNAVAILABLE = frozenset({
    "InsufficientInstanceCapacity", "InsufficientCapacity", "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded", "UnfulfillableCapacity", "InsufficientFreeAddressesInSubnet",
})
#: Worth trying again later: the submission goes back to the queue, not to an error.
TRANSIENT = frozenset({
    "InsufficientInstanceCapacity", "InsufficientCapacity", "UnfulfillableCapacity",
    "InstanceLimitExceeded", "VcpuLimitExceeded", "RequestLimitExceeded", "Throttling",
    "InternalError", "ServiceUnavailable", "Unavailable",
})


class InstanceError(RampFleetError):
    """An instance could not be had or was lost; ``transient`` says whether to retry."""

    def __init__(self, message: str, *, transient: bool, code: str = ""):
        super().__init__(message)
        self.transient = transient
        #: The EC2 error code, when EC2 refused a request.
        self.code = code


class InstanceLost(InstanceError):
    """The instance stopped, terminated or was interrupted (spot) during the run."""

    def __init__(self, instance_id: str, state: str, reason: str = ""):
        detail = f" ({reason})" if reason else ""
        super().__init__(f"instance {instance_id} is {state}{detail}", transient=True)
        self.instance_id = instance_id
        self.state = state


@dataclass(frozen=True)
class LaunchSpec:
    image_id: str
    instance_type: str
    key_name: str | None = None
    security_group_ids: tuple[str, ...] = ()
    subnet_id: str | None = None
    use_spot: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)
    #: May hold a secret (an instance's host key): never shown.
    user_data: str | None = field(default=None, repr=False)
    #: An instance profile name, or its ARN.
    instance_profile: str | None = None
    #: True/False: ask for a public IP or none; None: the subnet's default.
    public_ip: bool | None = None


@dataclass(frozen=True)
class Launched:
    instance_id: str
    lifecycle: str  # "spot" or "on-demand"


def event_tags(event: str, submission: str, slot: int) -> dict[str, str]:
    return {
        MARKER_TAG: WORKER_MARKER,
        EVENT_TAG: event,
        SUBMISSION_TAG: submission,
        SLOT_TAG: str(slot),
        "Name": f"ramp-fleet {event} {submission}",
    }


def error_code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def launch(ec2: Any, spec: LaunchSpec) -> Launched:
    """One instance from ``spec``; spot first when asked, on-demand if spot is not there."""
    if spec.use_spot:
        try:
            return _run(ec2, spec, spot=True)
        except InstanceError as exc:
            if exc.code not in SPOT_UNAVAILABLE:
                raise
            logger.warning("no spot capacity (%s); launching on-demand instead", exc)
    return _run(ec2, spec, spot=False)


def _run(ec2: Any, spec: LaunchSpec, *, spot: bool) -> Launched:
    tags = [{"Key": key, "Value": value} for key, value in spec.tags.items()]
    request: dict[str, Any] = {
        "ImageId": spec.image_id,
        "InstanceType": spec.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "InstanceInitiatedShutdownBehavior": "terminate",
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": tags},
        ],
    }
    if spec.key_name:
        request["KeyName"] = spec.key_name
    request.update(_network(spec))
    request.update(_host_options(spec))
    if spot:
        request["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {"SpotInstanceType": "one-time",
                            "InstanceInterruptionBehavior": "terminate"},
        }
    try:
        reply = ec2.run_instances(**request)
    except botocore.exceptions.ClientError as exc:
        code = error_code(exc)
        kind = "spot" if spot else "on-demand"
        raise InstanceError(f"cannot launch a {kind} {spec.instance_type} instance: {exc}",
                            transient=code in TRANSIENT, code=code) from exc
    instance = reply["Instances"][0]
    launched = Launched(instance["InstanceId"], "spot" if spot else "on-demand")
    logger.info("launched %s instance %s from %s", launched.lifecycle, launched.instance_id,
                spec.image_id)
    return launched


def _network(spec: LaunchSpec) -> dict[str, Any]:
    if spec.public_ip is None:
        placed: dict[str, Any] = {}
        if spec.security_group_ids:
            placed["SecurityGroupIds"] = list(spec.security_group_ids)
        if spec.subnet_id:
            placed["SubnetId"] = spec.subnet_id
        return placed
    interface: dict[str, Any] = {"DeviceIndex": 0, "DeleteOnTermination": True,
                                 "AssociatePublicIpAddress": spec.public_ip}
    if spec.security_group_ids:
        interface["Groups"] = list(spec.security_group_ids)
    if spec.subnet_id:
        interface["SubnetId"] = spec.subnet_id
    return {"NetworkInterfaces": [interface]}


METADATA_OPTIONS = {"HttpTokens": "required", "HttpPutResponseHopLimit": 1,
                    "HttpEndpoint": "enabled"}


def _host_options(spec: LaunchSpec) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if spec.user_data is not None:
        options["UserData"] = spec.user_data
    if spec.instance_profile:
        kind = "Arn" if spec.instance_profile.startswith("arn:") else "Name"
        options["IamInstanceProfile"] = {kind: spec.instance_profile}
    # Every instance: IMDSv2 only, one hop (a container or a sandbox on it cannot reach the
    # metadata, whose user-data holds the instance's own SSH host key).
    options["MetadataOptions"] = METADATA_OPTIONS
    return options


def security_group_ids(ec2: Any, group: str | None, subnet_id: str | None) -> tuple[str, ...]:
    """``sg-…`` as is; a name resolved to its id (in the subnet's VPC when there are several)."""
    if group is None:
        return ()
    if group.startswith("sg-"):
        return (group,)
    found = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [group]}])["SecurityGroups"]
    if len(found) > 1 and subnet_id is not None:
        vpc = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]["VpcId"]
        found = [item for item in found if item.get("VpcId") == vpc]
    if not found:
        raise InstanceError(f"worker.security_group: no security group named {group!r}",
                            transient=False)
    if len(found) > 1:
        ids = ", ".join(item["GroupId"] for item in found)
        raise InstanceError(f"worker.security_group: several groups are named {group!r} "
                            f"({ids}); give its id or a subnet_id", transient=False)
    return (found[0]["GroupId"],)


def describe(ec2: Any, instance_id: str) -> dict[str, Any] | None:
    """The instance as EC2 describes it, or None when EC2 no longer knows it."""
    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    except botocore.exceptions.ClientError as exc:
        if error_code(exc).startswith("InvalidInstanceID"):
            return None
        raise
    for reservation in reservations:
        for instance in reservation["Instances"]:
            found: dict[str, Any] = instance
            return found
    return None


def check_alive(ec2: Any, instance_id: str) -> dict[str, Any]:
    """The instance, or :class:`InstanceLost` if it is stopping, stopped or terminated."""
    instance = describe(ec2, instance_id)
    if instance is None:
        raise InstanceLost(instance_id, "gone")
    state = instance["State"]["Name"]
    if state in LOST_STATES:
        reason = (instance.get("StateReason") or {}).get("Message", "")
        raise InstanceLost(instance_id, state, reason)
    return instance


def wait_running(
    ec2: Any, instance_id: str, deadline: float, stop: threading.Event | None = None
) -> dict[str, Any]:
    """Wait until the instance runs; returns its description."""
    for attempt in Backoff(deadline=deadline, first=1.0, cap=10.0,
                           what=f"instance {instance_id} start", stop=stop):
        instance = check_alive(ec2, instance_id)
        if instance["State"]["Name"] == "running":
            return instance
        attempt.failed(InstanceError(f"instance {instance_id} is {instance['State']['Name']}",
                                     transient=True))
    raise WaitTimeout(f"instance {instance_id} did not start")  # pragma: no cover


def address(instance: Mapping[str, Any]) -> str:
    """Where to reach the instance: its public IP, else its private one."""
    found = instance.get("PublicIpAddress") or instance.get("PrivateIpAddress")
    if not found:
        raise InstanceError(f"instance {instance['InstanceId']} has no IP address",
                            transient=True)
    return str(found)


def terminate(ec2: Any, instance_ids: Iterable[str]) -> None:
    ids = sorted(set(instance_ids))
    if not ids:
        return
    try:
        ec2.terminate_instances(InstanceIds=ids)
    except botocore.exceptions.ClientError as exc:
        if not error_code(exc).startswith("InvalidInstanceID"):
            raise
        for one in ids:  # one of them is already gone: terminate the rest one by one
            try:
                ec2.terminate_instances(InstanceIds=[one])
            except botocore.exceptions.ClientError as single:
                if not error_code(single).startswith("InvalidInstanceID"):
                    raise
    logger.info("terminated %s", ", ".join(ids))


def retag(ec2: Any, instance_id: str, tags: Mapping[str, str]) -> None:
    ec2.create_tags(Resources=[instance_id],
                    Tags=[{"Key": key, "Value": value} for key, value in tags.items()])


@dataclass(frozen=True)
class TaggedInstance:
    """A live instance as :func:`find_event_instances` found it."""

    instance_id: str
    state: str
    launched: str
    tags: Mapping[str, str]

    def tag(self, key: str) -> str:
        """The value of tag ``key``; ``?`` when it is missing or empty."""
        return self.tags.get(key) or "?"


#: What :func:`reap_event_instances` logs by default: the count, the event, the ids.
REAP_NOTICE = "reaping %d instance(s) left behind for event %s: %s"


def find_event_instances(ec2: Any, event: str, marker: str,
                         narrow: Mapping[str, str] | None = None) -> list[TaggedInstance]:
    """The not-yet-terminated instances of ``event`` and kind ``marker``.

    ``narrow``: tags they must carry as well (one cluster, one role, ...).
    """
    wanted = {EVENT_TAG: event, MARKER_TAG: marker, **(narrow or {})}
    filters = [{"Name": f"tag:{key}", "Values": [value]} for key, value in wanted.items()]
    filters.append({"Name": "instance-state-name", "Values": list(LIVE_STATES)})
    found: list[TaggedInstance] = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                found.append(TaggedInstance(
                    instance_id=instance["InstanceId"],
                    state=instance["State"]["Name"],
                    launched=str(instance.get("LaunchTime", "")),
                    tags={tag["Key"]: tag["Value"] for tag in instance.get("Tags") or []},
                ))
    return found


def reap_event_instances(
    ec2: Any, event: str, marker: str, narrow: Mapping[str, str] | None = None, *,
    spare: Collection[str] = (), dry_run: bool = False,
    log: logging.Logger = logger, notice: str = REAP_NOTICE,
) -> list[TaggedInstance]:
    """Terminate what :func:`find_event_instances` finds, but the ids in ``spare``; returns it.

    Before terminating, ``notice`` (formatted with the count, ``event`` and
    the ids) goes to ``log`` as a warning. ``dry_run``: find only.
    """
    found = [item for item in find_event_instances(ec2, event, marker, narrow)
             if item.instance_id not in spare]
    if found and not dry_run:
        ids = [item.instance_id for item in found]
        log.warning(notice, len(found), event, ", ".join(ids))
        terminate(ec2, ids)
    return found
