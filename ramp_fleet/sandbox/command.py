"""Where a run is decided and seen: isolated or not on this machine, and its view.

:func:`decide` applies ``mode`` to this machine's bwrap (``required``
without a working one raises :class:`SandboxUnavailable`); :func:`run_view`
is the sandbox a run gets. Both are the runner's (:mod:`ramp_fleet.sandbox.runner`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ramp_fleet.sandbox.bwrap import Bwrap, find
from ramp_fleet.sandbox.probe import BwrapCheck, check
from ramp_fleet.sandbox.programs import run_python
from ramp_fleet.sandbox.spec import RunSpec
from ramp_fleet.sandbox.view import View, env_prefix, environment, python_env_paths


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


def run_view(spec: RunSpec, program: str, command: Sequence[str], submission_dir: str,
             variables: Mapping[str, str]) -> View:
    """The view of a ``ramp-test`` run (``program``, started by ``command``): its Python
    environment, the kit, the data, its own folder (a copy of ``submission_dir``), where
    it starts."""
    env_paths = python_env_paths(program)
    python = run_python(program)
    if python is not None:
        env_paths += python_env_paths(python)
    hidden_labels = spec.isolation.labels == "hidden"
    data = [] if hidden_labels else [spec.data_dir]
    # Labels hidden: the data folder out of view even where the kit holds it.
    out_of_view = [_data_in(spec.data_dir, spec.kit_dir)] if hidden_labels else []
    return View(
        command=list(command),
        cwd=submission_dir,
        env=environment([os.path.join(env_prefix(program), "bin")], variables),
        read_only=[*env_paths, spec.kit_dir, *data, *spec.isolation.read_only_paths],
        hidden=[os.path.join(spec.kit_dir, "submissions"), *spec.hidden, *out_of_view],
        handed=os.path.dirname(spec.handed) if hidden_labels and spec.handed else None,
        network=spec.isolation.network,
        own_folder=submission_dir,
        staging=submission_dir,
        disk_bytes=spec.isolation.disk_mb << 20,
    )


def _data_in(data_dir: str, kit_dir: str) -> str:
    """What to hide of ``data_dir`` in the kit's view: all of it, or its ``data`` folder
    (RAMP's layout) when it is the kit's own folder or holds it."""
    data, kit = os.path.normpath(data_dir), os.path.normpath(kit_dir)
    if kit == data or kit.startswith(data.rstrip("/") + "/"):
        return os.path.join(data, "data")
    return data
