"""A sandboxed run's command line, built on the machine where it runs.

:func:`build` is what every backend calls, there: the conda worker in the
dispatcher, a Dask task on its worker host, the launcher on an AWS instance.
It decides (``mode``, and the bwrap check of *this* machine), then builds
either the bubblewrap command line itself, or — when the run needs more than
a command line (a memory limit, a peak to measure) — the launcher's
(:mod:`ramp_fleet.sandbox.launch`), which builds the same sandbox and stays
to watch it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ramp_fleet.sandbox.bwrap import Bwrap, find
from ramp_fleet.sandbox.limits import Limits, rlimit_prefix, running_as_root
from ramp_fleet.sandbox.probe import BwrapCheck, check
from ramp_fleet.sandbox.spec import SandboxSpec
from ramp_fleet.sandbox.view import (
    View,
    bwrap_argv,
    env_prefix,
    environment,
    python_env_paths,
    shebang_interpreter,
)


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
    """What to start: ``argv`` with exactly ``env`` (None: the caller's environment)."""

    argv: list[str]
    env: dict[str, str] | None
    isolated: bool
    #: Why the run is not isolated, for its log (``auto`` without bwrap).
    note: str | None = None


def needs_launcher(spec: SandboxSpec) -> bool:
    return spec.isolation.memory_mb is not None or spec.measure_peak


def build(spec: SandboxSpec, launcher: Sequence[str]) -> Command:
    """The command that runs ``spec`` on this machine (``launcher``: how to start the launcher)."""
    spec = spec.resolved()
    decision = decide(spec.isolation.mode, spec.checked)
    if needs_launcher(spec):
        ahead = replace(spec, checked=decision.isolate,
                        isolation=spec.isolation if decision.isolate or spec.isolation.mode == "off"
                        else replace(spec.isolation, mode="off"))
        return Command([*launcher, ahead.to_json()], None, decision.isolate, decision.note)
    program = locate(spec.command[0])
    command = [program, *spec.command[1:]]
    if not decision.isolate:
        return Command(command, None, False, decision.note)
    prefix = rlimit_prefix(Limits(max_processes=spec.isolation.max_processes),
                           python=run_python(program), peak_fd=None,
                           limit_processes=not running_as_root())
    view = run_view(spec, program, [*prefix, *command])
    return Command(bwrap_argv(view, decision.bwrap), dict(view.env), True)


def run_view(spec: SandboxSpec, program: str, command: Sequence[str]) -> View:
    """The view of a ``ramp-test`` run (``program``, started by ``command``): its Python
    environment, the kit, the data, its own folder."""
    env_paths = python_env_paths(program)
    python = run_python(program)
    if python is not None:
        env_paths += python_env_paths(python)
    return View(
        command=list(command),
        cwd=spec.cwd,
        env=environment([os.path.join(env_prefix(program), "bin")], spec.variables),
        read_only=[*env_paths, spec.kit_dir, spec.data_dir, *spec.isolation.read_only_paths],
        writable=[spec.submission_dir],
        hidden=[os.path.join(spec.kit_dir, "submissions"), *spec.hidden],
        network=spec.isolation.network,
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
