"""`ramp-fleet env create|update`: clear errors when it cannot build anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import EventFactory


def env_cli(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ)
    if path is not None:
        environ["PATH"] = path
        environ.pop("CONDA_EXE", None)
        environ.pop("MAMBA_EXE", None)
    return subprocess.run([sys.executable, "-m", "ramp_fleet", "env", *args],
                          capture_output=True, text=True, timeout=60, env=environ)


def test_without_conda_env_it_says_which_key_is_missing(make_event: EventFactory) -> None:
    done = env_cli("create", str(make_event()))
    assert done.returncode == 2
    assert "worker.conda_env: is required" in done.stderr


def test_a_named_env_without_any_conda_is_explained(make_event: EventFactory, tmp_path: Path) -> None:
    config = make_event(worker={"conda_env": "ramp-iris"})
    (config.parent / "ramp-kits" / "iris" / "environment.yml").write_text("name: ramp-iris\n")
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    done = env_cli("create", str(config), path=str(empty_bin))
    assert done.returncode == 2
    assert "no conda, mamba or micromamba is installed" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_venv_needs_the_kits_requirements(make_event: EventFactory, tmp_path: Path) -> None:
    config = make_event(worker={"conda_env": str(tmp_path / "venv")})
    done = env_cli("create", str(config))
    assert done.returncode == 2
    assert "requirements.txt: no such file" in done.stderr
    assert not (tmp_path / "venv").exists()


def test_update_of_a_missing_venv_says_create_first(make_event: EventFactory, tmp_path: Path) -> None:
    config = make_event(worker={"conda_env": str(tmp_path / "venv")})
    (config.parent / "ramp-kits" / "iris" / "requirements.txt").write_text("scikit-learn\n")
    done = env_cli("update", str(config))
    assert done.returncode == 2
    assert "run 'ramp-fleet env create' first" in done.stderr
