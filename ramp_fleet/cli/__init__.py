"""The ``ramp-fleet`` command line.

Subcommands live in one module per area and are imported only when run, so
``ramp-fleet --help`` stays instant (no boto3, dask or pandas at start-up).
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from ramp_fleet import __version__
from ramp_fleet.errors import RampFleetError

#: name -> ("module:attribute", one-line help shown by --help without importing)
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("ramp_fleet.cli.runtime:validate", "Check an event config and print it resolved."),
    "submit": ("ramp_fleet.cli.runtime:submit", "Add a submission folder to an event."),
    "dispatch": ("ramp_fleet.cli.runtime:dispatch", "Train and score every new submission."),
    "status": ("ramp_fleet.cli.runtime:status", "Show the state of every submission."),
    "leaderboard": ("ramp_fleet.cli.runtime:leaderboard", "Rank the scored submissions."),
    "report": ("ramp_fleet.cli.report:report", "Write the event's report page (or --json)."),
    "env": ("ramp_fleet.cli.env:env", "Create or update the event's conda environment."),
    "ami": ("ramp_fleet.cli.aws:ami", "Show which AMI the AWS worker would boot."),
    "reap": ("ramp_fleet.cli.aws:reap", "Terminate instances this event left behind."),
    "dask": ("ramp_fleet.cli.dask:dask", "Dask helpers: a local cluster, the elastic one on EC2."),
    "image": ("ramp_fleet.cli.image:image", "Render the AMI build's component document."),
    "build-ami": ("ramp_fleet.cli.image:build_ami", "Run the event's image pipeline."),
}


class LazyGroup(click.Group):
    """Imports a subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, _, attribute = COMMANDS[cmd_name][0].partition(":")
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The listing uses the summaries above: no subcommand module is imported.
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary) for name, (_, summary) in COMMANDS.items()])


#: Libraries whose debug output repeats request bodies — an instance's user-data
#: (its host key), SSM parameter values (TLS keys): never shown, even with -vv.
REPEAT_REQUESTS = ("botocore", "boto3", "urllib3", "s3transfer", "aiobotocore", "paramiko")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ramp-fleet")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Worker fleets for RAMP data-challenge events.

    Every command takes the event's config.yml; its keys: docs/config.md.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s")
    for name in REPEAT_REQUESTS:
        logging.getLogger(name).setLevel(max(level, logging.INFO))


def main(argv: list[str] | None = None) -> None:
    """Console entry point: a user mistake is one line on stderr, never a traceback."""
    try:
        code = cli.main(args=argv, prog_name="ramp-fleet", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
    except RampFleetError as exc:
        for line in str(exc).splitlines() or [exc.__class__.__name__]:
            click.echo(f"error: {line}", err=True)
        for note in getattr(exc, "__notes__", ()):  # what failed after it, while cleaning up
            click.echo(f"error: {note}", err=True)
        sys.exit(exc.exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)
