"""``env create|update``: the event's environment, from the kit's own spec.

As RAMP's ``ramp setup create-conda-env``/``update-conda-env``: a conda env
named by ``conda_env`` from the kit's ``environment.yml`` (with mamba,
micromamba or conda), or — when ``conda_env`` is a path — a venv there from
the kit's ``requirements.txt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ramp_fleet import process
from ramp_fleet.cli.common import config_argument, load
from ramp_fleet.envs import find_conda_tool, looks_like_path
from ramp_fleet.errors import UsageError


@click.group()
def env() -> None:
    """Create or update the environment submissions are trained in."""


@env.command()
@config_argument
def create(config: Path) -> None:
    """Create the environment named by worker.conda_env."""
    _build(config, update=False)


@env.command()
@config_argument
def update(config: Path) -> None:
    """Update the environment named by worker.conda_env to the kit's spec."""
    _build(config, update=True)


def _build(config: Path, update: bool) -> None:
    event = load(config, check_env=False)
    conda_env = getattr(event.worker, "conda_env", None)
    kit_dir = event.dirs.kit.path
    if not conda_env:
        raise UsageError(f"{event.display}: worker.conda_env: is required to create an environment")
    if looks_like_path(conda_env):
        argv_list = _venv_commands(Path(conda_env).expanduser(), kit_dir, update)
    else:
        argv_list = [_conda_command(conda_env, kit_dir, update)]
    for argv in argv_list:
        click.echo("$ " + " ".join(argv))
        process.run(argv, check=True)
    click.echo(f"environment {conda_env!r} is ready")


def _conda_command(name: str, kit_dir: Path, update: bool) -> list[str]:
    spec = kit_dir / "environment.yml"
    if not spec.is_file():
        raise UsageError(f"{spec}: no such file (the kit must describe its conda environment)")
    tool = find_conda_tool()
    if tool is None:
        raise UsageError(
            "no conda, mamba or micromamba is installed; install one, or set worker.conda_env "
            "to a path to get a venv built from the kit's requirements.txt"
        )
    if Path(tool).name == "micromamba":
        verb = ["install"] if update else ["create"]
        return [tool, *verb, "--yes", "--name", name, "--file", str(spec)]
    verb = ["env", "update", "--prune"] if update else ["env", "create"]
    return [tool, *verb, "--yes", "--name", name, "--file", str(spec)]


def _venv_commands(prefix: Path, kit_dir: Path, update: bool) -> list[list[str]]:
    spec = kit_dir / "requirements.txt"
    if not spec.is_file():
        raise UsageError(f"{spec}: no such file (a venv is built from the kit's requirements.txt)")
    commands: list[list[str]] = []
    if not (prefix / "bin" / "python").exists():
        if update:
            raise UsageError(f"{prefix}: no environment to update; run 'ramp-fleet env create' first")
        commands.append([sys.executable, "-m", "venv", str(prefix)])
    elif not update:
        raise UsageError(f"{prefix}: an environment exists already; use 'ramp-fleet env update'")
    pip = str(prefix / "bin" / "pip")
    commands.append([pip, "install", "--upgrade", "-r", str(spec), "ramp-workflow"])
    return commands
