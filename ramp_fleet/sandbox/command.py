"""Where a run is decided and seen: isolated or not on this machine, and its view.

:func:`build` is what a backend calls where the run starts (the conda
worker, a Dask task, the remote script on an instance through the shipped
runner): it applies ``mode`` to this machine's bwrap (``required`` without a
working one raises :class:`SandboxUnavailable`) and returns the command line
of the runner (:mod:`ramp_fleet.sandbox.runner`), which runs the whole thing.
:func:`run_view` is the sandbox a run gets, for the runner.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ramp_fleet.sandbox.bwrap import Bwrap, find
from ramp_fleet.sandbox.probe import BwrapCheck, check
from ramp_fleet.sandbox.spec import SandboxSpec
from ramp_fleet.sandbox.view import View, env_prefix, environment, python_env_paths, shebang_interpreter


class SandboxUnavailable(Exception):
    """``mode: required`` and bubblewrap does not work on this machine."""


@dataclass(frozen=True)
class Decision:
    """Whether a run is isolated here, and if not, why (for its log)."""

    isolate: bool
    check: BwrapCheck | None = None
    note: str | None = None

    @property
    def bwrap(self) -> Bwrap:
        if self.check is None or self.check.bwrap is None:
            raise SandboxUnavailable("no bubblewrap was found for an isolated run")
        return self.check.bwrap


def decide(mode: str, checked: bool = False) -> Decision:
    """Apply ``mode`` to this machine; raises :class:`SandboxUnavailable` for ``required``."""
    if mode == "off":
        return Decision(False)
    result = BwrapCheck(find()) if checked else check()
    if result.works:
        return Decision(True, result)
    if mode == "required":
        raise SandboxUnavailable(result.refusal())
    return Decision(False, result, f"this run is NOT isolated: {result.describe()}")


@dataclass(frozen=True)
class Command:
    """The runner's command line for one run (its environment is the caller's)."""

    argv: list[str]
    isolated: bool
    #: Why the run is not isolated, for its log (``auto`` without bwrap).
    note: str | None = None


def build(spec: SandboxSpec, runner: Sequence[str]) -> Command:
    """The command that runs ``spec`` on this machine (``runner``: how to start the runner)."""
    spec = spec.resolved()
    decision = decide(spec.isolation.mode, spec.checked)
    ahead = replace(spec, checked=decision.isolate,
                    isolation=spec.isolation if decision.isolate or spec.isolation.mode == "off"
                    else replace(spec.isolation, mode="off"))
    return Command([*runner, ahead.to_json()], decision.isolate, decision.note)


def run_view(spec: SandboxSpec, program: str, command: Sequence[str]) -> View:
    """The view of a ``ramp-test`` run (``program``, started by ``command``): its Python
    environment, the kit, the data, its own folder (a copy of ``submission_dir``)."""
    env_paths = python_env_paths(program)
    python = run_python(program)
    if python is not None:
        env_paths += python_env_paths(python)
    return View(
        command=list(command),
        cwd=spec.cwd,
        env=environment([os.path.join(env_prefix(program), "bin")], spec.variables),
        read_only=[*env_paths, spec.kit_dir, spec.data_dir, *spec.isolation.read_only_paths],
        hidden=[os.path.join(spec.kit_dir, "submissions"), *spec.hidden],
        network=spec.isolation.network,
        own_folder=spec.submission_dir,
        staging=spec.submission_dir,
        disk_bytes=spec.isolation.disk_mb << 20,
    )


def locate(program: str) -> str:
    """``program`` as an absolute path (a bare name is looked up on ``PATH``)."""
    if os.sep in program:
        return os.path.abspath(program)
    found = shutil.which(program)
    if found is None:
        raise FileNotFoundError(f"no {program} on PATH ({os.environ.get('PATH', '')})")
    return os.path.abspath(found)


def run_python(program: str) -> str | None:
    """The Python that runs ``program`` (its ``#!`` interpreter, or its environment's)."""
    interpreter = shebang_interpreter(program)
    if interpreter is not None and "python" in os.path.basename(interpreter):
        return interpreter
    for name in ("python3", "python"):
        candidate = os.path.join(env_prefix(program), "bin", name)
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("python3", path="/usr/bin:/bin")
