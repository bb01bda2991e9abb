"""What a run starts: ``ramp-test`` as found on the machine of the run, and its command line.

The runner builds the command itself, on the host, from the run's spec: only
there are the paths of the run folder, the Python environment and the kit
known. ``ramp-test`` is a path, or a name looked up in the run's environment
(``python_env``: a conda environment's name or prefix on that host), else on
``PATH`` (an instance's, after the organiser's ``remote_activate``).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping

from ramp_fleet.sandbox.view import env_prefix, shebang_interpreter

#: The thread-count variables of the numerical libraries a submission may use.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def ramp_test_argv(program: str, submission: str, kit_dir: str, data_dir: str,
                   submissions_dir: str, *, quick_test: bool = False) -> list[str]:
    """``ramp-test`` for one submission, saving its predictions as ramp-board does."""
    argv = [program, "--submission", submission, "--ramp-kit-dir", kit_dir,
            "--ramp-data-dir", data_dir, "--ramp-submission-dir", submissions_dir,
            "--save-output", "--ignore-warning"]
    if quick_test:
        argv.append("--quick-test")
    return argv


def run_variables(n_threads: int | None) -> dict[str, str]:
    """What a run sets: unbuffered output and, with ``n_threads``, the thread limits."""
    variables = {"PYTHONUNBUFFERED": "1"}
    if n_threads is not None:
        variables.update(dict.fromkeys(THREAD_VARIABLES, str(n_threads)))
    return variables


def locate(program: str, python_env: str | None = None,
           environ: Mapping[str, str] | None = None) -> str:
    """``program`` as an absolute path: a path as it is; a name in ``python_env`` (a conda
    environment's name or prefix), else on ``PATH``."""
    if os.sep in program:
        return os.path.abspath(os.path.expanduser(program))
    environ = os.environ if environ is None else environ
    if python_env:
        candidates = [os.path.join(prefix, "bin", program)
                      for prefix in env_prefixes(python_env, environ)]
    else:
        found = shutil.which(program, path=environ.get("PATH", ""))
        candidates = [found] if found else []
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    if not python_env:
        raise FileNotFoundError(f"no {program} on PATH ({environ.get('PATH', '')})")
    raise FileNotFoundError(f"no {program} for conda_env {python_env!r} on this host "
                            f"(looked at {', '.join(candidates)})")


def env_prefixes(name: str, environ: Mapping[str, str]) -> list[str]:
    """Where a conda environment ``name`` (or prefix) may be on this host, likeliest first."""
    if "/" in name or name.startswith("~"):
        return [os.path.expanduser(name)]
    roots: list[str] = []
    for variable in ("CONDA_ENVS_PATH", "CONDA_ENVS_DIRS"):
        roots.extend(p for p in environ.get(variable, "").split(os.pathsep) if p)
    for variable in ("CONDA_ROOT", "MAMBA_ROOT_PREFIX", "CONDA_PREFIX"):
        if environ.get(variable):
            roots.append(os.path.join(environ[variable], "envs"))
    prefix = sys.prefix
    in_envs = os.path.basename(os.path.dirname(prefix)) == "envs"
    roots.extend([os.path.join(prefix, "envs"), os.path.dirname(prefix)] if in_envs
                 else [os.path.join(prefix, "envs")])
    home = os.path.expanduser("~")
    for base in ("miniforge3", "miniconda3", "mambaforge", "anaconda3", "micromamba", ".conda"):
        roots.append(os.path.join(home, base, "envs"))
    roots.append("/opt/conda/envs")
    prefixes = [os.path.join(root, name) for root in dict.fromkeys(roots)]
    if name == "base":
        prefixes.insert(0, os.path.dirname(os.path.dirname(prefix)) if in_envs else prefix)
    return prefixes


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
