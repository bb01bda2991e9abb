"""From an event's ``worker.dask_cluster`` to what its cluster is launched with.

The AWS clients (region and profile), the image (the AWS worker's
version-aware resolution), the security groups and instance profile (the
names ``pulumi up`` gives them, unless the config names others), and what
every host boots (:class:`~ramp_fleet.dask.elastic_boot.HostBoot`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
import botocore.exceptions

from ramp_fleet.aws import instances
from ramp_fleet.aws.ami import ImageChoice, ImageNotFound, resolve_image
from ramp_fleet.aws.session import CLIENT_CONFIG
from ramp_fleet.config import EventConfig
from ramp_fleet.config.sections import ElasticDaskSection
from ramp_fleet.dask.elastic_boot import HostBoot, conda_python
from ramp_fleet.dask.elastic_instances import HostLaunch
from ramp_fleet.dask.elastic_tls import ClusterCertificates
from ramp_fleet.errors import UsageError
from ramp_fleet.names import EventNames


@dataclass(frozen=True)
class AwsClients:
    ec2: Any
    ssm: Any
    region: str


def aws_clients(settings: ElasticDaskSection, event: EventConfig) -> AwsClients:
    try:
        session = boto3.Session(profile_name=settings.profile_name,
                                region_name=settings.region_name or event.infra.region)
    except botocore.exceptions.ProfileNotFound:
        raise UsageError(f"worker.dask_cluster.profile_name: no AWS profile named "
                         f"{settings.profile_name!r}") from None
    if session.region_name is None:
        raise UsageError("worker.dask_cluster.region_name: no AWS region given (set it, "
                         "infra.region, AWS_DEFAULT_REGION or a region in the profile)")
    return AwsClients(session.client("ec2", config=CLIENT_CONFIG),
                    session.client("ssm", config=CLIENT_CONFIG), session.region_name)


def choose_image(ec2: Any, settings: ElasticDaskSection, names: EventNames) -> ImageChoice:
    try:
        return resolve_image(ec2, image_id=settings.ami_image_id,
                             name_prefix=settings.ami_image_name or names.ami_base,
                             owners=settings.ami_owners)
    except ImageNotFound as exc:
        raise ImageNotFound(str(exc).replace("worker.", "worker.dask_cluster.")) from None


def launch_plan(settings: ElasticDaskSection, event: EventConfig, ec2: Any, cluster_id: str,
                 image_id: str) -> HostLaunch:
    names = EventNames.of(event)
    subnet = settings.subnet_id
    return HostLaunch(
        ec2=ec2, event_name=event.event_name, cluster_id=cluster_id, image_id=image_id,
        scheduler_instance_type=settings.scheduler_instance_type,
        worker_instance_type=settings.instance_type,
        scheduler_groups=_groups(ec2, "scheduler_security_group",
                                 settings.scheduler_security_group or names.dask_scheduler_group,
                                 subnet),
        worker_groups=_groups(ec2, "security_group",
                              settings.security_group or names.dask_workers_group, subnet),
        subnet_id=subnet, instance_profile=settings.instance_profile or names.dask_elastic_role,
        key_name=settings.key_name, spot_workers=settings.use_spot_instance,
        private_only=settings.use_private_ip, extra_tags=dict(event.infra.tags),
    )


def _groups(ec2: Any, key: str, group: str, subnet_id: str | None) -> tuple[str, ...]:
    try:
        return instances.security_group_ids(ec2, group, subnet_id)
    except instances.InstanceError as exc:
        detail = str(exc).split(": ", 1)[-1]
        raise UsageError(f"worker.dask_cluster.{key}: {detail} (`pulumi up` creates "
                         "the event's groups)") from None


def host_boot(settings: ElasticDaskSection, event: EventConfig, region: str, cluster_id: str,
          certificates: ClusterCertificates, key_parameter: str) -> HostBoot:
    from ramp_fleet.image.document import conda_env_name

    return HostBoot(
        event_name=event.event_name, cluster_id=cluster_id, region=region,
        python=conda_python(conda_env_name(event)),
        ca_pem=certificates.ca_pem.decode("ascii"),
        host_cert_pem=certificates.host_cert_pem.decode("ascii"), key_parameter=key_parameter,
        scheduler_port=settings.scheduler_port, dashboard_port=settings.dashboard_port,
        worker_port=settings.worker_port,
    )
