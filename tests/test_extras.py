"""The pip extras: ramp_fleet/extras.py and pyproject.toml name the same ones, every
third-party import is declared where it is imported, and a missing extra is one line."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ramp_fleet.config.sections import WORKER_SECTIONS
from ramp_fleet.errors import UsageError
from ramp_fleet.extras import EXTRAS, MissingExtra, install_command, missing, require

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
#: Extras of the tooling, not of a backend.
NOT_BACKENDS = {"test", "docs", "all"}

#: Which extras a file's imports may come from (besides the base), first match wins.
#: None: the file runs elsewhere, with that environment's packages.
AREAS: list[tuple[str, set[str] | None]] = [
    ("ramp_fleet/ramp_board/helper.py", None),  # in ramp-board's environment
    ("ramp_fleet/dask/elastic/", {"elastic"}),
    ("ramp_fleet/dask/", {"dask"}),
    ("ramp_fleet/host/", {"dask"}),  # the Dask task, on the Dask hosts
    ("ramp_fleet/workers/dask.py", {"dask"}),
    ("ramp_fleet/aws/", {"aws"}),
    ("ramp_fleet/report/", {"report", "aws"}),  # prices: botocore, after require("aws")
    ("ramp_fleet/cli/report.py", {"report", "aws"}),
    ("ramp_fleet/faults.py", {"aws"}),  # botocore's exceptions, when it imports
    ("infra/", {"infra"}),
]


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _declared(requirements: list[str]) -> set[str]:
    """The distributions of a requirement list, ramp-fleet's own extras expanded."""
    names: set[str] = set()
    for requirement in requirements:
        name = _name(requirement)
        if name == "ramp-fleet":
            inner = re.search(r"\[(.*)\]", requirement)
            assert inner, requirement
            for extra in inner.group(1).split(","):
                names |= _declared(PROJECT["optional-dependencies"][extra.strip()])
        else:
            names.add(name)
    return names


def _extras() -> dict[str, set[str]]:
    return {extra: _declared(requirements) for extra, requirements in
            PROJECT["optional-dependencies"].items() if extra not in NOT_BACKENDS}


def test_extras_py_and_pyproject_name_the_same_extras_and_distributions() -> None:
    declared = _extras()
    assert set(EXTRAS) == set(declared)
    for extra, modules in EXTRAS.items():
        assert {_name(d) for d in modules.values()} == declared[extra], extra
    everything = set().union(*declared.values())
    assert _declared(PROJECT["optional-dependencies"]["all"]) == everything


def test_the_install_command_names_pyprojects_extra() -> None:
    for extra in EXTRAS:
        command = install_command(extra)
        named = re.fullmatch(r"pip install 'ramp-fleet\[([a-z-]+)\]'", command)
        assert named and named.group(1) == extra, command
        assert named.group(1) in PROJECT["optional-dependencies"]


def test_each_module_of_an_extra_comes_from_its_distribution() -> None:
    providers = importlib.metadata.packages_distributions()
    for extra, modules in EXTRAS.items():
        for module, distribution in modules.items():
            assert _name(distribution) in {_name(d) for d in providers.get(module, [])}, \
                f"{extra}: module {module} is not from {distribution}"


def test_every_third_party_import_is_declared_where_it_is_imported() -> None:
    providers = importlib.metadata.packages_distributions()
    base = _declared(PROJECT["dependencies"])
    extras = _extras()
    undeclared: list[str] = []
    files = [*sorted((REPO / "ramp_fleet").rglob("*.py")), *sorted((REPO / "infra").glob("*.py"))]
    for path in files:
        where = path.relative_to(REPO).as_posix()
        allowed = next((area for prefix, area in AREAS if where.startswith(prefix)), set())
        if allowed is None:
            continue
        may = base.union(*(extras[extra] for extra in allowed))
        for module in _imported(path):
            if module in sys.stdlib_module_names or module == "ramp_fleet" \
                    or (path.parent / f"{module}.py").exists():  # infra's own modules
                continue
            found = {_name(d) for d in providers.get(module, [])}
            assert found, f"{where}: {module} is not installed here (make installs every extra)"
            if not found & may:
                undeclared.append(f"{where}: {module} ({', '.join(sorted(found))}) is in none of "
                                  f"base, {', '.join(sorted(allowed)) or 'no extra'}")
    assert undeclared == []


def _imported(path: Path) -> set[str]:
    """Top-level names of every absolute import in the file, inside functions too."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_every_extra_is_installed_in_the_dev_venv() -> None:
    assert {extra: missing(extra) for extra in EXTRAS} == {extra: [] for extra in EXTRAS}


@pytest.mark.parametrize("extra", [extra for extra, modules in EXTRAS.items() if modules])
def test_a_missing_module_names_the_extra_of_pyproject(extra: str, monkeypatch) -> None:
    module, distribution = next(iter(EXTRAS[extra].items()))
    monkeypatch.setitem(sys.modules, module, None)  # what `import` sees when it is absent
    with pytest.raises(MissingExtra) as raised:
        require(extra, "the test")
    message = str(raised.value)
    assert extra in PROJECT["optional-dependencies"]
    assert message.endswith(f"run: pip install 'ramp-fleet[{extra}]'")
    assert message == (f"the test needs ramp-fleet's {extra} extra (not installed here: "
                       f"{distribution}); run: {install_command(extra)}")
    assert "\n" not in message and isinstance(raised.value, UsageError)
    assert raised.value.exit_code == 2


def test_the_built_in_backends_name_extras_that_exist() -> None:
    named = {section.extra for section in WORKER_SECTIONS.values()}
    assert named - {None} <= set(EXTRAS)
    assert WORKER_SECTIONS["conda"].extra is None  # the base install runs a conda event


@pytest.mark.parametrize(("worker", "blocked", "extra"), [
    ("{worker_type: aws, ami_image_name: ramp-iris, region_name: eu-west-3}", "boto3", "aws"),
    ("{worker_type: dask, dask_scheduler: 'tcp://192.0.2.1:8786', allow_insecure_dask: true}",
     "distributed", "dask"),
    ("{worker_type: dask, dask_cluster: {provider: ec2, max_workers: 2, region_name: eu-west-3}}",
     "dask_cloudprovider", "elastic"),
])
def test_dispatch_without_the_backends_extra_is_one_line_and_status_2(
        tmp_path: Path, worker: str, blocked: str, extra: str) -> None:
    (tmp_path / "submissions").mkdir()
    config = tmp_path / "config.yml"
    config.write_text(f"ramp: {{problem_name: iris, event_name: iris_x, submissions_dir: submissions}}\n"
                      f"worker: {worker}\n")
    probe = (f"import sys; sys.modules[{blocked!r}] = None\n"
             "from ramp_fleet.cli import main\n"
             f"main(['dispatch', {str(config)!r}])\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert lines[0].endswith(f"run: pip install 'ramp-fleet[{extra}]'")
    assert "Traceback" not in done.stderr
