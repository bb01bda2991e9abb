"""How a submission is trained: the ``ramp-test`` command line and its environment.

Shared by every backend that runs ``ramp-test`` as a local process (the conda
worker on this machine, the Dask task on a worker host).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def ramp_test_argv(
    executable: str | Path,
    submission: str,
    kit_dir: Path,
    data_dir: Path,
    submissions_dir: Path,
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


def run_environment(
    n_threads: int | None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The child's environment: ours, with the thread limits of ``n_threads``."""
    env = dict(os.environ if base is None else base)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if n_threads is not None:
        env.update(dict.fromkeys(THREAD_VARIABLES, str(n_threads)))
    return env
