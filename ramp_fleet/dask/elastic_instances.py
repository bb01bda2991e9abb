"""The EC2 instances of an event's elastic Dask clusters: how they are launched, found, reaped.

Every host is tagged at creation (``TagSpecifications``) with the event tag
like every other ramp-fleet instance, the marker ``ramp-fleet: dask-elastic``
(the AWS worker's reaper looks for ``worker`` and leaves these alone), its
role and its cluster, so a dispatcher that dies on any line leaves nothing
that :func:`reap_instances` cannot find.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from ramp_fleet.aws import instances
from ramp_fleet.aws.instances import LIVE_STATES, MARKER_TAG, LaunchSpec
from ramp_fleet.names import EVENT_TAG

logger = logging.getLogger("ramp_fleet.dask.elastic")

Role = Literal["scheduler", "worker"]

MARKER = "dask-elastic"
ROLE_TAG = "ramp-fleet:role"
CLUSTER_TAG = "ramp-fleet:cluster"


@dataclass(frozen=True)
class HostLaunch:
    """What every host of one cluster is launched with; :meth:`spec` adds the host's own part."""

    ec2: Any
    event_name: str
    cluster_id: str
    image_id: str
    scheduler_instance_type: str
    worker_instance_type: str
    scheduler_groups: tuple[str, ...]
    worker_groups: tuple[str, ...]
    subnet_id: str | None = None
    instance_profile: str | None = None
    key_name: str | None = None
    spot_workers: bool = False
    private_only: bool = False
    #: The organiser's tags (``infra.tags``).
    extra_tags: dict[str, str] = field(default_factory=dict)

    def tags(self, role: Role, host_name: str) -> dict[str, str]:
        return {**self.extra_tags, EVENT_TAG: self.event_name, MARKER_TAG: MARKER,
                ROLE_TAG: role, CLUSTER_TAG: self.cluster_id,
                "Name": f"ramp-fleet {self.event_name} {host_name}"}

    def spec(self, role: Role, host_name: str, user_data: str) -> LaunchSpec:
        scheduler = role == "scheduler"
        return LaunchSpec(
            image_id=self.image_id,
            instance_type=self.scheduler_instance_type if scheduler else self.worker_instance_type,
            key_name=self.key_name,
            security_group_ids=self.scheduler_groups if scheduler else self.worker_groups,
            subnet_id=self.subnet_id,
            use_spot=self.spot_workers and not scheduler,
            tags=self.tags(role, host_name),
            user_data=user_data,
            instance_profile=self.instance_profile,
            # Without a NAT, a host reaches SSM (its key) through its public address.
            public_ip=not self.private_only,
        )


@dataclass(frozen=True)
class ElasticHost:
    instance_id: str
    state: str
    cluster_id: str
    role: str
    launched: str


def find_instances(ec2: Any, event_name: str, cluster_id: str | None = None) -> list[ElasticHost]:
    """The live hosts of the event's elastic clusters (of one cluster if ``cluster_id``)."""
    filters = [
        {"Name": f"tag:{EVENT_TAG}", "Values": [event_name]},
        {"Name": f"tag:{MARKER_TAG}", "Values": [MARKER]},
        {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
    ]
    if cluster_id is not None:
        filters.append({"Name": f"tag:{CLUSTER_TAG}", "Values": [cluster_id]})
    found: list[ElasticHost] = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                tags = {tag["Key"]: tag["Value"] for tag in instance.get("Tags") or []}
                found.append(ElasticHost(
                    instance_id=instance["InstanceId"], state=instance["State"]["Name"],
                    cluster_id=tags.get(CLUSTER_TAG, "?"), role=tags.get(ROLE_TAG, "?"),
                    launched=str(instance.get("LaunchTime", ""))))
    return found


def reap_instances(ec2: Any, event_name: str, cluster_id: str | None = None,
                   dry_run: bool = False) -> list[ElasticHost]:
    """Terminate what :func:`find_instances` finds; returns it."""
    found = find_instances(ec2, event_name, cluster_id)
    if found and not dry_run:
        logger.warning("terminating %d elastic Dask host(s) of %s: %s", len(found), event_name,
                       ", ".join(item.instance_id for item in found))
        instances.terminate(ec2, [item.instance_id for item in found])
    return found
