"""The ``store`` section: the SQLite default, and ramp-board's database as the backend.

Configs are ramp-board deployments (``tests.ramp_board``): the deployment's
``config.yml`` holds the ``sqlalchemy`` section with the password ``mrramp``,
which no message may contain.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ramp_fleet.config import load_event_config
from ramp_fleet.errors import ConfigError
from ramp_fleet.ramp_board import database_from_deployment
from tests.ramp_board import DEPLOYMENT_CONFIG, make_deployment

PASSWORD = DEPLOYMENT_CONFIG["sqlalchemy"]["password"]


def with_store(tmp_path: Path, **store: Any) -> Path:
    return make_deployment(tmp_path / "deploy", store=store)


def problems(config: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_event_config(config)
    for problem in info.value.problems:
        assert PASSWORD not in problem
    return info.value.problems


def test_the_store_is_sqlite_unless_asked(tmp_path: Path) -> None:
    store = load_event_config(make_deployment(tmp_path / "deploy")).store
    assert (store.backend, store.ramp_board_python, store.deployment_config) == ("sqlite", None, None)
    assert store.leaderboard_interval == 0.0  # a refresh as soon as a result lands


def test_ramp_board_backend_finds_the_deployment_config(tmp_path: Path) -> None:
    event = load_event_config(with_store(tmp_path, backend="ramp-board", ramp_board_python=sys.executable,
                                         leaderboard_interval=2))
    assert event.store.deployment_config == tmp_path / "deploy" / "config.yml"
    assert event.store.leaderboard_interval == 2.0
    assert database_from_deployment(event.store.deployment_config) == DEPLOYMENT_CONFIG["sqlalchemy"]
    described = event.describe()["store"]
    assert described["backend"] == "ramp-board"
    assert PASSWORD not in yaml.safe_dump(event.describe())


def test_ramp_board_python_keeps_the_venv_link(tmp_path: Path) -> None:
    """A venv's bin/python is a symlink; following it would lose the venv's packages."""
    venv_python = tmp_path / "venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to(sys.executable)
    config = with_store(tmp_path, backend="ramp-board", ramp_board_python="../../../venv/bin/python")
    assert load_event_config(config).store.ramp_board_python == venv_python


def test_ramp_board_python_is_required_and_must_run(tmp_path: Path) -> None:
    config = with_store(tmp_path, backend="ramp-board")
    assert [p.split(": ", 1)[1] for p in problems(config)] == [
        "store.ramp_board_python: is required with store.backend ramp-board (the python of the "
        "environment where ramp-database is installed)"]

    missing = with_store(tmp_path, backend="ramp-board", ramp_board_python=str(tmp_path / "nope"))
    assert problems(missing) == [f"{missing}: store.ramp_board_python: no such file, "
                                 f"got '{tmp_path / 'nope'}'"]

    not_executable = tmp_path / "python"
    not_executable.write_text("")
    config = with_store(tmp_path, backend="ramp-board", ramp_board_python=str(not_executable))
    assert problems(config) == [f"{config}: store.ramp_board_python: is not executable, "
                                f"got '{not_executable}'"]


def test_an_unknown_backend_lists_the_valid_ones(tmp_path: Path) -> None:
    config = with_store(tmp_path, backend="postgres")
    assert problems(config) == [f"{config}: store.backend: must be one of sqlite, ramp-board, "
                                "got 'postgres'"]


def test_a_misspelt_store_key_gets_a_suggestion(tmp_path: Path) -> None:
    config = with_store(tmp_path, backend="ramp-board", ramp_board_pyton=sys.executable)
    assert f"{config}: store.ramp_board_pyton: unknown key; did you mean 'ramp_board_python'?" \
        in problems(config)


def test_leaderboard_interval_must_not_be_negative(tmp_path: Path) -> None:
    config = with_store(tmp_path, leaderboard_interval=-1)
    assert problems(config) == [f"{config}: store.leaderboard_interval: must be 0 or a positive "
                                "number of seconds, got -1"]


def test_a_missing_deployment_config_is_one_line(tmp_path: Path) -> None:
    config = with_store(tmp_path, backend="ramp-board", ramp_board_python=sys.executable,
                        deployment_config="elsewhere.yml")
    where = config.parent / "elsewhere.yml"
    assert problems(config) == [
        f"{config}: store.deployment_config: no such file, got '{where}' (ramp-board's config.yml "
        "with the sqlalchemy section; default <deployment_dir>/config.yml)"]


def test_a_bad_sqlalchemy_section_never_shows_the_password(tmp_path: Path) -> None:
    config = with_store(tmp_path, backend="ramp-board", ramp_board_python=sys.executable)
    deployment = tmp_path / "deploy" / "config.yml"
    settings = yaml.safe_load(deployment.read_text())
    settings["sqlalchemy"].update(port="five", hots="127.0.0.1", password=[PASSWORD])
    deployment.write_text(yaml.safe_dump(settings))
    assert sorted(problems(config)) == sorted(
        f"{config}: store.deployment_config: {deployment}: sqlalchemy.{message}" for message in (
            "hots: unknown key; did you mean 'host'?", "password: must be a string",
            "port: must be a port number"))


def test_a_deployment_config_without_sqlalchemy(tmp_path: Path) -> None:
    config = with_store(tmp_path, backend="ramp-board", ramp_board_python=sys.executable)
    deployment = tmp_path / "deploy" / "config.yml"
    deployment.write_text("flask: {secret_key: x}\n")
    assert problems(config) == [
        f"{config}: store.deployment_config: {deployment}: sqlalchemy: is required (ramp-board's "
        "database settings: drivername, username, password, host, port, database)"]
