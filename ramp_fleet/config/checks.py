"""Checks that span several keys or look at the machine (files, modules).

Each returns messages of the form ``"<key>: <what is wrong>"``; the loader
prefixes the file name. Nothing here touches the network.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import stat
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from urllib.parse import urlsplit

from ramp_fleet.config.deployment import database_from_deployment
from ramp_fleet.config.event import EventConfig
from ramp_fleet.config.sections import (
    BUILTIN_WORKER_TYPES,
    AWSWorkerSection,
    CondaWorkerSection,
    CustomWorkerSection,
    DaskWorkerSection,
    InfraSection,
    StoreSection,
    WorkerSection,
)
from ramp_fleet.errors import ConfigError

ENTRY_POINT_GROUP = "ramp_fleet.workers"


def registered_worker_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def custom_worker_problem(worker_type: str) -> str | None:
    """Why ``worker_type`` names no usable worker class, or None if it does."""
    if worker_type in registered_worker_names():
        return None
    if ":" not in worker_type:
        valid = ", ".join([*BUILTIN_WORKER_TYPES, *registered_worker_names()])
        valid = ", ".join(dict.fromkeys(valid.split(", ")))
        return f"must be one of {valid}, or package.module:ClassName"
    module_name, _, class_name = worker_type.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import failure is the user's to fix
        return f"cannot import module '{module_name}' ({exc.__class__.__name__}: {exc})"
    if not isinstance(getattr(module, class_name, None), type):
        return f"module '{module_name}' has no class '{class_name}'"
    return None


def custom_worker_section(worker_type: str) -> type[WorkerSection]:
    """The section a custom worker class reads: its ``section_type`` when it builds on a
    backend, else the open custom section (extra keys pass through)."""
    declared = getattr(_custom_class(worker_type), "section_type", None)
    if isinstance(declared, type) and issubclass(declared, WorkerSection):
        return declared
    return CustomWorkerSection


def check_event(event: EventConfig, runtime_files: bool = True, check_env: bool = True) -> list[str]:
    """Cross-key checks; ``runtime_files`` also checks the folders and files a run reads,
    ``check_env`` the conda environment it runs in.

    The Pulumi program passes ``runtime_files=False``: the SSH key and the
    Dask TLS files are what its first ``pulumi up`` produces.
    """
    worker = event.worker
    problems: list[str] = []
    if runtime_files:
        problems.extend(_check_dirs(event))
    if isinstance(worker, CondaWorkerSection) and check_env:
        problems.extend(_check_conda_env(worker))
    if isinstance(worker, AWSWorkerSection):
        problems.extend(_check_aws(worker, runtime_files))
    if isinstance(worker, DaskWorkerSection):
        problems.extend(_check_dask(worker, runtime_files))
    problems.extend(_check_infra(event.infra, worker))
    problems.extend(_check_store(event.store, runtime_files))
    return problems


def local_dirs(event: EventConfig) -> tuple[str, ...]:
    """The folders the dispatcher's machine must have for this event's worker.

    conda reads the kit, the data and the submissions here; AWS and Dask read
    only the submissions here (the kit and the data are on the instances or
    the Dask hosts) — except a Dask scheduler on loopback, whose workers share
    this machine's folders. A custom worker class may set ``local_dirs``.
    """
    worker = event.worker
    if isinstance(worker, DaskWorkerSection) and worker.dask_scheduler is not None \
            and _is_loopback(_host(worker.dask_scheduler)):
        return ("kit_dir", "data_dir", "submissions_dir")
    if isinstance(worker, CustomWorkerSection) or worker.worker_type not in BUILTIN_WORKER_TYPES:
        declared = getattr(_custom_class(worker.worker_type), "local_dirs", None)
        if isinstance(declared, tuple | list):
            return tuple(str(key) for key in declared)
    return type(worker).local_dirs


def _check_dirs(event: EventConfig) -> Iterator[str]:
    origins = event.dirs.by_key()
    for key in local_dirs(event):
        origin = origins[key]
        where = f"'{origin.path}' (from {origin.source})"
        named = origin.key or f"ramp.{key}"
        if not origin.path.is_dir():
            yield f"{named}: no such folder: {where}"
        elif key == "kit_dir" and not (origin.path / "problem.py").is_file():
            yield f"{named}: no problem.py in {where}; is this the kit?"


def _check_conda_env(worker: CondaWorkerSection) -> Iterator[str]:
    from ramp_fleet.envs import EnvError, resolve_env

    try:
        resolve_env(worker.conda_env)
    except EnvError as exc:
        yield f"worker.{exc}"


def _custom_class(worker_type: str) -> type | None:
    if ":" in worker_type:
        module_name, _, class_name = worker_type.partition(":")
        found = getattr(importlib.import_module(module_name), class_name, None)
        return found if isinstance(found, type) else None
    for entry_point in entry_points(group=ENTRY_POINT_GROUP, name=worker_type):
        loaded = entry_point.load()
        return loaded if isinstance(loaded, type) else None
    return None


def _host(address: str) -> str:
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    return parts.hostname or ""


def _check_aws(worker: AWSWorkerSection, runtime_files: bool) -> Iterator[str]:
    if worker.ami_image_id is None and worker.ami_image_name is None:
        yield "worker.ami_image_name: is required (or pin an image with worker.ami_image_id)"
    if (worker.access_key_id is None) != (worker.secret_access_key is None):
        yield "worker.secret_access_key: access_key_id and secret_access_key go together"
    if worker.access_key_id is not None and worker.profile_name is not None:
        yield "worker.profile_name: give a profile or access keys, not both"
    if worker.key_path is not None and runtime_files:
        yield from _private_file("worker.key_path", worker.key_path)
    if worker.ssh_config_file is not None and not worker.ssh_config_file.is_file():
        yield f"worker.ssh_config_file: no such file, got '{worker.ssh_config_file}'"


def _check_store(store: StoreSection, runtime_files: bool) -> Iterator[str]:
    """ramp-board's interpreter and database settings, read but never echoed."""
    if store.backend != "ramp-board":
        return
    python = store.ramp_board_python
    if python is None:
        yield ("store.ramp_board_python: is required with store.backend ramp-board (the python "
               "of the environment where ramp-database is installed)")
    elif runtime_files and not python.is_file():
        yield f"store.ramp_board_python: no such file, got '{python}'"
    elif runtime_files and not os.access(python, os.X_OK):
        yield f"store.ramp_board_python: is not executable, got '{python}'"
    config = store.deployment_config
    if not runtime_files or config is None:
        return
    if not config.is_file():
        yield (f"store.deployment_config: no such file, got '{config}' (ramp-board's config.yml "
               "with the sqlalchemy section; default <deployment_dir>/config.yml)")
        return
    try:
        database_from_deployment(config)
    except ConfigError as exc:
        yield from (f"store.deployment_config: {problem}" for problem in exc.problems)


#: Instance families with an NVIDIA GPU.
GPU_FAMILIES = ("p", "g")


def _check_infra(infra: InfraSection, worker: WorkerSection) -> Iterator[str]:
    region = worker.region_name if isinstance(worker, AWSWorkerSection) else None
    if infra.region and region and infra.region != region:
        yield (f"infra.region: the AMI is built in {infra.region!r} but the AWS worker "
               f"looks for it in worker.region_name {region!r}")
    elastic = worker.dask_cluster if isinstance(worker, DaskWorkerSection) else None
    if elastic is not None:
        if infra.region and elastic.region_name and infra.region != elastic.region_name:
            yield (f"infra.region: the AMI is built in {infra.region!r} but the elastic Dask "
                   f"cluster boots it in worker.dask_cluster.region_name {elastic.region_name!r}")
        if infra.dask_cluster is not None:
            yield ("infra.dask_cluster: a static Dask cluster and worker.dask_cluster (an "
                   "elastic one) exclude each other; keep one")
        own_groups = elastic.security_group and elastic.scheduler_security_group
        if elastic.subnet_id is not None and infra.vpc_id is None and not own_groups:
            yield ("worker.dask_cluster.subnet_id: needs infra.vpc_id (the cluster's security "
                   "groups go in that VPC), or name your own security_group and "
                   "scheduler_security_group")
    if infra.public_key_path is not None and not infra.public_key_path.is_file():
        yield f"infra.public_key_path: no such file, got '{infra.public_key_path}'"
    if infra.subnet_id is not None and infra.vpc_id is None:
        yield "infra.vpc_id: is required with infra.subnet_id (the security groups go in that VPC)"
    source = infra.data_source
    if source.kind != "none" and not source.location:
        where = "the OSF project id" if source.kind == "osf" else "an s3://bucket/prefix URL"
        yield f"infra.data_source.location: is required for kind {source.kind} ({where})"
    if source.kind == "s3" and source.location and not source.location.startswith("s3://"):
        yield f"infra.data_source.location: must be an s3://bucket/prefix URL, got {source.location!r}"
    if infra.gpu:
        cpu_only = [t for t in infra.build_instance_types if not t.startswith(GPU_FAMILIES)]
        if cpu_only:
            yield ("infra.build_instance_types: a gpu image is built and tested on GPU "
                   f"instances (g4dn.xlarge...), got {', '.join(cpu_only)}")


def _private_file(key: str, path: Path) -> Iterator[str]:
    if not path.is_file():
        yield f"{key}: no such file, got '{path}'"
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        yield (f"{key}: must be readable by its owner only (chmod 600), "
               f"got mode {mode:04o} for '{path}'")


def _check_dask(worker: DaskWorkerSection, runtime_files: bool) -> Iterator[str]:
    if worker.dask_cluster is not None:
        yield from _check_elastic(worker)
        return
    address = worker.dask_scheduler
    if address is None:
        yield ("worker.dask_scheduler: is required (the address of a running cluster), "
               "or worker.dask_cluster for an elastic cluster on EC2")
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in {"tcp", "tls"} or not parts.hostname or port == -1:
        yield (f"worker.dask_scheduler: must be an address such as tls://scheduler:8786 "
               f"or tcp://127.0.0.1:8786, got {address!r}")
        return
    if parts.scheme == "tls" and worker.dask_tls is None:
        yield "worker.dask_tls: is required for a tls:// scheduler (ca_file, cert, key)"
    if parts.scheme == "tcp" and worker.dask_tls is not None:
        yield (f"worker.dask_scheduler: dask_tls is set, so the address must start with "
               f"tls://, got {address!r}")
    elif parts.scheme == "tcp" and not _is_loopback(parts.hostname) \
            and not worker.allow_insecure_dask:
        yield (f"worker.dask_scheduler: {address!r} is not on this machine and is not "
               "encrypted; use tls:// with worker.dask_tls, or set allow_insecure_dask: true")
    if worker.dask_tls is not None and runtime_files:
        for name in ("ca_file", "cert"):
            path = getattr(worker.dask_tls, name)
            if not path.is_file():
                yield f"worker.dask_tls.{name}: no such file, got '{path}'"
        yield from _private_file("worker.dask_tls.key", worker.dask_tls.key)


def _check_elastic(worker: DaskWorkerSection) -> Iterator[str]:
    cluster = worker.dask_cluster
    assert cluster is not None
    if worker.dask_scheduler is not None:
        yield ("worker.dask_cluster: give dask_scheduler (a running cluster) or dask_cluster "
               "(an elastic one), not both")
    if worker.dask_tls is not None:
        yield ("worker.dask_tls: the elastic cluster makes its own certificates; remove "
               "dask_tls (it is for dask_scheduler)")
    if cluster.min_workers > cluster.max_workers:
        yield (f"worker.dask_cluster.min_workers: must not exceed max_workers "
               f"({cluster.max_workers}), got {cluster.min_workers}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
