"""The whole stack of one event, composed from the components of this folder.

``__main__.py`` reads the stack's settings and calls :func:`provision`; the
unit tests and the benchmark call it the same way under Pulumi's mocks.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
from dask_cluster import DaskCluster, DaskClusterArgs
from dask_elastic import ElasticDaskAccess, ElasticDaskAccessArgs
from dask_network import DaskPorts
from image_pipeline import ImagePipeline, ImagePipelineArgs
from worker_access import WorkerAccess, WorkerAccessArgs

from ramp_fleet.config import EventConfig, load_event_config
from ramp_fleet.config.sections import AWSWorkerSection, ElasticDaskSection
from ramp_fleet.errors import UsageError
from ramp_fleet.image.document import ami_user, render_document
from ramp_fleet.names import (
    EventNames,
    conda_env_name,
    elastic_section,
    event_region,
    event_tags,
    parent_image,
)

PROJECT = "ramp-fleet"
PROJECT_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class StackSettings:
    """The stack's own config (``pulumi config``), beside the event config."""

    event_config: Path
    region: str | None = None
    profile: str | None = None
    osf_username: pulumi.Input[str] | None = None
    osf_password: pulumi.Input[str] | None = None
    #: False for the first ``pulumi up`` of a Dask event: no AMI to boot yet.
    dask_cluster: bool = True

    @classmethod
    def from_pulumi_config(cls) -> StackSettings:
        own, aws_config = pulumi.Config(PROJECT), pulumi.Config("aws")
        path = Path(own.require("eventConfig")).expanduser()
        return cls(
            event_config=path if path.is_absolute() else PROJECT_DIR / path,
            region=aws_config.get("region"),
            profile=aws_config.get("profile"),
            osf_username=own.get_secret("osfUsername"),
            osf_password=own.get_secret("osfPassword"),
            dask_cluster=own.get_bool("daskCluster", True) is not False,
        )


def organiser_public_key(event: EventConfig) -> str | None:
    """``infra.public_key_path``, else the AWS worker's ``key_path`` + ``.pub``, if any."""
    path = event.infra.public_key_path
    worker = event.worker
    if path is None and isinstance(worker, AWSWorkerSection) and worker.key_path is not None:
        candidate = worker.key_path.with_name(worker.key_path.name + ".pub")
        path = candidate if candidate.is_file() else None
    return path.read_text(encoding="utf-8").strip() if path is not None else None


def _build_secrets(event: EventConfig, names: EventNames,
                   settings: StackSettings) -> dict[str, pulumi.Input[str]]:
    if settings.osf_password is None and settings.osf_username is None:
        return {}
    if settings.osf_password is None or settings.osf_username is None:
        raise UsageError("set both ramp-fleet:osfUsername and ramp-fleet:osfPassword "
                         "(pulumi config set --secret ...)")
    if event.infra.data_source.kind != "osf":
        raise UsageError("ramp-fleet:osfPassword is set but infra.data_source.kind is not osf")
    return {names.osf_username_parameter: settings.osf_username,
            names.osf_password_parameter: settings.osf_password}


def provision(settings: StackSettings) -> dict[str, Any]:
    """Create every resource of the event; returns the stack outputs."""
    # The SSH key and the Dask TLS files are outputs of this very program.
    event = load_event_config(settings.event_config, runtime_files=False)
    for warning in event.warnings:
        pulumi.log.warn(warning)
    names, tags, infra = EventNames.of(event), event_tags(event), event.infra
    region = event_region(event, settings.region)
    worker = event.worker
    profile = settings.profile or (
        worker.profile_name if isinstance(worker, AWSWorkerSection) else None)
    provider = aws.Provider(f"{names.base}-aws", region=region, profile=profile)
    opts = pulumi.ResourceOptions(providers=[provider])
    if not infra.allowed_cidrs:
        pulumi.log.warn("infra.allowed_cidrs is empty: SSH and Dask are not reachable from outside "
                        "the VPC")

    public_key = organiser_public_key(event)
    access = WorkerAccess(f"{names.base}-access", WorkerAccessArgs(
        security_group_name=names.security_group, key_name=names.key_name,
        allowed_cidrs=infra.allowed_cidrs, tags=tags, public_key=public_key,
        vpc_id=infra.vpc_id,
    ), opts)

    secrets = _build_secrets(event, names, settings)
    source = infra.data_source
    image = ImagePipeline(f"{names.base}-image", ImagePipelineArgs(
        names=names, region=region,
        document=render_document(event, region, private_data=bool(secrets)),
        parent_image=parent_image(event, region), volume_size=infra.volume_size,
        instance_types=infra.build_instance_types,
        security_group_ids=[access.security_group_id], tags=tags,
        subnet_id=infra.subnet_id, log_bucket=infra.log_bucket,
        data_s3_location=source.location if source.kind == "s3" else None,
        build_secrets=secrets,
    ), opts)

    outputs: dict[str, Any] = {
        "eventName": event.event_name,
        "region": region,
        "pipelineName": image.pipeline_name,
        "pipelineArn": image.pipeline_arn,
        "amiNamePrefix": names.ami_base,
        "buildLogGroup": names.build_log_group,
        "buildLogBucket": image.log_bucket,
        "securityGroupId": access.security_group_id,
        "keyName": access.key_name,
    }
    if access.private_key_openssh is not None:
        key_path = shlex.quote(str(names.key_path.expanduser()))
        outputs["sshPrivateKey"] = access.private_key_openssh
        outputs["writeSshKeyCommand"] = (
            f"(umask 077 && pulumi stack output --show-secrets sshPrivateKey > {key_path})")

    elastic = elastic_section(event)
    if elastic is not None:
        outputs.update(_elastic_dask(event, names, region, tags, elastic, opts))
    elif event.worker_type == "dask" and infra.dask_cluster is not None and settings.dask_cluster:
        cluster = DaskCluster(f"{names.base}-dask", DaskClusterArgs(
            names=names, region=region, cluster=infra.dask_cluster,
            env_name=conda_env_name(event), user=ami_user(event), allowed_cidrs=infra.allowed_cidrs,
            key_name=access.key_name, ssh_security_group_id=access.security_group_id,
            tags=tags, vpc_id=infra.vpc_id, subnet_id=infra.subnet_id,
        ), opts)
        outputs.update({
            "daskScheduler": cluster.scheduler_address,
            "daskCaCert": cluster.ca_cert_pem,
            "daskClientCert": cluster.client_cert_pem,
            "daskClientKey": cluster.client_key_pem,
        })
    return outputs


def _elastic_dask(event: EventConfig, names: EventNames, region: str, tags: dict[str, str],
                  elastic: ElasticDaskSection, opts: pulumi.ResourceOptions) -> dict[str, Any]:
    """What the elastic cluster's hosts need (no hosts: the dispatcher starts them)."""
    access = ElasticDaskAccess(f"{names.base}-dask-elastic", ElasticDaskAccessArgs(
        names=names, region=region,
        ports=DaskPorts(elastic.scheduler_port, elastic.dashboard_port, elastic.worker_port),
        allowed_cidrs=event.infra.allowed_cidrs, tags=tags, vpc_id=event.infra.vpc_id,
    ), opts)
    return {
        "daskElasticSchedulerSecurityGroup": access.scheduler_security_group_id,
        "daskElasticWorkersSecurityGroup": access.workers_security_group_id,
        "daskElasticInstanceProfile": access.instance_profile,
        "daskElasticKeyParameters": names.dask_elastic_parameters,
        "daskElasticDispatcherPolicy": access.dispatcher_policy,
    }
