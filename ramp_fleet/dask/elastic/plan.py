"""What the hosts of one elastic cluster are launched with, and what they run.

From an event's ``worker.dask_cluster``: the AWS clients (region and
profile), the image (the AWS worker's version-aware resolution), the
security groups and instance profile (the names ``pulumi up`` gives them,
unless the config names others) — gathered in :class:`HostLaunch` — and
what every host boots — :class:`HostBoot`.

Every host is tagged at creation (``TagSpecifications``) with the event tag
like every other ramp-fleet instance, the marker ``ramp-fleet: dask-elastic``
(the AWS worker's reaper looks for ``worker`` and leaves these alone), its
role and its cluster, so a dispatcher that dies on any line leaves nothing
that reaping by tag cannot find.

:meth:`HostBoot.user_data` renders ``templates/dask-elastic-host.sh.j2`` for
one host: the cluster's CA and host certificate, where the host key is in
SSM, and the Dask process. No Docker: the process is ``python -m
distributed.cli.dask_scheduler`` (or ``dask_worker``) from the event's conda
environment, with the quiet settings of :mod:`ramp_fleet.dask.host_settings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import boto3
import botocore.exceptions

from ramp_fleet.aws import instances
from ramp_fleet.aws.ami import ImageChoice, ImageNotFound, resolve_image
from ramp_fleet.aws.instances import MARKER_TAG, LaunchSpec
from ramp_fleet.aws.session import CLIENT_CONFIG
from ramp_fleet.config import EventConfig
from ramp_fleet.config.sections import ElasticDaskSection
from ramp_fleet.dask import host_settings
from ramp_fleet.dask.elastic.tls import ClusterCertificates
from ramp_fleet.errors import UsageError
from ramp_fleet.names import CONDA_PREFIX, EVENT_TAG, EventNames, conda_env_name
from ramp_fleet.templating import render

Role = Literal["scheduler", "worker"]

#: The ``ramp-fleet`` tag's value on every host of an elastic cluster.
MARKER = "dask-elastic"
ROLE_TAG = "ramp-fleet:role"
CLUSTER_TAG = "ramp-fleet:cluster"

TEMPLATE = "dask-elastic-host.sh.j2"
TLS_DIR = "/etc/ramp-fleet/dask"
SCHEDULER_MODULE = "distributed.cli.dask_scheduler"
WORKER_MODULE = "distributed.cli.dask_worker"
#: A worker cut off from its scheduler this long exits, and its host powers off.
DEATH_TIMEOUT_SECONDS = 120
#: Adaptive's target duration, and what the scheduler assumes a task lasts before
#: it has seen one end: each waiting submission (all last longer) asks for a worker.
TARGET_DURATION_SECONDS = 1.0


# -- AWS: clients, image, groups, tags ------------------------------------------------


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


# -- the host: its command, its settings, its user-data --------------------------------


def conda_python(env_name: str) -> str:
    """The event environment's Python on the AMI."""
    return f"{CONDA_PREFIX}/envs/{env_name}/bin/python"


@dataclass(frozen=True)
class HostBoot:
    """What every host of one cluster shares at boot; :meth:`user_data` renders one host's."""

    event_name: str
    cluster_id: str
    region: str
    python: str
    ca_pem: str
    host_cert_pem: str
    key_parameter: str
    user: str = "ubuntu"
    scheduler_port: int = 8786
    dashboard_port: int = 8787
    #: The worker's port; its nanny listens on the next one (0: any free ports).
    worker_port: int = 9000
    tls_dir: str = TLS_DIR
    #: The interface the processes listen on; None: all of them.
    listen_host: str | None = None
    dashboard: bool = True

    def scheduler_argv(self) -> list[str]:
        argv = [self.python, "-m", SCHEDULER_MODULE, "--protocol", "tls",
                "--port", str(self.scheduler_port)]
        if self.listen_host:
            argv += ["--host", self.listen_host]
        if self.dashboard:  # unauthenticated: on the host's loopback only (an SSH tunnel reaches it)
            argv += ["--dashboard-address", f"127.0.0.1:{self.dashboard_port}"]
        else:
            argv += ["--no-dashboard"]
        return argv + self._tls_options()

    def worker_argv(self, scheduler: str, name: str) -> list[str]:
        """A single-thread worker named ``name`` (its name in the cluster's spec)."""
        nanny_port = self.worker_port + 1 if self.worker_port else 0
        argv = [self.python, "-m", WORKER_MODULE, scheduler, "--name", name,
                "--nthreads", "1", "--nworkers", "1",
                "--worker-port", str(self.worker_port), "--nanny-port", str(nanny_port),
                "--no-dashboard", "--death-timeout", str(DEATH_TIMEOUT_SECONDS)]
        if self.listen_host:
            argv += ["--host", self.listen_host]
        return argv + self._tls_options()

    def environment(self, role: Role) -> dict[str, str]:
        env = host_settings.environment(role)
        if role == "scheduler":
            name = host_settings.variable_name("distributed.scheduler.unknown-task-duration")
            env[name] = f"{TARGET_DURATION_SECONDS:g}s"
        return env

    def user_data(self, role: Role, argv: list[str]) -> str:
        return render(TEMPLATE, role=role, cluster_id=self.cluster_id,
                      event_name=self.event_name, user=self.user, tls_dir=self.tls_dir,
                      ca_pem=self.ca_pem, cert_pem=self.host_cert_pem,
                      conda_prefix=CONDA_PREFIX, region=self.region,
                      key_parameter=self.key_parameter, environment=self.environment(role),
                      argv=argv)

    def _tls_options(self) -> list[str]:
        return ["--tls-ca-file", f"{self.tls_dir}/ca.pem", "--tls-cert", f"{self.tls_dir}/cert.pem",
                "--tls-key", f"{self.tls_dir}/key.pem"]


def host_boot(settings: ElasticDaskSection, event: EventConfig, region: str, cluster_id: str,
              certificates: ClusterCertificates, key_parameter: str) -> HostBoot:
    return HostBoot(
        event_name=event.event_name, cluster_id=cluster_id, region=region,
        python=conda_python(conda_env_name(event)),
        ca_pem=certificates.ca_pem.decode("ascii"),
        host_cert_pem=certificates.host_cert_pem.decode("ascii"), key_parameter=key_parameter,
        scheduler_port=settings.scheduler_port, dashboard_port=settings.dashboard_port,
        worker_port=settings.worker_port,
    )
