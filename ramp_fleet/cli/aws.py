"""``ramp-fleet ami`` and ``ramp-fleet reap``: the AWS worker's image and leftovers."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ramp_fleet.cli.common import config_argument, load
from ramp_fleet.config import EventConfig
from ramp_fleet.errors import UsageError
from ramp_fleet.extras import require
from ramp_fleet.names import elastic_section

if TYPE_CHECKING:
    from ramp_fleet.aws.fleet import Fleet

RUNNERS_UP = 5


def _aws_event(config: Path) -> EventConfig:
    return _require_aws(load(config, runtime_files=False))


def _require_aws(event: EventConfig) -> EventConfig:
    if event.worker_type != "aws":
        raise UsageError(f"{event.display}: worker.worker_type: is {event.worker_type!r}; "
                         "this command is for worker_type: aws")
    return event


def _fleet(event: EventConfig) -> Fleet:
    require("aws", "worker_type: aws")
    from ramp_fleet.aws.fleet import Fleet  # boto3 and fabric only when the command runs

    return Fleet.for_event(event)


@click.command()
@config_argument
def ami(config: Path) -> None:
    """Show which AMI the AWS worker would boot, and the runners-up."""
    fleet = _fleet(_aws_event(config))
    choice = fleet.image(refresh=True)
    click.echo(f"look-up: {choice.description}")
    rows = [("chosen", choice.chosen)] + [("", image) for image in
                                         choice.runners_up[:RUNNERS_UP]]
    click.echo(f"{'':8}{'image id':24}{'version':14}{'created':26}name")
    for label, image in rows:
        click.echo(f"{label:8}{image.image_id:24}{image.version_text:14}{image.created:26}"
                   f"{image.name}")
    hidden = len(choice.runners_up) - RUNNERS_UP
    if hidden > 0:
        click.echo(f"... and {hidden} older image(s)")


@click.command()
@config_argument
@click.option("--dry-run", is_flag=True, help="List what would be terminated; change nothing.")
def reap(config: Path, dry_run: bool) -> None:
    """Terminate instances this event left behind (tagged for it, owned by no run).

    While a dispatcher serves the event its instances are its own: reap then
    only lists them (the dispatcher reaps by itself when it starts and stops).
    For a Dask event with worker.dask_cluster: the hosts of its elastic
    clusters, and their TLS keys in SSM.
    """
    from ramp_fleet.store import DispatcherLock

    event = load(config, runtime_files=False)
    if elastic_section(event) is not None:
        _reap_elastic(event, dry_run)
        return
    fleet = _fleet(_require_aws(event))
    from ramp_fleet.aws.instances import SLOT_TAG, SUBMISSION_TAG
    try:
        with DispatcherLock(event.store_path, event.event_name):
            found = fleet.reap(dry_run=dry_run)
    except UsageError as busy:
        click.echo(f"note: {busy}; listing only", err=True)
        found, dry_run = fleet.reap(dry_run=True), True
    if not found:
        click.echo(f"no instance of event {event.event_name!r} is left")
        return
    verb = "would terminate" if dry_run else "terminated"
    for item in found:
        click.echo(f"{verb} {item.instance_id} ({item.state}, submission "
                   f"{item.tag(SUBMISSION_TAG)}, slot {item.tag(SLOT_TAG)}, "
                   f"launched {item.launched})")


def _reap_elastic(event: EventConfig, dry_run: bool) -> None:
    require("elastic", "worker.dask_cluster (an elastic Dask cluster on EC2)")
    from ramp_fleet.dask.elastic import reap as reap_elastic
    from ramp_fleet.dask.elastic.plan import CLUSTER_TAG, ROLE_TAG
    from ramp_fleet.store import DispatcherLock

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(DispatcherLock(event.store_path, event.event_name))
        except UsageError as busy:  # its owner's cluster: look, do not touch
            click.echo(f"note: {busy}; listing only", err=True)
            dry_run = True
        found = reap_elastic(event, dry_run=dry_run)
    if not found:
        click.echo(f"no elastic Dask host of event {event.event_name!r} is left")
        return
    verb = "would terminate" if dry_run else "terminated"
    for host in found:
        click.echo(f"{verb} {host.instance_id} ({host.state}, Dask {host.tag(ROLE_TAG)} of "
                   f"cluster {host.tag(CLUSTER_TAG)}, launched {host.launched})")
