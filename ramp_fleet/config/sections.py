"""The sections of an event config, as typed models with their defaults.

The layout is RAMP's (``ramp``, ``worker``, ``dispatcher``) plus two optional
sections of our own (``infra``, ``store``). Defaults live here and nowhere
else. Paths are still as written; :mod:`ramp_fleet.config.loader` resolves
them against the config file.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

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
    SecondsOrZero,
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

    #: The RAMP problem (the kit's name, as in ``ramp-kits/<problem_name>``).
    problem_name: Text
    #: The event, as ramp-board names it; tags, store and AWS names derive from it.
    event_name: Text
    #: The event's title on ramp-board's website.
    event_title: Text | None = None
    #: Whether ramp-board lists the event publicly (read, not used by the dispatcher).
    event_is_public: Flag = False
    #: Root of the ramp-board deployment layout (see the loader for its default).
    deployment_dir: PathField | None = None
    #: The kit (problem.py, submissions/); default ``<deployment_dir>/ramp-kits/<problem_name>``.
    kit_dir: PathField | None = None
    #: The data (data/ with the public and private sets); default
    #: ``<deployment_dir>/ramp-data/<problem_name>``.
    data_dir: PathField | None = None
    #: One folder per submission; default ``<deployment_dir>/events/<event_name>/submissions``.
    submissions_dir: PathField | None = None
    #: Where each scored run's training_output is published; default under the event folder.
    predictions_dir: PathField | None = None
    #: Where each run's log is published (``<logs_dir>/<submission>/log``); default under the event folder.
    logs_dir: PathField | None = None
    #: The starting kit's submission, in ``<kit_dir>/submissions``.
    sandbox_dir: Text = "starting_kit"
    #: Train the sandbox submission like any other (ramp-board does not).
    sandbox_as_submission: Flag = False


class DispatcherSection(Section):
    #: When the queue is empty: ``exit``; ``sleep`` (serve until stopped); unset: exit when nothing runs.
    hunger_policy: Literal["sleep", "exit"] | None = None
    #: Worker slots; a negative number means ``cpu_count + 1 + n`` as in RAMP.
    n_workers: NonZeroInt = 1
    #: Threads given to each run through OMP/MKL/OPENBLAS/NUMEXPR variables.
    n_threads: PositiveInt | None = None
    #: How often remote runs are polled; local runs are collected at once.
    time_between_collection: Seconds = 1.0
    #: How often ``hunger_policy: sleep`` looks for new submissions.
    sleep_interval: Seconds = 5.0
    #: Attempts per submission when the infrastructure fails (not the submission's own errors).
    max_attempts: PositiveInt = 3
    #: Seconds before the first retry; doubled at each attempt.
    retry_backoff: Seconds = 5.0
    #: The longest wait between two attempts.
    retry_backoff_max: Seconds = 300.0
    #: Which waiting submission a free slot takes: ``fair`` (the team with the fewest runs
    #: in flight and recently done, then its oldest), ``fifo`` (the oldest, as ramp-engine).
    queue: Literal["fair", "fifo"] = "fair"
    #: ``fair``: how long a team's finished runs count against it.
    fair_window: Seconds = 3600.0
    #: ``fair``: a submission waiting this long goes first, whatever its team has run.
    max_wait: Seconds = 3600.0
    #: On slots shared with other events: this event's weight (its ``n_workers`` its cap).
    share: PositiveNumber = 1.0
    #: Serve Prometheus metrics on this port while dispatching; unset: no server.
    metrics_port: Port | None = None
    #: Where the metrics server listens: loopback unless the organiser opens it.
    metrics_host: Text = "127.0.0.1"


class ResultLimits(Section):
    """What a run may hand back; past these, its results are refused (checking_error)."""

    #: Bytes a run's training_output may hold in all.
    max_bytes: ByteSize = 1 << 30
    #: Files and folders a run's training_output may hold.
    max_files: PositiveInt = 10_000
    #: Bytes of the largest file in a run's training_output.
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
    #: ``hidden``: the run trains and predicts on what the trusted scorer hands it, never
    #: the test labels; ``visible``: ramp-test runs with the data folder in view (RAMP's
    #: way). Unset: hidden where the sandbox is required, else visible.
    labels: Literal["visible", "hidden"] | None = None

    @model_validator(mode="after")
    def _hidden_needs_the_sandbox(self) -> IsolationSection:
        if self.labels == "hidden" and self.mode != "required":
            raise ValueError("labels: hidden needs mode: required (only the sandbox keeps "
                             "the data folder out of a run's view)")
        return self

    @property
    def hides_labels(self) -> bool:
        """Runs never see the test labels (``labels``, or its default)."""
        return self.labels == "hidden" or (self.labels is None and self.mode == "required")

    def plain(self) -> Isolation:
        """The section as the runner takes it (plain values, sent to the hosts of the runs)."""
        return Isolation(mode=self.mode, network=self.network, memory_mb=self.memory_mb,
                         max_processes=self.max_processes, disk_mb=self.disk_mb,
                         read_only_paths=tuple(self.read_only_paths),
                         labels="hidden" if self.hides_labels else "visible")


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

    #: ``conda``, ``aws``, ``dask``, ``package.module:Class`` or an entry-point name.
    worker_type: Text
    #: The kit, as the worker sees it (default: ``ramp.kit_dir``).
    kit_dir: PathField | None = None
    #: The data, as the worker sees it (default: ``ramp.data_dir``).
    data_dir: PathField | None = None
    #: The submissions (default: ``ramp.submissions_dir``).
    submissions_dir: PathField | None = None
    #: Where run logs are published (default: ``ramp.logs_dir``).
    logs_dir: PathField | None = None
    #: Where predictions are published (default: ``ramp.predictions_dir``).
    predictions_dir: PathField | None = None
    #: Seconds a run may take; past it the whole run is killed and recorded with return code 124.
    timeout: Seconds = 7200.0
    #: What a run may hand back (the table below).
    result_limits: ResultLimits = Field(default_factory=ResultLimits)
    #: The sandbox every run goes through (the table below).
    isolation: IsolationSection = Field(default_factory=IsolationSection)
    #: USD per instance-hour, for the report's cost estimate when the AWS Price
    #: List API does not answer (and for any machine it does not price).
    hourly_price: PositiveNumber | None = None


class CondaWorkerSection(WorkerSection):
    local_dirs: ClassVar[tuple[str, ...]] = ("kit_dir", "data_dir", "submissions_dir")
    worker_class: ClassVar[str] = "ramp_fleet.workers.conda:CondaEnvWorker"

    worker_type: Literal["conda"] = "conda"
    #: Name or prefix of the conda environment runs use; unset: ramp-fleet's own environment.
    conda_env: Text | None = None


class AWSWorkerSection(WorkerSection):
    worker_class: ClassVar[str] = "ramp_fleet.workers.aws:AWSWorker"
    extra: ClassVar[str | None] = "aws"

    worker_type: Literal["aws"] = "aws"
    #: AWS access key; unset: boto3's default credential chain (preferred).
    access_key_id: SecretStr | None = None
    #: Its secret (never logged); unset: boto3's default chain.
    secret_access_key: SecretStr | None = None
    #: A profile of ``~/.aws/config`` to use.
    profile_name: Text | None = None
    #: The region; unset: the profile's or the environment's.
    region_name: Text | None = None
    #: Base name of the event AMI: its newest version is booted (default ``ramp-<event_name>``).
    ami_image_name: Text | None = None
    #: A pinned AMI id instead of the newest version of ``ami_image_name``.
    ami_image_id: Text | None = None
    #: Accounts whose AMIs may be booted.
    ami_owners: list[Text] = Field(default_factory=lambda: ["self"])
    #: The user to log in as on the instances.
    ami_user_name: Text = "ubuntu"
    #: EC2 instance type of each run.
    instance_type: Text = "t3.medium"
    #: Run on spot instances (an interrupted run is retried).
    use_spot_instance: Flag = False
    #: EC2 key pair of the instances (default ``ramp-<event_name>``).
    key_name: Text | None = None
    #: Security group of the instances, name or ``sg-`` id (default ``ramp-<event_name>``).
    security_group: Text | None = None
    #: Subnet to launch in; unset: the default VPC's.
    subnet_id: Text | None = None
    #: The private key of ``key_name`` (mode 600 or 400).
    key_path: PathField | None = None
    #: An ssh_config whose Host rules (HostName, Port, User, ProxyJump...) are applied.
    ssh_config_file: PathField | None = None
    #: The kit and data folder baked into the AMI.
    remote_ramp_kit_folder: Text = "~/ramp-kit"
    #: Shell line that puts ramp-test on PATH on the instance.
    remote_activate: Text = ". ~/.profile"
    #: Kept for the RAMP guide's configs: every run's peak memory is measured now.
    memory_profiling: Flag = False
    #: Keep an instance after its run for the next one of the event.
    reuse_instances: Flag = False
    #: Seconds an idle reused instance is kept before it is terminated.
    instance_idle_timeout: Seconds = 300.0
    #: Seconds between look-ups of the newest AMI version while dispatching.
    ami_refresh_interval: Seconds = 300.0
    #: Seconds to wait for a new instance to answer SSH.
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

    #: Where the hosts are launched: ``ec2``.
    provider: Literal["ec2"]
    #: Worker hosts at most (one submission each at a time).
    max_workers: PositiveInt
    #: Worker hosts kept even when the queue is empty.
    min_workers: NonNegativeInt = 0
    #: Worker hosts (one single-thread Dask worker each: one submission at a time).
    instance_type: Text = "t3.large"
    #: Instance type of the scheduler host.
    scheduler_instance_type: Text = "t3.medium"
    #: A worker idle this long is retired (and its instance terminated), down to min_workers.
    idle_timeout: Seconds = 300.0
    #: The workers' and the scheduler's security groups (names or sg- ids).
    security_group: Text | None = None
    #: The scheduler's security group, name or ``sg-`` id.
    scheduler_security_group: Text | None = None
    #: Subnet of the hosts; unset: the default VPC's.
    subnet_id: Text | None = None
    #: The region; unset: the profile's or the environment's.
    region_name: Text | None = None
    #: A profile of ``~/.aws/config`` to use.
    profile_name: Text | None = None
    #: Base name of the event AMI (newest version wins), or a pinned image id.
    ami_image_name: Text | None = None
    #: A pinned AMI id instead of the newest version of ``ami_image_name``.
    ami_image_id: Text | None = None
    #: Accounts whose AMIs may be booted.
    ami_owners: list[Text] = Field(default_factory=lambda: ["self"])
    #: The hosts' instance profile: reads the cluster's TLS host key from SSM.
    instance_profile: Text | None = None
    #: Only for looking into a host with SSH; the hosts need no key.
    key_name: Text | None = None
    #: Run worker hosts on spot instances.
    use_spot_instance: Flag = False
    #: Reach the scheduler at its private address (a dispatcher inside the VPC).
    use_private_ip: Flag = False
    #: The scheduler's port (TLS).
    scheduler_port: PositiveInt = 8786
    #: The dashboard's port, on the scheduler's loopback.
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
    #: An elastic cluster on EC2 that the dispatcher opens and closes (the table below).
    dask_cluster: ElasticDaskSection | None = None
    #: The client's TLS files: ``ca_file``, ``cert``, ``key``.
    dask_tls: DaskTLS | None = None
    #: Accept a ``tcp://`` scheduler off loopback (no TLS): anyone on the network can run code.
    allow_insecure_dask: Flag = False
    #: How long to keep trying to reach the scheduler (at start and after it restarts).
    dask_connect_timeout: Seconds = 30.0


class CustomWorkerSection(WorkerSection):
    """``package.module:Class`` or an entry-point name: extra keys pass through."""

    model_config = ConfigDict(extra="allow", frozen=True)


class DataSource(Section):
    #: ``osf``, ``s3`` or ``none`` (the data is in the kit repository).
    kind: Literal["osf", "s3", "none"] = "none"
    #: OSF project id, or the s3:// URL to sync from.
    location: Text | None = None


class DaskClusterSection(Section):
    #: Worker hosts.
    n_workers: PositiveInt = 2
    #: Instance type of the worker hosts.
    instance_type: Text = "t3.large"
    #: Instance type of the scheduler host.
    scheduler_instance_type: Text = "t3.medium"
    #: Threads of each Dask worker.
    threads_per_worker: PositiveInt = 1
    #: The scheduler's port (TLS).
    scheduler_port: PositiveInt = 8786
    #: The dashboard's port, on the scheduler's loopback unless dashboard_cidrs opens it.
    dashboard_port: PositiveInt = 8787
    #: Each worker host listens here (its nanny on the next port).
    worker_port: PositiveInt = 9000
    #: Who may open the (unauthenticated) dashboard; empty: only the scheduler itself,
    #: through an SSH tunnel.
    dashboard_cidrs: list[Cidr] = Field(default_factory=list)


class InfraSection(Section):
    """What the Pulumi program (infra/) needs beyond the worker keys."""

    #: Region of the stack; unset: the worker's or the environment's.
    region: Text | None = None
    #: Who may reach SSH and the Dask scheduler. Empty: nobody from outside.
    allowed_cidrs: list[Cidr] = Field(default_factory=list)
    #: AMI id or Image Builder image ARN; Ubuntu 22.04 LTS if unset.
    parent_image: Text | None = None
    #: Instance types Image Builder may build the AMI on.
    build_instance_types: list[Text] = Field(default_factory=lambda: ["t3.large"])
    #: GiB of the AMI's root volume.
    volume_size: PositiveInt = 30
    #: git URL of the kit; https://github.com/ramp-kits/<problem_name>.git if unset.
    kit_repository: Text | None = None
    #: Where the build fetches the data: ``kind`` (osf, s3, none) and ``location``.
    data_source: DataSource = Field(default_factory=DataSource)
    #: Build the ``gpu`` flavour (NVIDIA driver).
    gpu: Flag = False
    #: Public key imported as the key pair; unset: ``<worker.key_path>.pub`` if it
    #: exists, else one is generated.
    public_key_path: PathField | None = None
    #: Subnet of the build instances and Dask hosts (needs ``vpc_id``).
    subnet_id: Text | None = None
    #: VPC of the security groups; unset: the default VPC.
    vpc_id: Text | None = None
    #: A bucket created for the AMI build logs (CloudWatch only if unset).
    log_bucket: Text | None = None
    #: A static Dask cluster on EC2 created with the stack (the table below).
    dask_cluster: DaskClusterSection | None = None
    #: Extra tags on every resource.
    tags: dict[str, Text] = Field(default_factory=dict)


STORE_BACKENDS = ("sqlite", "ramp-board")


class StoreSection(Section):
    """Where the event's state lives: our own SQLite file, or ramp-board's database too.

    With ``backend: ramp-board`` the submissions come from, and the results go
    to, the database named by the deployment config's ``sqlalchemy`` section,
    through ramp-database's functions run by ``ramp_board_python``; the
    SQLite store (``path``) still records runs, attempts and timings.
    """

    #: The event's SQLite store; default ``<event folder>/ramp-fleet.sqlite``.
    path: PathField | None = None
    #: ``sqlite``: submissions from the folder; ``ramp-board``: from ramp-board's database, results sent back.
    backend: Literal["sqlite", "ramp-board"] = "sqlite"
    #: The interpreter of the environment where ramp-database is installed.
    ramp_board_python: PathField | None = None
    #: ramp-board's ``config.yml`` (flask + sqlalchemy); default ``<deployment_dir>/config.yml``.
    deployment_config: PathField | None = None
    #: Least time between two leaderboard refreshes; 0: a refresh starts as soon as a result
    #: lands (one at a time; results that land during one are all in the next, which waits
    #: twice as long as the last refresh took: in a burst, refreshing is a third of the work).
    leaderboard_interval: SecondsOrZero = 0.0


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
