"""What a run asks for and what the runner reports; the runner's refusals; the shipped zipapp."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path

import pytest

from ramp_fleet.sandbox.runner import REFUSED
from ramp_fleet.sandbox.spec import Isolation, Report, SandboxSpec, Usage
from ramp_fleet.sandbox.zipapp import PACKAGE, sandbox_pyz

SYSTEM_PYTHON = Path("/usr/bin/python3")


def spec(tmp_path: Path, command: Sequence[str], **isolation: object) -> SandboxSpec:
    return SandboxSpec(command=command, cwd=str(tmp_path), kit_dir=".", data_dir="data",
                       submission_dir="submissions/s", variables={"PYTHONUNBUFFERED": "1"},
                       hidden=(".ramp-fleet",), isolation=Isolation(**isolation),  # type: ignore[arg-type]
                       report=".ramp-fleet/report.json")


def test_a_spec_travels_as_json_and_resolves_where_it_runs(tmp_path: Path) -> None:
    sent = spec(tmp_path, ("ramp-test", "--submission", "s"), memory_mb=512,
                read_only_paths=("~/extra",))
    received = SandboxSpec.from_json(sent.to_json())
    assert received == sent
    here = received.resolved()
    assert (here.kit_dir, here.data_dir, here.submission_dir) == (
        str(tmp_path), str(tmp_path / "data"), str(tmp_path / "submissions" / "s"))
    assert here.hidden == (str(tmp_path / ".ramp-fleet"),)
    assert here.isolation.read_only_paths == (os.path.expanduser("~/extra"),)


@pytest.mark.parametrize("data", [b"", b"[]", b"{", b'{"isolated": "yes", "refused": 7}',
                                  json.dumps({"note": "x" * 10_000, "usage": "big"}).encode()])
def test_a_report_from_elsewhere_is_read_defensively(data: bytes) -> None:
    report = Report.parse(data)
    assert report is None or (report.isolated is False and report.refused is None
                              and report.usage is None and len(report.note or "") <= 2000)


def test_a_report_is_written_whole_and_read_back(tmp_path: Path) -> None:
    written = Report(True, usage=Usage(512, "cgroup v1", 120.5, "cgroup v1"), returncode=0,
                     has_results=True, duration=1.5)
    written.write(str(tmp_path / "r.json"))
    assert Report.read(tmp_path / "r.json") == written
    (tmp_path / "link").symlink_to(tmp_path / "r.json")
    assert Report.read(tmp_path / "link") is None, "never through a link"


def launch(python: str, argv: list[str], path: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, *argv], capture_output=True, text=True, cwd=cwd, timeout=120,
                          env={"PATH": path}, check=False)


def test_the_runner_refuses_a_required_run_where_bwrap_does_not_work(tmp_path: Path) -> None:
    (tmp_path / ".ramp-fleet").mkdir()
    sent = spec(tmp_path, ["true"], mode="required")
    done = launch(sys.executable, ["-m", "ramp_fleet.sandbox.runner", sent.to_json()],
                  "/nonexistent", tmp_path)
    assert done.returncode == REFUSED
    assert done.stderr.startswith("ramp-fleet: worker.isolation.mode is required, but bubblewrap "
                                  "does not work here: no bwrap on PATH; install bubblewrap")
    report = Report.read(tmp_path / ".ramp-fleet" / "report.json")
    assert report is not None and report.refused is not None and not report.isolated


def test_the_runner_runs_an_auto_run_without_bwrap_and_says_so(tmp_path: Path) -> None:
    (tmp_path / ".ramp-fleet").mkdir()
    sent = spec(tmp_path, ["/bin/sh", "-c", "echo ran; exit 3"], mode="auto", memory_mb=256)
    done = launch(sys.executable, ["-m", "ramp_fleet.sandbox.runner", sent.to_json()],
                  "/nonexistent", tmp_path)
    assert (done.returncode, done.stdout) == (3, "ran\n")
    assert done.stderr.startswith("ramp-fleet: this run is NOT isolated: bubblewrap does not "
                                  "work here: no bwrap on PATH (host ")
    report = Report.read(tmp_path / ".ramp-fleet" / "report.json")
    assert report is not None and not report.isolated and report.note is not None
    assert report.usage is not None and report.usage.memory_limit_mb == 256


@pytest.mark.parametrize("module", sorted(PACKAGE.glob("*.py")), ids=lambda path: path.name)
def test_the_shipped_modules_are_python_3_10(module: Path) -> None:
    ast.parse(module.read_text(), feature_version=(3, 10))
    imports = {alias.name.split(".")[0] for node in ast.walk(ast.parse(module.read_text()))
               if isinstance(node, ast.Import | ast.ImportFrom)
               for alias in (node.names if isinstance(node, ast.Import)
                             else [ast.alias(node.module or "")])}
    allowed = set(sys.stdlib_module_names) | {"ramp_fleet", "__future__"}
    assert imports <= allowed, "the sandbox is shipped alone: standard library only"


@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no /usr/bin/python3")
def test_the_zipapp_runs_with_the_system_python_alone(tmp_path: Path) -> None:
    pyz = tmp_path / "sandbox.pyz"
    pyz.write_bytes(sandbox_pyz())
    names = zipfile.ZipFile(BytesIO(sandbox_pyz())).namelist()
    assert "__main__.py" in names and "ramp_fleet/sandbox/runner.py" in names
    assert "ramp_fleet/sandbox/inner.py" in names
    (tmp_path / ".ramp-fleet").mkdir()
    sent = spec(tmp_path, ["/bin/sh", "-c", "echo ran"], mode="off")
    done = launch(str(SYSTEM_PYTHON), ["-I", "-S", str(pyz), sent.to_json()], "/usr/bin:/bin",
                  tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "ran\n", "")
    report = Report.read(tmp_path / ".ramp-fleet" / "report.json")
    assert report is not None and (report.isolated, report.returncode) == (False, 0)
