"""The sections of an event config, as typed models with their defaults.

The layout is RAMP's (``ramp``, ``worker``, ``dispatcher``) plus two optional
sections of our own (``infra``, ``store``). Defaults live here and nowhere
else. Paths are still as written; :mod:`ramp_fleet.config.loader` resolves
them against the config file.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ramp_fleet.config.fields import (
    ByteSize,
    Cidr,
    Flag,
    NonNegativeInt,
    NonZeroInt,
    PathField,
    Port,
    PositiveInt,
    PositiveNumber,
    RunPath,
    Seconds,
    Text,
)
from ramp_fleet.sandbox.spec import DEFAULT_DISK_MB, Isolation
from ramp_fleet.sandbox.tree import Limits

HUNGER_POLICIES = (None, "sleep", "exit")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: The event's folders, under the names ramp-board's ``ramp`` section uses (and
#: the guide's ``worker`` section repeats).
DIRECTORY_KEYS = ("kit_dir", "data_dir", "submissions_dir", "predictions_dir", "logs_dir")


class RampSection(Section):
    """ramp-board's ``ramp`` section, with ramp-utils' key names.

    Relative directories are relative to the deployment folder, as
    ramp-utils joins them.
    """

    problem_name: Text
    event_name: Text
    event_title: Text | None = None
    event_is_public: Flag = False
    #: Root of the ramp-board deployment layout (see the loader for its default).
    deployment_dir: PathField | None = None
    kit_dir: PathField | None = None
    data_dir: PathField | None = None
    submissions_dir: PathField | None = None
    predictions_dir: PathField | None = None
    logs_dir: PathField | None = None
    #: The starting kit's submission, in ``<kit_dir>/submissions``.
    sandbox_dir: Text = "starting_kit"
    #: Train the sandbox submission like any other (ramp-board does not).
    sandbox_as_submission: Flag = False


class DispatcherSection(Section):
    hunger_policy: Literal["sleep", "exit"] | None = None
    #: Worker slots; a negative number means ``cpu_count + 1 + n`` as in RAMP.
    n_workers: NonZeroInt = 1
    #: Threads given to each run through OMP/MKL/OPENBLAS/NUMEXPR variables.
    n_threads: PositiveInt | None = None
    #: How often remote runs are polled; local runs are collected at once.
    time_between_collection: Seconds = 1.0
    #: How often ``hunger_policy: sleep`` looks for new submissions.
    sleep_interval: Seconds = 5.0
    max_attempts: PositiveInt = 3
    retry_backoff: Seconds = 5.0
    retry_backoff_max: Seconds = 300.0
    #: Serve Prometheus metrics on this port while dispatching; unset: no server.
    metrics_port: Port | None = None
    #: Where the metrics server listens: loopback unless the organiser opens it.
    metrics_host: Text = "127.0.0.1"


class ResultLimits(Section):
    """What a run may hand back; past these, its results are refused (checking_error)."""

    max_bytes: ByteSize = 1 << 30
    max_files: PositiveInt = 10_000
    max_file_bytes: ByteSize = 512 << 20
    #: A longer log keeps its head and its end around a ``[… truncated]`` marker.
    max_log_bytes: ByteSize = 4 << 20

    def caps(self) -> Limits:
        """The caps as the runner and the receiving side hold them (the log's apart)."""
        return Limits(self.max_bytes, self.max_files, self.max_file_bytes)


ISOLATION_MODES = ("auto", "required", "off")


class IsolationSection(Section):
    """``worker.isolation``: the sandbox every run goes through (:mod:`ramp_fleet.sandbox`).

    Not called ``sandbox``: ramp-board's ``sandbox_dir`` already names the starting kit.
    """

    #: ``required``: refuse to run where bubblewrap cannot make a sandbox; ``auto``:
    #: isolated wherever it can, else one warning; ``off``: no sandbox (one warning).
    mode: Literal["auto", "required", "off"] = "required"
    #: Give runs the network (otherwise a namespace of their own: not even loopback).
    network: Flag = False
    #: Resident memory of a whole run (all its processes together), in MiB; unset: not limited.
    memory_mb: PositiveInt | None = None
    #: Processes (threads included) per run.
    max_processes: PositiveInt = 4096
    #: What a run may write in its own folder, and in its /tmp, in MiB each (memory-backed).
    disk_mb: PositiveInt = DEFAULT_DISK_MB
    #: More folders runs may read, as paths on the machine of the run.
    read_only_paths: list[RunPath] = Field(default_factory=list)

    def plain(self) -> Isolation:
        """The section as the runner takes it (plain values, sent to the hosts of the runs)."""
        return Isolation(mode=self.mode, network=self.network, memory_mb=self.memory_mb,
                         max_processes=self.max_processes, disk_mb=self.disk_mb,
                         read_only_paths=tuple(self.read_only_paths))


class WorkerSection(Section):
    """Keys every worker has; the directories default to the deployment layout."""

    #: The directories this worker reads on the dispatcher's machine (checked
    #: before anything runs); the others may live on the worker hosts.
    local_dirs: ClassVar[tuple[str, ...]] = ("submissions_dir",)
    #: ``package.module:Class`` of the built-in worker that reads this section
    #: (imported only when the event runs: a config load never imports a backend).
    worker_class: ClassVar[str] = ""
    #: The pip extra the backend's libraries come with (:mod:`ramp_fleet.extras`);
    #: None: the base install runs it.
    extra: ClassVar[str | None] = None

    worker_type: Text
    kit_dir: PathField | None = None
    data_dir: PathField | None = None
    submissions_dir: PathField | None = None
    logs_dir: PathField | None = None
    predictions_dir: PathField | None = None
    timeout: Seconds = 7200.0
    result_limits: ResultLimits = Field(default_factory=ResultLimits)
    isolation: IsolationSection = Field(default_factory=IsolationSection)
    #: USD per instance-hour, for the report's cost estimate when the AWS Price
    #: List API does not answer (and for any machine it does not price).
    hourly_price: PositiveNumber | None = None


class CondaWorkerSection(WorkerSection):
    local_dirs: ClassVar[tuple[str, ...]] = ("kit_dir", "data_dir", "submissions_dir")
    worker_class: ClassVar[str] = "ramp_fleet.workers.conda:CondaEnvWorker"

    worker_type: Literal["conda"] = "conda"
    conda_env: Text | None = None


class AWSWorkerSection(WorkerSection):
    worker_class: ClassVar[str] = "ramp_fleet.workers.aws:AWSWorker"
    extra: ClassVar[str | None] = "aws"

    worker_type: Literal["aws"] = "aws"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    profile_name: Text | None = None
    region_name: Text | None = None
    ami_image_name: Text | None = None
    ami_image_id: Text | None = None
    ami_owners: list[Text] = Field(default_factory=lambda: ["self"])
    ami_user_name: Text = "ubuntu"
    instance_type: Text = "t3.medium"
    use_spot_instance: Flag = False
    key_name: Text | None = None
    security_group: Text | None = None
    subnet_id: Text | None = None
    key_path: PathField | None = None
    ssh_config_file: PathField | None = None
    remote_ramp_kit_folder: Text = "~/ramp-kit"
    remote_activate: Text = ". ~/.profile"
    #: Kept for the RAMP guide's configs: every run's peak memory is measured now.
    memory_profiling: Flag = False
    reuse_instances: Flag = False
    instance_idle_timeout: Seconds = 300.0
    ami_refresh_interval: Seconds = 300.0
    ssh_connect_timeout: Seconds = 300.0


class DaskTLS(Section):
    ca_file: PathField
    cert: PathField
    key: PathField


class ElasticDaskSection(Section):
    """``worker.dask_cluster``: an elastic Dask cluster on EC2 that the dispatcher
    opens and closes, scaled with the queue between min_workers and max_workers.

    Unset names default to what the Pulumi program creates for the event
    (see :class:`ramp_fleet.names.EventNames`).
    """

    provider: Literal["ec2"]
    max_workers: PositiveInt
    min_workers: NonNegativeInt = 0
    #: Worker hosts (one single-thread Dask worker each: one submission at a time).
    instance_type: Text = "t3.large"
    scheduler_instance_type: Text = "t3.medium"
    #: A worker idle this long is retired (and its instance terminated), down to min_workers.
    idle_timeout: Seconds = 300.0
    #: The workers' and the scheduler's security groups (names or sg- ids).
    security_group: Text | None = None
    scheduler_security_group: Text | None = None
    subnet_id: Text | None = None
    region_name: Text | None = None
    profile_name: Text | None = None
    #: Base name of the event AMI (newest version wins), or a pinned image id.
    ami_image_name: Text | None = None
    ami_image_id: Text | None = None
    ami_owners: list[Text] = Field(default_factory=lambda: ["self"])
    #: The hosts' instance profile: reads the cluster's TLS host key from SSM.
    instance_profile: Text | None = None
    #: Only for looking into a host with SSH; the hosts need no key.
    key_name: Text | None = None
    use_spot_instance: Flag = False
    #: Reach the scheduler at its private address (a dispatcher inside the VPC).
    use_private_ip: Flag = False
    scheduler_port: PositiveInt = 8786
    dashboard_port: PositiveInt = 8787
    #: Each worker host listens here (its nanny on the next port).
    worker_port: PositiveInt = 9000
    #: How long the scheduler host may take to boot and listen.
    boot_timeout: Seconds = 600.0


class DaskWorkerSection(WorkerSection):
    worker_class: ClassVar[str] = "ramp_fleet.workers.dask:DaskWorker"
    #: An elastic cluster (dask_cluster) needs the elastic extra too, checked when it opens.
    extra: ClassVar[str | None] = "dask"

    worker_type: Literal["dask"] = "dask"
    #: Name or prefix of the environment on the Dask worker hosts; unset: the
    #: Dask worker's own environment.
    conda_env: Text | None = None
    #: ``tls://host:port`` (or ``tcp://`` on loopback, or with allow_insecure_dask);
    #: exactly one of dask_scheduler (a running cluster) and dask_cluster (an elastic one).
    dask_scheduler: Text | None = None
    dask_cluster: ElasticDaskSection | None = None
    dask_tls: DaskTLS | None = None
    allow_insecure_dask: Flag = False
    #: How long to keep trying to reach the scheduler (at start and after it restarts).
    dask_connect_timeout: Seconds = 30.0


class CustomWorkerSection(WorkerSection):
    """``package.module:Class`` or an entry-point name: extra keys pass through."""

    model_config = ConfigDict(extra="allow", frozen=True)


class DataSource(Section):
    kind: Literal["osf", "s3", "none"] = "none"
    #: OSF project id, or the s3:// URL to sync from.
    location: Text | None = None


class DaskClusterSection(Section):
    n_workers: PositiveInt = 2
    instance_type: Text = "t3.large"
    scheduler_instance_type: Text = "t3.medium"
    threads_per_worker: PositiveInt = 1
    scheduler_port: PositiveInt = 8786
    dashboard_port: PositiveInt = 8787
    #: Each worker host listens here (its nanny on the next port).
    worker_port: PositiveInt = 9000
    #: Who may open the (unauthenticated) dashboard; empty: only the scheduler itself,
    #: through an SSH tunnel.
    dashboard_cidrs: list[Cidr] = Field(default_factory=list)


class InfraSection(Section):
    """What the Pulumi program (infra/) needs beyond the worker keys."""

    region: Text | None = None
    #: Who may reach SSH and the Dask scheduler. Empty: nobody from outside.
    allowed_cidrs: list[Cidr] = Field(default_factory=list)
    #: AMI id or Image Builder image ARN; Ubuntu 22.04 LTS if unset.
    parent_image: Text | None = None
    build_instance_types: list[Text] = Field(default_factory=lambda: ["t3.large"])
    volume_size: PositiveInt = 30
    #: git URL of the kit; https://github.com/ramp-kits/<problem_name>.git if unset.
    kit_repository: Text | None = None
    data_source: DataSource = Field(default_factory=DataSource)
    gpu: Flag = False
    public_key_path: PathField | None = None
    subnet_id: Text | None = None
    vpc_id: Text | None = None
    #: A bucket created for the AMI build logs (CloudWatch only if unset).
    log_bucket: Text | None = None
    dask_cluster: DaskClusterSection | None = None
    tags: dict[str, Text] = Field(default_factory=dict)


STORE_BACKENDS = ("sqlite", "ramp-board")


class StoreSection(Section):
    """Where the event's state lives: our own SQLite file, or ramp-board's database too.

    With ``backend: ramp-board`` the submissions come from, and the results go
    to, the database named by the deployment config's ``sqlalchemy`` section,
    through ramp-database's functions run by ``ramp_board_python``; the
    SQLite store (``path``) still records runs, attempts and timings.
    """

    path: PathField | None = None
    backend: Literal["sqlite", "ramp-board"] = "sqlite"
    #: The interpreter of the environment where ramp-database is installed.
    ramp_board_python: PathField | None = None
    #: ramp-board's ``config.yml`` (flask + sqlalchemy); default ``<deployment_dir>/config.yml``.
    deployment_config: PathField | None = None
    #: Leaderboards are recomputed at most this often when many results arrive together.
    leaderboard_interval: Seconds = 10.0


#: The built-in worker types — the one list of them — and the section each reads.
WORKER_SECTIONS: dict[str, type[WorkerSection]] = {
    "conda": CondaWorkerSection,
    "aws": AWSWorkerSection,
    "dask": DaskWorkerSection,
}
BUILTIN_WORKER_TYPES = tuple(WORKER_SECTIONS)

#: The top-level sections, and the RAMP sections a ramp-board config may carry.
SECTIONS: dict[str, type[Section] | None] = {
    "ramp": RampSection,
    "worker": None,  # chosen by worker_type
    "dispatcher": DispatcherSection,
    "infra": InfraSection,
    "store": StoreSection,
}
#: What a ramp-board deployment config holds; an event config may carry them too.
IGNORED_SECTIONS = frozenset({"sqlalchemy", "flask"})


def known_keys(section: str, worker_type: str | None = None) -> list[str]:
    """The keys a section accepts, for "did you mean" and flat configs."""
    if section == "worker":
        model: type[Section] = WORKER_SECTIONS.get(worker_type or "", WorkerSection)
        return list(model.model_fields)
    model_or_none = SECTIONS[section]
    return list(model_or_none.model_fields) if model_or_none else []


def flat_key_sections() -> dict[str, str]:
    """Which section owns each key, for regrouping a config written flat."""
    owner: dict[str, str] = {}
    for section in ("ramp", "dispatcher"):
        owner.update(dict.fromkeys(known_keys(section), section))
    for worker_type in BUILTIN_WORKER_TYPES:
        owner.update(dict.fromkeys(known_keys("worker", worker_type), "worker"))
    return owner


__all__ = [
    "BUILTIN_WORKER_TYPES",
    "DIRECTORY_KEYS",
    "HUNGER_POLICIES",
    "STORE_BACKENDS",
    "WORKER_SECTIONS",
    "AWSWorkerSection",
    "CondaWorkerSection",
    "CustomWorkerSection",
    "DaskWorkerSection",
    "DispatcherSection",
    "ElasticDaskSection",
    "InfraSection",
    "IsolationSection",
    "Path",
    "RampSection",
    "StoreSection",
    "WorkerSection",
]
