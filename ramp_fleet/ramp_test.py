"""How a submission is trained: the ``ramp-test`` command line, its environment, its runner.

The one place that builds them, for every backend: the conda worker runs
the command here, the Dask task on its worker host, the AWS worker on its
instance (rendered, quoted, into the remote script). With ``isolation``
the command is the runner's (:mod:`ramp_fleet.sandbox.runner`), which
runs ramp-test in the sandbox of :mod:`ramp_fleet.sandbox` with its limits
and deadline, collects ``training_output`` with its own code and reports;
the AWS worker sends the same :class:`~ramp_fleet.sandbox.spec.SandboxSpec`
to its instance (see :func:`sandbox_spec`), where the shipped runner reads it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ramp_fleet.errors import RampFleetError
from ramp_fleet.sandbox.command import SandboxUnavailable, build
from ramp_fleet.sandbox.spec import Isolation, ResultCaps, SandboxSpec

#: The thread-count variables of the numerical libraries a submission may use.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
#: How this machine starts the runner (ramp-fleet is installed here).
RUNNER = (sys.executable, "-m", "ramp_fleet.sandbox.runner")


class IsolationUnavailable(RampFleetError):
    """``worker.isolation.mode: required`` and bubblewrap does not work where the run is."""


@dataclass(frozen=True)
class RunCommand:
    """A ``ramp-test`` run: its argv and the variables it needs set."""

    argv: list[str]
    #: Set for the command (a bare ramp-test); the runner sets the run's own itself.
    env: dict[str, str] = field(default_factory=dict)
    #: Why a run meant to be isolated is not (``auto`` where bubblewrap does not work).
    note: str | None = None

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The command's environment: ``base`` (default: ours) with :attr:`env` applied.

        The runner gives an isolated run an environment of its own (an allow-list),
        never this one."""
        return {**(os.environ if base is None else base), **self.env}


def ramp_test_argv(
    executable: str | Path,
    submission: str,
    kit_dir: str | Path,
    data_dir: str | Path,
    submissions_dir: str | Path,
    *,
    quick_test: bool = False,
) -> list[str]:
    argv = [
        str(executable),
        "--submission", submission,
        "--ramp-kit-dir", str(kit_dir),
        "--ramp-data-dir", str(data_dir),
        "--ramp-submission-dir", str(submissions_dir),
        "--save-output",
        "--ignore-warning",
    ]
    if quick_test:
        argv.append("--quick-test")
    return argv


@dataclass(frozen=True)
class Collect:
    """Where the runner hands ``training_output`` back, and how much may come back."""

    #: A ``.tar.gz`` (``archive``) or a new folder (``folder``), written by the runner.
    path: str | Path
    kind: str = "archive"
    caps: ResultCaps = field(default_factory=ResultCaps)
    compresslevel: int = 6


def ramp_test_command(
    executable: str | Path,
    submission: str,
    kit_dir: str | Path,
    data_dir: str | Path,
    submissions_dir: str | Path,
    *,
    n_threads: int | None = None,
    quick_test: bool = False,
    isolation: Isolation | None = None,
    hidden: Sequence[str | Path] = (),
    report: str | Path | None = None,
    timeout: float | None = None,
    collect: Collect | None = None,
) -> RunCommand:
    """The run of ``submission`` on this machine, through the runner as ``isolation`` says
    (None: ramp-test as it is, for reference runs). ``hidden``: the event's folders to keep
    out of view; ``report``: where the runner writes its report; ``timeout``: the runner's
    deadline; ``collect``: where it hands ``training_output`` back.

    Raises :class:`IsolationUnavailable` for ``mode: required`` without a working bwrap.
    """
    argv = ramp_test_argv(executable, submission, kit_dir, data_dir, submissions_dir,
                          quick_test=quick_test)
    variables = run_variables(n_threads)
    if isolation is None:
        return RunCommand(argv, variables)
    spec = sandbox_spec(argv, submission, kit_dir, data_dir, submissions_dir,
                        cwd=Path(submissions_dir) / submission, variables=variables,
                        isolation=isolation, hidden=hidden, report=report, timeout=timeout,
                        collect=collect)
    try:
        built = build(spec, RUNNER)
    except SandboxUnavailable as exc:
        raise IsolationUnavailable(str(exc)) from None
    return RunCommand(built.argv, note=built.note)


def sandbox_spec(
    argv: Sequence[str],
    submission: str,
    kit_dir: str | Path,
    data_dir: str | Path,
    submissions_dir: str | Path,
    *,
    cwd: str | Path,
    variables: Mapping[str, str],
    isolation: Isolation,
    hidden: Sequence[str | Path] = (),
    report: str | Path | None = None,
    timeout: float | None = None,
    collect: Collect | None = None,
) -> SandboxSpec:
    """What the runner needs to know of a run; paths as on the machine of the run."""
    return SandboxSpec(
        command=tuple(argv), cwd=str(cwd), kit_dir=str(kit_dir), data_dir=str(data_dir),
        submission_dir=str(Path(submissions_dir) / submission), variables=dict(variables),
        hidden=tuple(str(path) for path in hidden), isolation=isolation,
        report=None if report is None else str(report), timeout=timeout,
        results=None if collect is None else str(collect.path),
        results_as="archive" if collect is None else collect.kind,
        result_caps=ResultCaps() if collect is None else collect.caps,
        compresslevel=6 if collect is None else collect.compresslevel,
    )


def run_variables(n_threads: int | None) -> dict[str, str]:
    """What a run sets: unbuffered output and, with ``n_threads``, the thread limits."""
    variables = {"PYTHONUNBUFFERED": "1"}
    if n_threads is not None:
        variables.update(dict.fromkeys(THREAD_VARIABLES, str(n_threads)))
    return variables
