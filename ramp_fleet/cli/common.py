"""What every subcommand shares: the CONFIG argument and how a config is loaded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ramp_fleet.config import EventConfig, load_event_config

F = TypeVar("F", bound=Callable[..., Any])
_DEPLOYMENT_DIR = "ramp_fleet.deployment_dir"


def _remember_deployment_dir(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    ctx.meta[_DEPLOYMENT_DIR] = value


def config_argument(command: F) -> F:
    """The event config argument, and ``--deployment-dir`` to say where its deployment is."""
    decorated: F = click.argument("config", type=click.Path(dir_okay=False, path_type=Path))(
        deployment_dir_option(command))
    return decorated


def deployment_dir_option(command: F) -> F:
    """``--deployment-dir``, kept for :func:`load`."""
    decorated: F = click.option(
        "--deployment-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
        expose_value=False, callback=_remember_deployment_dir,
        help="The ramp-board deployment folder [default: found from CONFIG's place, "
             "else ramp.deployment_dir, else CONFIG's folder].",
    )(command)
    return decorated


def load(config: Path | str, *, runtime_files: bool = True, check_env: bool = True) -> EventConfig:
    """Load the event config and show its warnings on stderr (errors are raised).

    Commands that only talk to AWS or read the store pass ``runtime_files=False``:
    they need none of the event's folders.
    """
    context = click.get_current_context(silent=True)
    deployment_dir = context.meta.get(_DEPLOYMENT_DIR) if context is not None else None
    event = load_event_config(config, runtime_files=runtime_files, check_env=check_env,
                              deployment_dir=deployment_dir)
    for warning in event.warnings:
        click.echo(f"warning: {warning}", err=True)
    return event
