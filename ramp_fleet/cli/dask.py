"""``ramp-fleet dask``: helpers for the Dask worker."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click
import yaml

from ramp_fleet.cli.common import config_argument, load
from ramp_fleet.errors import RampFleetError, UsageError
from ramp_fleet.extras import require
from ramp_fleet.names import elastic_section


@click.group()
def dask() -> None:
    """Dask helpers (a local cluster for one big machine, the event's elastic cluster)."""


@dask.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--workers", "n_workers", type=click.IntRange(min=1), default=None,
              help="Single-slot Dask workers to start [default: the dispatcher's n_workers].")
@click.option("--tls/--plaintext", default=True, show_default=True,
              help="Mutual TLS with certificates made for this run (plaintext lets any local "
                   "user run code in the workers).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep logs and certificates here [default: a temporary folder, removed].")
def local(config: Path, n_workers: int | None, tls: bool, workdir: Path | None) -> None:
    """Start a Dask scheduler and single-slot workers on 127.0.0.1 until Ctrl-C.

    Prints the dask_scheduler address (and the dask_tls files) to put in the
    worker section of CONFIG.
    """
    require("dask", "ramp-fleet dask local")
    from ramp_fleet.dask.local import LocalDaskCluster

    n_workers = n_workers or _configured_slots(config)
    cluster = LocalDaskCluster(n_workers, tls=tls, workdir=workdir)
    for signum in (signal.SIGINT, signal.SIGTERM):  # even if started with SIGINT ignored
        signal.signal(signum, _interrupt)
    click.echo(f"starting a Dask scheduler and {n_workers} single-slot worker(s)...", err=True)
    with cluster:
        click.echo(_snippet(cluster.worker_config(), n_workers, config))
        click.echo(f"logs: {cluster.workdir}\nPress Ctrl-C to stop.", err=True)
        sys.stdout.flush()
        try:
            _watch(cluster)
        except KeyboardInterrupt:
            click.echo("stopping the Dask cluster...", err=True)
    click.echo("stopped", err=True)


@dask.command()
@config_argument
@click.option("--workers", "n_workers", type=click.IntRange(min=0), default=None,
              help="Keep this many workers [default: scale with the load between the "
                   "config's min_workers and max_workers].")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the client's TLS files here and keep them [default: in the event "
                   "folder, removed when the cluster stops].")
def ec2(config: Path, n_workers: int | None, workdir: Path | None) -> None:
    """Start the event's elastic Dask cluster on EC2 (worker.dask_cluster) until Ctrl-C.

    The same cluster the dispatcher opens, started by hand to look at it first:
    prints the scheduler's address and the client's TLS files. Ctrl-C (or
    SIGTERM) retires the workers and terminates every instance. Holds the
    event's dispatcher lock meanwhile: the event has one cluster owner.
    """
    from ramp_fleet.store import DispatcherLock

    event = load(config, runtime_files=False)
    settings = elastic_section(event)
    if settings is None:
        raise UsageError(f"{event.display}: worker.dask_cluster: is not set; this command "
                         "starts an event's elastic Dask cluster")
    require("elastic", "worker.dask_cluster (an elastic Dask cluster on EC2)")
    from ramp_fleet.dask.elastic import ElasticCluster

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    with DispatcherLock(event.store_path, event.event_name):
        click.echo("starting the elastic Dask cluster (the scheduler's host boots first)...",
                   err=True)
        with ElasticCluster.open(settings, event, workdir=workdir, workers=n_workers) as cluster:
            click.echo(_elastic_snippet(cluster, n_workers, settings.min_workers,
                                        settings.max_workers))
            click.echo("Press Ctrl-C to stop: every instance of the cluster is terminated.",
                       err=True)
            sys.stdout.flush()
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                click.echo("stopping the elastic Dask cluster...", err=True)
    click.echo("stopped", err=True)


def _elastic_snippet(cluster: Any, n_workers: int | None, least: int, most: int) -> str:
    image = cluster.image.chosen
    scaling = (f"{n_workers} worker(s)" if n_workers is not None
               else f"{least} to {most} workers, with the load")
    keys = {"worker": {"worker_type": "dask", "dask_scheduler": cluster.address,
                       "dask_tls": cluster.tls.as_config()}}
    body = yaml.safe_dump(keys, sort_keys=False).rstrip()
    return (f"# elastic Dask cluster {cluster.cluster_id}: {scaling}, image {image.image_id} "
            f"({image.name})\n# connect with these keys (or distributed.Client(address, "
            f"security=Security(tls_ca_file=..., tls_client_cert=..., tls_client_key=...))):\n"
            f"{body}")


def _watch(cluster: Any) -> None:
    while True:
        time.sleep(1)
        if cluster.scheduler is None or cluster.scheduler.poll() is not None:
            raise RampFleetError(f"the Dask scheduler stopped; see {cluster.workdir}")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _configured_slots(config: Path) -> int:
    """The dispatcher's ``n_workers`` (1 if unset or negative), read leniently."""
    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        n_workers = int((data.get("dispatcher") or {}).get("n_workers", 1))
    except (OSError, yaml.YAMLError, AttributeError, TypeError, ValueError):
        return 1
    return max(1, n_workers)


def _snippet(worker_config: dict[str, Any], n_workers: int, config: Path) -> str:
    keys = {"worker": {"worker_type": "dask", **worker_config}}
    body = yaml.safe_dump(keys, sort_keys=False).rstrip()
    return (f"# Dask scheduler {worker_config['dask_scheduler']} with {n_workers} "
            f"single-slot worker(s)\n# worker keys for {config}:\n{body}")
