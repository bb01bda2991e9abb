"""``ramp-fleet image render`` and ``ramp-fleet build-ami``."""

from __future__ import annotations

from pathlib import Path

import click

from ramp_fleet.cli.common import config_argument, load
from ramp_fleet.extras import require
from ramp_fleet.image import build
from ramp_fleet.image.document import render_document
from ramp_fleet.names import event_region


@click.group()
def image() -> None:
    """The AMI build of an event."""


@image.command()
@config_argument
@click.option("--private-data/--public-data", default=False,
              help="Render the OSF credential look-up (credentials set in the stack's config).")
@click.option("--region", default=None, help="Region of the build (default: the config's).")
def render(config: Path, private_data: bool, region: str | None) -> None:
    """Print the AWSTOE component document that builds the event's AMI."""
    event = load(config, runtime_files=False)
    click.echo(render_document(event, event_region(event, region), private_data=private_data),
               nl=False)


@click.command("build-ami")
@config_argument
@click.option("--wait/--no-wait", default=True, help="Follow the build to its end (default).")
@click.option("--poll-interval", type=click.FloatRange(min=0), default=build.DEFAULT_POLL_INTERVAL,
              show_default=True, help="Seconds between two looks at the build.")
@click.option("--timeout", type=click.FloatRange(min=1), default=build.DEFAULT_TIMEOUT,
              show_default=True, help="Give up watching after this many seconds.")
@click.option("--test", "quick_test", is_flag=True,
              help="Then boot one instance of the new AMI (AWS worker) and run a quick ramp-test.")
def build_ami(config: Path, wait: bool, poll_interval: float, timeout: float,
              quick_test: bool) -> None:
    """Run the event's image pipeline (created by `pulumi up`) and report the new AMI."""
    event = load(config, runtime_files=False)
    if quick_test and not wait:
        raise click.UsageError("--test needs the build's AMI: drop --no-wait")
    require("aws", "ramp-fleet build-ami")  # Image Builder by boto3; --test SSHes an instance
    result = build.build_ami(event, build.imagebuilder_client(event), wait=wait,
                             echo=click.echo, poll_interval=poll_interval, timeout=timeout)
    if quick_test and result is not None and result.ami_id:
        from ramp_fleet.image.quick_test import quick_test as run_quick_test

        run_quick_test(event, result.ami_id, echo=click.echo)
