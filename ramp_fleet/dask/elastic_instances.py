"""The EC2 instances of an event's elastic Dask clusters: how they are launched, found, reaped.

Every host is tagged at creation (``TagSpecifications``) with the event tag
like every other ramp-fleet instance, the marker ``ramp-fleet: dask-elastic``
(the AWS worker's reaper looks for ``worker`` and leaves these alone), its
role and its cluster, so a dispatcher that dies on any line leaves nothing
that :func:`reap_hosts` cannot find.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from ramp_fleet.aws import instances
from ramp_fleet.aws.instances import MARKER_TAG, LaunchSpec, TaggedInstance
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


def reap_hosts(ec2: Any, event_name: str, cluster_id: str | None = None,
               dry_run: bool = False) -> list[TaggedInstance]:
    """Terminate the live hosts of the event's elastic clusters (of one if ``cluster_id``)."""
    return instances.reap_event_instances(
        ec2, event_name, MARKER, None if cluster_id is None else {CLUSTER_TAG: cluster_id},
        dry_run=dry_run, log=logger, notice="terminating %d elastic Dask host(s) of %s: %s")
