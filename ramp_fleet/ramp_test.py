"""How a submission is trained: the ``ramp-test`` command line and its environment.

The one place that builds them, for every backend: the conda worker runs
the command here, the Dask task on its worker host, the AWS worker on its
instance (rendered, quoted, into the remote script).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: The thread-count variables of the numerical libraries a submission may use.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


@dataclass(frozen=True)
class RunCommand:
    """A ``ramp-test`` run: its argv and the variables it needs set."""

    argv: list[str]
    #: Set for the run only (never in the dispatcher's own environment).
    env: dict[str, str] = field(default_factory=dict)

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The child's full environment: ``base`` (default: ours) with :attr:`env` applied."""
        return {**(os.environ if base is None else base), **self.env}


def ramp_test_command(
    executable: str | Path,
    submission: str,
    kit_dir: str | Path,
    data_dir: str | Path,
    submissions_dir: str | Path,
    *,
    n_threads: int | None = None,
    quick_test: bool = False,
) -> RunCommand:
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
    return RunCommand(argv, run_variables(n_threads))


def run_variables(n_threads: int | None) -> dict[str, str]:
    """What a run sets: unbuffered output and, with ``n_threads``, the thread limits."""
    variables = {"PYTHONUNBUFFERED": "1"}
    if n_threads is not None:
        variables.update(dict.fromkeys(THREAD_VARIABLES, str(n_threads)))
    return variables
