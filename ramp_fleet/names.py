"""The names of everything the Pulumi program creates, derived from the event config.

This is the one place they are made: ``pulumi up`` gives these names to the
resources, and ``ramp-fleet build-ami`` (or the AWS worker) finds them again
from the same config, without reading Pulumi outputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ramp_fleet.config import EventConfig
from ramp_fleet.config.sections import AWSWorkerSection, DaskWorkerSection, ElasticDaskSection
from ramp_fleet.errors import UsageError

#: The tag every resource of an event carries; its value is the event name.
EVENT_TAG = "ramp-fleet:event"
#: Egress only: hosts must reach package mirrors, the kit repository and the data.
#: Ingress is never opened this wide unless ``infra.allowed_cidrs`` says so.
EGRESS_ANYWHERE_IPV4 = "0.0.0.0/0"
#: Default parent image: Canonical's Ubuntu 22.04 LTS, as managed by Image Builder.
UBUNTU_LTS_PARENT_IMAGE = "arn:aws:imagebuilder:{region}:aws:image/ubuntu-server-22-lts-x86/x.x.x"
#: Where the image build installs miniforge.
CONDA_PREFIX = "/opt/conda"

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def slug(text: str, limit: int = 40) -> str:
    """``text`` reduced to the characters every AWS name accepts."""
    cleaned = _UNSAFE.sub("-", text).strip("-_") or "event"
    return cleaned[:limit].rstrip("-_")


@dataclass(frozen=True)
class EventNames:
    """Every physical name of an event's AWS resources."""

    event: str
    base: str
    ami_base: str
    security_group: str
    key_name: str
    key_path: Path

    @classmethod
    def of(cls, event: EventConfig) -> EventNames:
        base = f"ramp-{slug(event.event_name)}"
        worker = event.worker
        aws = worker if isinstance(worker, AWSWorkerSection) else None
        elastic = elastic_section(event)
        key_path = aws.key_path if aws and aws.key_path else Path(f"~/.ssh/{base}")
        ami_name = (aws.ami_image_name if aws else None) or \
            (elastic.ami_image_name if elastic else None)
        return cls(
            event=event.event_name,
            base=base,
            ami_base=ami_name or base,
            security_group=(aws.security_group if aws and aws.security_group else f"{base}-workers"),
            key_name=(aws.key_name if aws and aws.key_name else base),
            key_path=key_path,
        )

    # -- image pipeline -----------------------------------------------------
    @property
    def pipeline(self) -> str:
        return f"{self.base}-pipeline"

    @property
    def component(self) -> str:
        return f"{self.base}-component"

    @property
    def recipe(self) -> str:
        return f"{self.base}-recipe"

    @property
    def infrastructure(self) -> str:
        return f"{self.base}-infrastructure"

    @property
    def distribution(self) -> str:
        return f"{self.base}-distribution"

    @property
    def build_role(self) -> str:
        return f"{self.base}-imagebuilder"

    @property
    def build_log_group(self) -> str:
        """Where Image Builder writes the build's logs in CloudWatch."""
        return f"/aws/imagebuilder/{self.recipe}"

    @property
    def ami_name(self) -> str:
        """The AMI name template; Image Builder fills in the build date."""
        return f"{self.ami_base} {{{{ imagebuilder:buildDate }}}}"

    @property
    def ami_name_filter(self) -> str:
        return f"{self.ami_base} *"

    # -- secrets in SSM Parameter Store ---------------------------------------
    @property
    def parameter_prefix(self) -> str:
        return f"/ramp-fleet/{slug(self.event, 100)}"

    @property
    def osf_username_parameter(self) -> str:
        return f"{self.parameter_prefix}/osf-username"

    @property
    def osf_password_parameter(self) -> str:
        return f"{self.parameter_prefix}/osf-password"

    def dask_key_parameter(self, role: str) -> str:
        return f"{self.parameter_prefix}/dask/{role}-key"

    # -- dask cluster -----------------------------------------------------------
    @property
    def dask_scheduler_group(self) -> str:
        return f"{self.base}-dask-scheduler"

    @property
    def dask_workers_group(self) -> str:
        return f"{self.base}-dask-workers"

    def dask_role(self, role: str) -> str:
        """The IAM role (and instance profile) of the Dask ``scheduler`` or ``worker`` hosts."""
        return f"{self.base}-dask-{role}s"

    # -- elastic dask cluster ---------------------------------------------------------
    @property
    def dask_elastic_role(self) -> str:
        """The role and instance profile of the elastic cluster's hosts."""
        return f"{self.base}-dask-elastic"

    @property
    def dask_elastic_parameters(self) -> str:
        """Where the elastic clusters' host keys live in SSM (one folder per cluster)."""
        return f"{self.parameter_prefix}/dask-elastic"

    def dask_elastic_key_parameter(self, cluster_id: str) -> str:
        return f"{self.dask_elastic_parameters}/{cluster_id}/host-key"


def conda_env_name(event: EventConfig) -> str:
    """The event's environment on the AMI: the worker's ``conda_env`` if it is a name."""
    configured = getattr(event.worker, "conda_env", None)
    if configured and "/" not in configured and " " not in configured:
        return str(configured)
    return slug(event.ramp.problem_name)


def elastic_section(event: EventConfig) -> ElasticDaskSection | None:
    """``worker.dask_cluster`` of a Dask event, else None."""
    worker = event.worker
    return worker.dask_cluster if isinstance(worker, DaskWorkerSection) else None


def event_tags(event: EventConfig) -> dict[str, str]:
    """Tags for every resource of the event: the organiser's, then the event tag."""
    return {**event.infra.tags, EVENT_TAG: event.event_name}


def event_region(event: EventConfig, override: str | None = None) -> str:
    """The AWS region of the event: ``override`` (Pulumi's aws:region), else the config's."""
    worker = event.worker
    elastic = elastic_section(event)
    configured = event.infra.region or (
        worker.region_name if isinstance(worker, AWSWorkerSection) else None
    ) or (elastic.region_name if elastic else None)
    if override and configured and override != configured:
        raise UsageError(
            f"{event.display}: infra.region: the stack's aws:region is {override!r} but the "
            f"config says {configured!r}; make them agree"
        )
    region = override or configured
    if not region:
        raise UsageError(
            f"{event.display}: infra.region: is required (or set the stack's aws:region)"
        )
    return region


def parent_image(event: EventConfig, region: str) -> str:
    return event.infra.parent_image or UBUNTU_LTS_PARENT_IMAGE.format(region=region)
