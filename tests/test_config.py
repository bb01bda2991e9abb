"""The event config: RAMP's layouts load, every mistake is one clear line."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ramp_fleet.config import load_event_config
from ramp_fleet.errors import ConfigError
from ramp_fleet.workers.guide import GuideConfig
from tests.ramp_board import EXAMPLE

RAMP_BOARD_CONFIG = f"""
ramp:
    problem_name: iris
    event_name: iris_test
    event_title: "Iris event"
    event_is_public: true
sqlalchemy:
    drivername: postgresql
    username: mrramp
    password: mrramp
    host: localhost
    port: 5432
    database: databoard_test
worker:
    worker_type: conda
    conda_env: {sys.prefix}
dispatcher:
    hunger_policy: sleep
    n_workers: -1
    n_threads: 2
    time_between_collection: 1
"""


def write(tmp_path: Path, text: str, name: str = "config.yml") -> Path:
    """The config, beside the folders of the layout it defaults to (events e and iris_test)."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    if not (tmp_path / "ramp-kits").exists():
        shutil.copytree(EXAMPLE / "ramp-kits" / "iris", tmp_path / "ramp-kits" / "iris")
        shutil.copytree(EXAMPLE / "ramp-data" / "iris", tmp_path / "ramp-data" / "iris")
        for event in ("e", "iris_test"):
            (tmp_path / "events" / event / "submissions").mkdir(parents=True)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_event_config(path)
    return info.value.problems


def test_a_ramp_board_config_loads_unchanged(tmp_path: Path) -> None:
    event = load_event_config(write(tmp_path, RAMP_BOARD_CONFIG))
    assert event.event_name == "iris_test"
    assert event.worker_type == "conda"
    assert GuideConfig(event)["conda_env"] == sys.prefix
    assert event.dispatcher.hunger_policy == "sleep"
    assert event.n_slots >= 1
    assert event.warnings == ()


def test_directories_default_to_the_deployment_layout(tmp_path: Path) -> None:
    event = load_event_config(write(tmp_path, RAMP_BOARD_CONFIG))
    mapping = GuideConfig(event)
    assert mapping["kit_dir"] == str(tmp_path / "ramp-kits" / "iris")
    assert mapping["data_dir"] == str(tmp_path / "ramp-data" / "iris")
    assert mapping["submissions_dir"] == str(tmp_path / "events" / "iris_test" / "submissions")
    assert mapping["logs_dir"] == str(tmp_path / "events" / "iris_test" / "logs")
    assert mapping["predictions_dir"] == str(tmp_path / "events" / "iris_test" / "predictions")
    assert event.store_path == tmp_path / "events" / "iris_test" / "ramp-fleet.sqlite"
    assert mapping["timeout"] == 7200


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    shutil.copytree(EXAMPLE / "ramp-kits" / "iris", tmp_path / "kits" / "iris")
    path = write(tmp_path / "sub", """
        ramp: {problem_name: iris, event_name: e}
        worker: {worker_type: conda, kit_dir: ../kits/iris, logs_dir: logs}
        store: {path: state/db.sqlite}
    """)
    event = load_event_config(path)
    assert GuideConfig(event)["kit_dir"] == str(tmp_path / "kits" / "iris")
    assert GuideConfig(event)["logs_dir"] == str(tmp_path / "sub" / "logs")
    assert event.store_path == tmp_path / "sub" / "state" / "db.sqlite"


def test_negative_n_workers_counts_from_the_cpus(tmp_path: Path) -> None:
    import os

    event = load_event_config(write(tmp_path, RAMP_BOARD_CONFIG))
    assert event.n_slots == max(1, (os.cpu_count() or 1) + 1 - 1)


def test_flat_keys_are_regrouped_with_one_warning(tmp_path: Path) -> None:
    path = write(tmp_path, """
        problem_name: iris
        event_name: iris_test
        worker_type: conda
        hunger_policy: exit
        n_workers: 2
    """)
    event = load_event_config(path)
    assert GuideConfig(event)["worker_type"] == "conda"
    assert event.dispatcher.n_workers == 2
    assert len(event.warnings) == 1
    warning = event.warnings[0]
    assert "without sections" in warning
    assert "    ramp:\n      problem_name: iris" in warning
    assert "    worker:\n      worker_type: conda" in warning


def test_every_problem_is_reported_at_once_one_line_each(tmp_path: Path) -> None:
    path = write(tmp_path, """
        ramp: {problem_name: iris, event_name: e}
        worker: {worker_type: conda, timeout: abc, timout: 3}
        dispatcher: {hunger_policy: slep, n_threads: 0}
    """)
    found = problems(path)
    assert f"{path}: worker.timeout: must be a positive number of seconds, got 'abc'" in found
    assert f"{path}: worker.timout: unknown key; did you mean 'timeout'?" in found
    assert any(p.startswith(f"{path}: dispatcher.hunger_policy: must be one of") and "'slep'" in p
               for p in found)
    assert any(p.startswith(f"{path}: dispatcher.n_threads:") for p in found)
    assert len(found) == 4
    assert all("\n" not in p for p in found)


def test_a_misspelt_section_gets_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, RAMP_BOARD_CONFIG.replace("dispatcher:", "dispather:"))
    assert f"{path}: dispather: unknown section; did you mean 'dispatcher'?" in problems(path)


def test_an_unknown_worker_type_lists_the_valid_ones(tmp_path: Path) -> None:
    path = write(tmp_path, RAMP_BOARD_CONFIG.replace("worker_type: conda", "worker_type: kubernetes"))
    [problem] = problems(path)
    assert problem.startswith(f"{path}: worker.worker_type: must be one of conda, aws, dask")
    assert "package.module:ClassName" in problem
    assert problem.endswith("got 'kubernetes'")


def test_a_custom_worker_type_must_be_importable(tmp_path: Path) -> None:
    path = write(tmp_path, RAMP_BOARD_CONFIG.replace("worker_type: conda", "worker_type: nosuch.mod:W"))
    [problem] = problems(path)
    assert "cannot import module 'nosuch.mod'" in problem


def test_yaml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "ramp:\n  problem_name: iris\n  event_name: [unclosed\nworker: {}\n")
    [problem] = problems(path)
    assert problem.startswith(f"{path}:")
    assert "invalid YAML" in problem
    assert problem.split(":")[1].isdigit()


@pytest.mark.parametrize(("text", "found"), [("- a\n- b\n", "a list"), ("", "an empty file"),
                                             ("just text\n", "a str")])
def test_a_config_that_is_not_a_mapping_says_so(tmp_path: Path, text: str, found: str) -> None:
    [problem] = problems(write(tmp_path, text))
    assert "must be a mapping" in problem
    assert found in problem


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope.yml") == [f"{tmp_path / 'nope.yml'}: no such file"]


def test_secret_values_are_never_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, """
        ramp: {problem_name: iris, event_name: e}
        worker:
            worker_type: aws
            ami_image_name: ramp
            access_key_id: [AKIAEXAMPLESECRET]
            secret_access_key: {nested: wJalrSuperSecretKey}
            secret_acess_key: wJalrSuperSecretKey2
    """)
    found = "\n".join(problems(path))
    assert "worker.access_key_id" in found
    assert "worker.secret_access_key" in found
    assert "did you mean 'secret_access_key'" in found
    for secret in ("AKIAEXAMPLESECRET", "wJalrSuperSecretKey"):
        assert secret not in found


def key_file(tmp_path: Path, mode: int) -> Path:
    key = tmp_path / "key.pem"
    key.write_text("k")
    key.chmod(mode)
    return key


def test_validate_masks_secrets_and_exits_0(tmp_path: Path) -> None:
    key = key_file(tmp_path, 0o600)
    path = write(tmp_path, f"""
        ramp: {{problem_name: iris, event_name: e}}
        worker:
            worker_type: aws
            ami_image_name: ramp
            key_path: {key}
            access_key_id: AKIAEXAMPLESECRET
            secret_access_key: wJalrSuperSecretKey
    """)
    done = run_cli("validate", str(path))
    assert done.returncode == 0, done.stderr
    assert "ami_image_name: ramp" in done.stdout
    for secret in ("AKIAEXAMPLESECRET", "wJalrSuperSecretKey"):
        assert secret not in done.stdout + done.stderr


def test_validate_reports_errors_with_status_2_and_no_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "ramp: {problem_name: iris}\nworker: {worker_type: conda, timeout: -1}\n")
    done = run_cli("validate", str(path))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert f"error: {path}: ramp.event_name: is required" in lines
    assert any("worker.timeout: must be a positive number of seconds, got -1" in line for line in lines)


def test_an_aws_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    key = key_file(tmp_path, 0o644)
    path = write(tmp_path, f"""
        ramp: {{problem_name: iris, event_name: e}}
        worker: {{worker_type: aws, ami_image_name: ramp, key_path: {key}}}
    """)
    [problem] = problems(path)
    assert "worker.key_path: must be readable by its owner only" in problem


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ramp_fleet", *args],
                          capture_output=True, text=True, timeout=60)


def test_the_pulumi_program_may_load_a_config_before_its_key_exists(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        ramp: {{problem_name: iris, event_name: e}}
        worker: {{worker_type: aws, ami_image_name: ramp, key_path: {tmp_path / 'not-yet.pem'}}}
    """)
    assert any("worker.key_path: no such file" in p for p in problems(path))
    event = load_event_config(path, runtime_files=False)
    assert GuideConfig(event)["key_path"] == str(tmp_path / "not-yet.pem")
