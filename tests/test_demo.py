"""``make demo`` runs the bundled event isolated, or says why not and runs only that demo
unisolated — never by weakening the default for anyone else."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, needs_bwrap

VENV_BIN = Path(sys.executable).parent
TOOLS = ("sh", "dirname", "rm", "id")


def demo(tmp_path: Path, path: str) -> subprocess.CompletedProcess[str]:
    example = tmp_path / "iris"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns("events", ".demo-*"))
    return subprocess.run([str(example / "demo"), str(VENV_BIN)], capture_output=True, text=True,
                          env={"PATH": path, "HOME": os.environ.get("HOME", "/root")},
                          timeout=600, check=False)


@needs_bwrap
def test_the_demo_runs_isolated_and_says_so(tmp_path: Path) -> None:
    done = demo(tmp_path, os.environ["PATH"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("runs are isolated (bubblewrap ")
    assert "4 scored, 1 training errors" in done.stdout
    assert not (tmp_path / "iris" / ".demo-unisolated.yml").exists()


def test_where_no_sandbox_can_be_made_the_demo_says_why_and_runs_unisolated_alone(
    tmp_path: Path,
) -> None:
    tools = tmp_path / "bin"  # the shell's tools, but neither bwrap nor apt-get
    tools.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found is not None
        (tools / tool).symlink_to(found)
    done = demo(tmp_path, f"{tools}:{VENV_BIN}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("note: bubblewrap does not work here: no bwrap on PATH; install")
    assert lines[1].startswith("note: so this demo runs its own bundled submissions with "
                               "worker.isolation.mode: off (NOT isolated)")
    assert "4 scored, 1 training errors" in done.stdout
    assert "isolation: {mode: 'off'}" not in (tmp_path / "iris" / "config.yml").read_text()
    assert "runs are isolated" not in done.stdout


pytestmark = pytest.mark.timeout(600)
