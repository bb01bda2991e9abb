"""What a run asks for and what the runner reports; the runner's refusals; the shipped zipapp."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from ramp_fleet.archive import pack_submission
from ramp_fleet.sandbox.runner import REFUSED
from ramp_fleet.sandbox.spec import Isolation, Report, RunSpec, Usage
from ramp_fleet.sandbox.tree import Limits
from ramp_fleet.sandbox.zipapp import PACKAGE, runner_pyz

SYSTEM_PYTHON = Path("/usr/bin/python3")


def spec(tmp_path: Path, script: str = "exit 0", **isolation: object) -> RunSpec:
    """A run folder whose "ramp-test" is a shell script, ready for the runner."""
    program = tmp_path / "bin" / "ramp-test"
    program.parent.mkdir(parents=True, exist_ok=True)
    program.write_text(f"#!/bin/sh\n{script}\n")
    program.chmod(0o755)
    source = tmp_path / "source" / "s"
    source.mkdir(parents=True, exist_ok=True)
    (source / "estimator.py").write_text("# a submission\n")
    sent = RunSpec(submission="s", kit_dir="../kit", data_dir="../kit/data",
                   ramp_test=str(program), hidden=("../kit/.ramp-fleet",),
                   isolation=Isolation(**isolation))  # type: ignore[arg-type]
    folder = tmp_path / "run"
    folder.mkdir()
    (tmp_path / "kit" / "data").mkdir(parents=True)
    (folder / "spec.json").write_text(sent.to_json())
    (folder / "submission.tar.gz").write_bytes(pack_submission(source))
    return sent


def test_a_spec_travels_as_json_and_resolves_where_it_runs(tmp_path: Path) -> None:
    sent = RunSpec(submission="s", kit_dir="~/kit", data_dir="data", hidden=(".ramp-fleet",),
                   isolation=Isolation(memory_mb=512, read_only_paths=("~/extra",)),
                   limits=Limits(10, 20, 30))
    received = RunSpec.from_json(sent.to_json())
    assert received == sent
    here = received.resolved(str(tmp_path))
    assert (here.kit_dir, here.data_dir) == (os.path.expanduser("~/kit"), str(tmp_path / "data"))
    assert here.hidden == (str(tmp_path / ".ramp-fleet"),)
    assert here.isolation.read_only_paths == (os.path.expanduser("~/extra"),)
    assert here.ramp_test == "ramp-test", "a bare name is looked up where the run is"


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
    spec(tmp_path, mode="required")
    done = launch(sys.executable, ["-m", "ramp_fleet.sandbox.runner", "run"], "/nonexistent",
                  tmp_path)
    assert done.returncode == REFUSED
    log = (tmp_path / "run" / "log").read_text()
    assert log.startswith("ramp-fleet: worker.isolation.mode is required, but bubblewrap "
                          "does not work here: no bwrap on PATH; install bubblewrap")
    report = Report.read(tmp_path / "run" / "report.json")
    assert report is not None and report.refused is not None and not report.isolated
    assert not (tmp_path / "run" / "submissions").exists(), "nothing of it was unpacked"


def test_the_runner_runs_an_auto_run_without_bwrap_and_says_so(tmp_path: Path) -> None:
    spec(tmp_path, "echo ran; exit 3", mode="auto", memory_mb=256)
    done = launch(sys.executable, ["-m", "ramp_fleet.sandbox.runner", "run"], "/nonexistent",
                  tmp_path)
    assert done.returncode == 3
    log = (tmp_path / "run" / "log").read_text()
    assert log.startswith("ramp-fleet: this run is NOT isolated: bubblewrap does not "
                          "work here: no bwrap on PATH (host ")
    assert log.endswith("ran\n")
    report = Report.read(tmp_path / "run" / "report.json")
    assert report is not None and not report.isolated and report.note is not None
    assert report.usage is not None and report.usage.memory_limit_mb == 256


def test_the_runner_says_when_there_is_no_ramp_test(tmp_path: Path) -> None:
    sent = spec(tmp_path, mode="off")
    (tmp_path / "run" / "spec.json").write_text(
        RunSpec(**{**sent.__dict__, "ramp_test": "ramp-test", "python_env": "nowhere"}).to_json())
    done = launch(sys.executable, ["-m", "ramp_fleet.sandbox.runner", "run"], "/usr/bin:/bin",
                  tmp_path)
    report = Report.read(tmp_path / "run" / "report.json")
    assert done.returncode == 127 and report is not None and report.returncode == 127
    assert report.refused is not None and report.refused.startswith(
        "no ramp-test for conda_env 'nowhere' on this host (looked at ")


#: Programs of the package started inside the sandbox with the kit's own Python.
KIT_PROGRAMS = ("train_predict.py",)


@pytest.mark.parametrize("module", sorted(PACKAGE.glob("*.py")), ids=lambda path: path.name)
def test_the_shipped_modules_are_python_3_10(module: Path) -> None:
    ast.parse(module.read_text(), feature_version=(3, 10))
    imports = {alias.name.split(".")[0] for node in ast.walk(ast.parse(module.read_text()))
               if isinstance(node, ast.Import | ast.ImportFrom)
               for alias in (node.names if isinstance(node, ast.Import)
                             else [ast.alias(node.module or "")])}
    allowed = set(sys.stdlib_module_names) | {"ramp_fleet", "__future__"}
    if module.name in KIT_PROGRAMS:  # run by the kit's Python, inside the sandbox
        allowed |= {"rampwf"}
    assert imports <= allowed, "the sandbox is shipped alone: standard library only"


@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no /usr/bin/python3")
def test_the_zipapp_runs_with_the_system_python_alone(tmp_path: Path) -> None:
    pyz = tmp_path / "runner.pyz"
    pyz.write_bytes(runner_pyz())
    names = zipfile.ZipFile(BytesIO(runner_pyz())).namelist()
    assert "__main__.py" in names and "ramp_fleet/sandbox/runner.py" in names
    assert "ramp_fleet/sandbox/inner.py" in names
    spec(tmp_path, "echo ran", mode="off")
    done = launch(str(SYSTEM_PYTHON), ["-I", "-S", str(pyz), "."], "/usr/bin:/bin",
                  tmp_path / "run")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert (tmp_path / "run" / "log").read_text() == "ran\n"
    report = Report.read(tmp_path / "run" / "report.json")
    assert report is not None and (report.isolated, report.returncode) == (False, 0)
