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

from ramp_fleet.errors import RampFleetError


@click.group()
def dask() -> None:
    """Dask helpers (a local cluster for one big machine)."""


@dask.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--workers", "n_workers", type=click.IntRange(min=1), default=None,
              help="Single-slot Dask workers to start [default: the dispatcher's n_workers].")
@click.option("--tls", is_flag=True, help="Encrypt with throw-away certificates.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep logs and certificates here [default: a temporary folder, removed].")
def local(config: Path, n_workers: int | None, tls: bool, workdir: Path | None) -> None:
    """Start a Dask scheduler and single-slot workers on 127.0.0.1 until Ctrl-C.

    Prints the dask_scheduler address (and the dask_tls files) to put in the
    worker section of CONFIG.
    """
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
