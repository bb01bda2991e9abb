"""The security groups of an event's Dask cluster, static or elastic: least privilege.

* scheduler: its port from the allowed CIDRs (the dispatcher) and the workers;
  the dashboard (unauthenticated) from nowhere, unless ``dashboard_cidrs`` says;
* workers: the worker and nanny ports from the scheduler and from each other only;
* outbound: everything (package mirrors, SSM, the data).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from worker_access import allow_all_egress, allow_ingress

from ramp_fleet.names import EventNames


@dataclass(frozen=True)
class DaskPorts:
    scheduler: int = 8786
    dashboard: int = 8787
    #: The worker's port; its nanny listens on the next one.
    worker: int = 9000


@dataclass(frozen=True)
class DaskGroups:
    scheduler: aws.ec2.SecurityGroup
    workers: aws.ec2.SecurityGroup


def dask_security_groups(parent: pulumi.Resource, name: str, names: EventNames, ports: DaskPorts,
                         allowed_cidrs: Sequence[str], tags: dict[str, str],
                         vpc_id: str | None, dashboard_cidrs: Sequence[str] = ()) -> DaskGroups:
    """Both groups and their rules, children of ``parent``, named ``<name>-...``."""
    child = pulumi.ResourceOptions(parent=parent)
    scheduler = aws.ec2.SecurityGroup(
        f"{name}-scheduler-sg", name=names.dask_scheduler_group, vpc_id=vpc_id,
        description="Dask scheduler: from the allowed CIDRs and the workers only",
        tags={**tags, "Name": names.dask_scheduler_group}, opts=child)
    workers = aws.ec2.SecurityGroup(
        f"{name}-workers-sg", name=names.dask_workers_group, vpc_id=vpc_id,
        description="Dask workers: from the scheduler (and each other) only",
        tags={**tags, "Name": names.dask_workers_group}, opts=child)
    worker_ports = (ports.worker, ports.worker + 1)
    allow_ingress(parent, f"{name}-scheduler", scheduler.id, (ports.scheduler, ports.scheduler),
                  "Dask scheduler", tags, cidrs=allowed_cidrs, source_group_id=workers.id)
    if dashboard_cidrs:
        allow_ingress(parent, f"{name}-dashboard", scheduler.id, (ports.dashboard, ports.dashboard),
                      "Dask dashboard", tags, cidrs=dashboard_cidrs)
    allow_ingress(parent, f"{name}-workers", workers.id, worker_ports,
                  "Dask worker and nanny", tags, source_group_id=scheduler.id)
    allow_ingress(parent, f"{name}-peers", workers.id, worker_ports,
                  "Dask worker to worker", tags, source_group_id=workers.id)
    allow_all_egress(parent, f"{name}-scheduler-egress", scheduler.id, tags)
    allow_all_egress(parent, f"{name}-workers-egress", workers.id, tags)
    return DaskGroups(scheduler, workers)
