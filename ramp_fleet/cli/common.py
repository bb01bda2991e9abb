"""What every subcommand shares: the CONFIG argument and how a config is loaded."""

from __future__ import annotations

from pathlib import Path

import click

from ramp_fleet.config import EventConfig, load_event_config

config_argument = click.argument("config", type=click.Path(dir_okay=False, path_type=Path))


def load(config: Path | str) -> EventConfig:
    """Load the event config and show its warnings on stderr (errors are raised)."""
    event = load_event_config(config)
    for warning in event.warnings:
        click.echo(f"warning: {warning}", err=True)
    return event
