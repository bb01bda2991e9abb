"""Finding (and creating) the Python environment a submission is trained in.

``conda_env`` is an environment name, looked up through conda, mamba or
micromamba, or a path to any environment prefix (a conda env or a venv).
Unset, it is conda's base env — or, with no conda on the machine, the
environment ramp-fleet itself runs in.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ramp_fleet import process
from ramp_fleet.errors import CommandError, UsageError

CONDA_TOOLS = ("mamba", "micromamba", "conda")


@dataclass(frozen=True)
class PythonEnv:
    prefix: Path
    #: How it was found, for messages ("conda env 'ramp-iris'", "this interpreter").
    origin: str
    warning: str | None = None

    def executable(self, name: str) -> Path:
        return self.prefix / "bin" / name


class EnvError(UsageError):
    """The configured environment cannot be used."""


def find_conda_tool() -> str | None:
    """The conda-like tool to use: $CONDA_EXE first, then mamba, micromamba, conda."""
    conda_exe = os.environ.get("CONDA_EXE") or os.environ.get("MAMBA_EXE")
    if conda_exe and Path(conda_exe).is_file():
        return conda_exe
    for tool in CONDA_TOOLS:
        found = shutil.which(tool)
        if found:
            return found
    return None


def looks_like_path(conda_env: str) -> bool:
    return os.sep in conda_env or conda_env.startswith(("~", "."))


def resolve_env(conda_env: str | None, need: str = "ramp-test") -> PythonEnv:
    """Find the environment and check that it has the ``need`` executable."""
    env = _locate(conda_env)
    if not env.executable(need).exists():
        raise EnvError(
            f"conda_env: {env.origin} at {env.prefix} has no {need}; "
            "install ramp-workflow in it (ramp-fleet env update CONFIG)"
        )
    return env


def _locate(conda_env: str | None) -> PythonEnv:
    if conda_env is not None and looks_like_path(conda_env):
        prefix = Path(conda_env).expanduser().resolve()
        if not (prefix / "bin").is_dir():
            raise EnvError(f"conda_env: no environment at {prefix} (no bin/ folder)")
        return PythonEnv(prefix, f"environment {conda_env!r}")
    tool = find_conda_tool()
    if tool is None:
        if conda_env is not None:
            raise EnvError(
                f"conda_env: {conda_env!r} is an environment name but no conda, mamba or "
                "micromamba is installed; give the path of an environment prefix instead"
            )
        return PythonEnv(
            Path(sys.prefix), "this interpreter's environment",
            warning="no conda found and conda_env is unset: running submissions in "
                    f"ramp-fleet's own environment ({sys.prefix})",
        )
    envs = conda_envs(tool)
    name = conda_env or "base"
    if name not in envs:
        known = ", ".join(sorted(envs)) or "none"
        raise EnvError(f"conda_env: no conda environment named {name!r} (found: {known})")
    return PythonEnv(envs[name], f"conda env {name!r}")


def conda_envs(tool: str) -> dict[str, Path]:
    """Environment names to prefixes, as the conda-like ``tool`` lists them."""
    try:
        listed = json.loads(process.run([tool, "env", "list", "--json"], timeout=60).stdout)
        base = json.loads(process.run([tool, "info", "--json"], timeout=60).stdout)
    except (CommandError, json.JSONDecodeError) as exc:
        raise EnvError(f"conda_env: cannot list environments with {tool}: {exc}") from None
    base_prefix = base.get("root_prefix") or base.get("base environment") or ""
    envs: dict[str, Path] = {}
    for prefix in map(Path, listed.get("envs", [])):
        envs["base" if str(prefix) == base_prefix else prefix.name] = prefix
    return envs
