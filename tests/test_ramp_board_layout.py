"""ramp-board deployments as they are: its config keys and folder layout load unchanged.

Configs here are written in ramp-board's format (directories, if any, in the
``ramp`` section under ramp-utils' names; ``sandbox_dir``; a deployment
``config.yml`` holding ``flask`` and ``sqlalchemy``), on the iris kit and on
a binary kit whose official score is ROC AUC.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ramp_fleet.config import load_event_config
from ramp_fleet.errors import ConfigError
from ramp_fleet.workers.guide import GuideConfig
from tests.ramp_board import make_deployment


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ramp_fleet", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def edit(config: Path, **sections: dict[str, Any]) -> Path:
    data = yaml.safe_load(config.read_text())
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
        data[name] = {key: value for key, value in data[name].items() if value is not None}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


def problems(config: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_event_config(config)
    return info.value.problems


def test_an_event_config_in_a_deployment_finds_its_folders(tmp_path: Path) -> None:
    deploy = tmp_path / "ramp_deployment"
    config = make_deployment(deploy, "iris")
    event = load_event_config(config)
    dirs = {key: origin.path for key, origin in event.dirs.by_key().items()}
    assert dirs == {
        "deployment_dir": deploy,
        "kit_dir": deploy / "ramp-kits" / "iris",
        "data_dir": deploy / "ramp-data" / "iris",
        "submissions_dir": deploy / "events" / "iris_test" / "submissions",
        "predictions_dir": deploy / "events" / "iris_test" / "predictions",
        "logs_dir": deploy / "events" / "iris_test" / "logs",
    }
    assert event.dirs.deployment.source == (
        f"ramp-board layout: {deploy / 'config.yml'} is the deployment config")
    assert event.store_path == deploy / "events" / "iris_test" / "ramp-fleet.sqlite"
    assert event.warnings == ()


def test_validate_says_where_each_folder_came_from(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    config = make_deployment(deploy, "iris", ramp={"predictions_dir": "/srv/predictions"})
    done = cli("validate", str(config))
    assert done.returncode == 0, done.stderr
    shown = yaml.safe_load(done.stdout)["directories"]
    assert shown["deployment_dir"] == {
        "path": str(deploy), "from": f"ramp-board layout: {deploy / 'config.yml'} is the deployment config"}
    assert shown["kit_dir"] == {"path": str(deploy / "ramp-kits" / "iris"),
                                "from": f"ramp-board layout default under {deploy}"}
    assert shown["predictions_dir"] == {"path": "/srv/predictions", "from": "ramp.predictions_dir"}
    assert "mrramp" not in done.stdout + done.stderr  # the deployment's password is never read


def test_the_ramp_section_keys_are_ramp_utils_names(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    config = make_deployment(deploy, "iris")
    shutil.move(deploy / "ramp-kits" / "iris", deploy / "kits" / "iris")
    edit(config, ramp={"kit_dir": "kits/iris", "logs_dir": "/var/log/ramp/iris",
                       "sandbox_dir": "starting_kit"})
    event = load_event_config(config)
    # Relative to the deployment folder, as ramp-utils joins them.
    assert event.dirs.kit.path == deploy / "kits" / "iris"
    assert event.dirs.logs.path == Path("/var/log/ramp/iris")
    assert GuideConfig(event)["kit_dir"] == str(deploy / "kits" / "iris")


def test_the_old_invented_names_are_refused_with_the_real_one(tmp_path: Path) -> None:
    config = edit(make_deployment(tmp_path / "d", "iris"), ramp={"ramp_kit_dir": "x"})
    assert problems(config) == [f"{config}: ramp.ramp_kit_dir: unknown key; did you mean 'kit_dir'?"]


def test_when_both_sections_name_a_folder_the_ramp_section_wins_with_one_warning(
    tmp_path: Path,
) -> None:
    deploy = tmp_path / "deploy"
    config = make_deployment(deploy, "iris")
    worker_logs = tmp_path / "elsewhere" / "logs"
    edit(config, ramp={"logs_dir": "events/iris_test/logs"},
         worker={"logs_dir": str(worker_logs), "submissions_dir": str(config.parent / "submissions")})
    event = load_event_config(config)
    assert event.dirs.logs.path == deploy / "events" / "iris_test" / "logs"
    assert GuideConfig(event)["logs_dir"] == str(deploy / "events" / "iris_test" / "logs")
    assert event.warnings == (
        f"{config}: ramp.logs_dir and worker.logs_dir differ "
        f"('{deploy / 'events' / 'iris_test' / 'logs'}' and '{worker_logs}'); "
        "using ramp.logs_dir, as ramp-board does",
    )  # the same submissions_dir written twice is no conflict


def test_the_guides_worker_section_directories_stay_valid(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    config = make_deployment(deploy, "iris")
    kit, data = tmp_path / "guide" / "ramp-kits" / "iris", tmp_path / "guide" / "ramp-data" / "iris"
    shutil.copytree(deploy / "ramp-kits" / "iris", kit)
    shutil.copytree(deploy / "ramp-data" / "iris", data)
    edit(config, worker={"kit_dir": str(kit), "data_dir": str(data)})
    event = load_event_config(config)
    assert (event.dirs.kit.path, event.dirs.kit.source) == (kit, "worker.kit_dir")
    assert event.dirs.data.path == data


def test_the_guides_data_folder_is_corrected_to_its_parent(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    config = make_deployment(deploy, "iris")
    data = deploy / "ramp-data" / "iris"
    edit(config, worker={"data_dir": str(data / "data")})
    event = load_event_config(config)
    assert event.dirs.data.path == data
    assert GuideConfig(event)["data_dir"] == str(data)
    [warning] = event.warnings
    assert warning.endswith(f"using its parent. Write: data_dir: {data}")
    assert f"worker.data_dir: '{data / 'data'}' is the data folder itself" in warning


def test_a_data_folder_named_data_with_its_own_data_is_left_alone(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    config = make_deployment(deploy, "iris")
    nested = tmp_path / "iris" / "data"
    shutil.copytree(deploy / "ramp-data" / "iris", nested)  # nested/data/train.csv
    edit(config, ramp={"data_dir": str(nested)})
    event = load_event_config(config)
    assert event.dirs.data.path == nested
    assert event.warnings == ()


def test_the_deployment_folder_can_be_named(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    make_deployment(deploy, "iris")
    config = tmp_path / "somewhere" / "event.yml"
    config.parent.mkdir()
    shutil.copy(deploy / "events" / "iris_test" / "config.yml", config)
    assert any("no such folder" in p for p in problems(config))

    done = cli("validate", "--deployment-dir", str(deploy), str(config))
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["directories"]["deployment_dir"] == {
        "path": str(deploy), "from": "--deployment-dir"}

    edit(config, ramp={"deployment_dir": "../deploy"})
    event = load_event_config(config)
    assert (event.dirs.deployment.path, event.dirs.deployment.source) == (deploy, "ramp.deployment_dir")


def test_the_demo_layout_keeps_working(tmp_path: Path) -> None:
    from tests.ramp_board import EXAMPLE

    shutil.copytree(EXAMPLE, tmp_path / "iris", ignore=shutil.ignore_patterns("events"))
    event = load_event_config(tmp_path / "iris" / "config.yml")
    assert event.dirs.deployment.path == tmp_path / "iris"
    assert event.dirs.submissions.path == tmp_path / "iris" / "submissions"


def test_a_deployment_config_given_as_an_event_config_names_the_events(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    make_deployment(deploy, "iris")
    done = cli("validate", str(deploy / "config.yml"))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: {deploy / 'config.yml'}: is a ramp-board deployment config (flask, sqlalchemy), "
        "not an event config; give an event's config.yml (found: events/iris_test/config.yml)")
    assert "mrramp" not in done.stderr


@pytest.mark.parametrize(("damage", "expected"), [
    (lambda d: (d / "ramp-kits" / "iris" / "problem.py").unlink(),
     "ramp.kit_dir: no problem.py in '{d}/ramp-kits/iris' (from ramp-board layout default "
     "under {d}); is this the kit?"),
    (lambda d: shutil.rmtree(d / "ramp-data"),
     "ramp.data_dir: no such folder: '{d}/ramp-data/iris' (from ramp-board layout default under {d})"),
    (lambda d: shutil.rmtree(d / "events" / "iris_test" / "submissions"),
     "ramp.submissions_dir: no such folder: '{d}/events/iris_test/submissions' "
     "(from ramp-board layout default under {d})"),
])
def test_what_cannot_work_is_refused_before_anything_runs(
    tmp_path: Path, damage: Any, expected: str
) -> None:
    deploy = tmp_path / "deploy"
    config = make_deployment(deploy, "iris", submissions=1)
    damage(deploy)
    for command in ("validate", "dispatch"):
        done = cli(command, str(config))
        assert done.returncode == 2, done.stdout
        assert done.stderr.strip() == f"error: {config}: {expected.format(d=deploy)}"
    assert not (deploy / "events" / "iris_test" / "ramp-fleet.sqlite").exists()


@pytest.mark.parametrize(("worker", "expected"), [
    ({"conda_env": "ramp-nosuch"}, "worker.conda_env: 'ramp-nosuch' is an environment name but no "
                                   "conda, mamba or micromamba is installed"),
    ({"conda_env": "{tmp}/empty-env"}, "worker.conda_env: environment '{tmp}/empty-env' at "
                                       "{tmp}/empty-env has no ramp-test"),
])
def test_an_environment_that_cannot_run_ramp_test_is_refused(
    tmp_path: Path, worker: dict[str, str], expected: str
) -> None:
    (tmp_path / "empty-env" / "bin").mkdir(parents=True)
    config = make_deployment(tmp_path / "deploy", "iris")
    edit(config, worker={key: value.format(tmp=tmp_path) for key, value in worker.items()})
    [problem] = problems(config)
    assert problem.startswith(f"{config}: {expected.format(tmp=tmp_path)}")


def test_zero_workers_is_refused_and_negative_keeps_ramps_meaning(tmp_path: Path) -> None:
    config = make_deployment(tmp_path / "deploy", "iris", dispatcher={"n_workers": 0})
    assert problems(config) == [f"{config}: dispatcher.n_workers: must not be 0 (a negative number "
                                "counts back from the CPU count), got 0"]
    edit(config, dispatcher={"n_workers": -1})
    assert load_event_config(config).dispatcher.n_workers == -1


def test_a_misplaced_event_config_never_exits_0_having_done_nothing(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    config = make_deployment(deploy, "iris", submissions=1)
    (deploy / "config.yml").unlink()  # not a deployment any more: folders are looked for beside
    done = cli("dispatch", str(config))
    assert done.returncode == 2
    assert f"ramp.kit_dir: no such folder: '{config.parent}/ramp-kits/iris'" in done.stderr


def test_an_event_without_submissions_says_so(tmp_path: Path) -> None:
    config = make_deployment(tmp_path / "deploy", "iris")
    done = cli("dispatch", str(config))
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "deploy" / "events" / "iris_test" / "submissions"
    assert done.stderr.strip() == (f"warning: event 'iris_test' has no submissions: nothing in "
                                   f"{folder} (from ramp-board layout default under "
                                   f"{tmp_path / 'deploy'})")
    shutil.copytree(tmp_path / "deploy" / "ramp-kits" / "iris" / "submissions" / "starting_kit",
                    folder / "starting_kit")
    done = cli("dispatch", str(config))
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith(
        "the 'starting_kit' folder in "
        f"{folder} (from ramp-board layout default under {tmp_path / 'deploy'}) is "
        "ramp.sandbox_dir, trained only when ramp.sandbox_as_submission is true")


@pytest.mark.slow
def test_a_ramp_board_deployment_of_an_auc_kit_is_dispatched_unchanged(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    config = make_deployment(deploy, "cancer", submissions=2)
    broken = deploy / "events" / "cancer_test" / "submissions" / "submission_000000003"
    broken.mkdir()
    (broken / "estimator.py").write_text("def get_estimator():\n    raise ValueError('broken')\n")
    done = cli("dispatch", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 scored, 1 training errors, 0 checking errors, 0 waiting" in done.stdout
    predictions = deploy / "events" / "cancer_test" / "predictions"
    assert sorted(p.name for p in predictions.iterdir()) == [
        "submission_000000001", "submission_000000002"]
    assert (deploy / "events" / "cancer_test" / "logs" / "submission_000000003" / "log").is_file()
    board = json.loads(cli("leaderboard", "--json", str(config)).stdout)
    assert [row["name"] for row in board] == ["submission_000000001", "submission_000000002"]
    assert {row["score_name"] for row in board} == {"auc"}
    assert all(0.9 < row["score"] <= 1.0 for row in board)


def test_the_sandbox_is_named_by_sandbox_dir_and_trained_only_when_asked(tmp_path: Path) -> None:
    from ramp_fleet.store import Store
    from tests.store_helpers import discover

    deploy = tmp_path / "deploy"
    config = make_deployment(deploy, "iris", submissions=1)
    sandbox = deploy / "ramp-kits" / "iris" / "submissions" / "my_kit"
    shutil.copytree(deploy / "ramp-kits" / "iris" / "submissions" / "starting_kit", sandbox)
    edit(config, ramp={"sandbox_dir": "my_kit", "sandbox_as_submission": True})
    event = load_event_config(config)
    store = Store(event.store_path)
    try:
        assert sorted(discover(event, store)) == ["my_kit", "submission_000000001"]
    finally:
        store.close()
