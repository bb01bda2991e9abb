"""`ramp-fleet dispatch` on a ramp-board event: a drop-in for `ramp-launch dispatcher`.

The event is deployed with ramp-board's own tools into a real PostgreSQL on
127.0.0.1; the dispatcher reads its new submissions from the database,
trains them with the conda worker, and writes states, scores, errors and
leaderboards back with ramp-database's functions.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from ramp_fleet.config import load_event_config
from ramp_fleet.store import State, Store
from tests.board.helpers import bagged_scores, query, submission_row
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.ramp_board_event import Deployment
from tests.store_helpers import history
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(600)

TRAINED = ("alice/logreg", "bob/knn", "carol/random_forest")
SLOW_ESTIMATOR = '''
import time

from sklearn.linear_model import LogisticRegression


class Slow(LogisticRegression):
    def fit(self, X, y):
        time.sleep(2)
        return super().fit(X, y)


def get_estimator():
    return Slow(max_iter=500)
'''


def serving(postgres: PostgresServer, deployment: Deployment, root: Path, ramp_board_env: Path,
            **dispatcher: Any) -> Path:
    """This test's own deployment folder on the test's database, laid out as ramp-board lays
    it out (its submissions folder moved here, as ramp-board's database says), with the
    event config as ramp-board writes it plus ``store: {backend: ramp-board}``."""
    for part in ("ramp-kits", "ramp-data", f"events/{deployment.event_name}/submissions"):
        shutil.copytree(deployment.root / part, root / part)
    postgres.psql(f"UPDATE events SET path_ramp_submissions = "
                  f"'{root / 'events' / deployment.event_name / 'submissions'}' "
                  f"WHERE name = '{deployment.event_name}'", deployment.database_name)
    (root / "config.yml").write_text(yaml.safe_dump(
        {"flask": {"secret_key": "abcdefghijkl"}, "sqlalchemy": deployment.database}))
    config = root / "events" / deployment.event_name / "config.yml"
    config.write_text(yaml.safe_dump({
        "ramp": {"problem_name": "iris", "event_name": deployment.event_name,
                 "event_title": "Iris test event", "event_is_public": True},
        "worker": {"worker_type": "conda", "conda_env": sys.prefix, "timeout": 300},
        "dispatcher": {"hunger_policy": "exit", "n_workers": 2, "n_threads": 1,
                       "time_between_collection": 0.5, **dispatcher},
        "store": {"backend": "ramp-board", "ramp_board_python": str(ramp_board_env),
                  "leaderboard_interval": 1},
    }, sort_keys=False))
    return config


def slow_down(config: Path, board_id: int) -> None:
    folder = config.parent / "submissions" / f"submission_{board_id:09d}"
    (folder / "estimator.py").write_text(SLOW_ESTIMATOR)


def dispatch(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ramp_fleet", "dispatch", str(config), *args],
                          capture_output=True, text=True, timeout=600)


def states(postgres: PostgresServer, deployment: Deployment) -> dict[str, str]:
    ids = {value: key for key, value in deployment.submissions.items()}
    rows = query(postgres, deployment, "SELECT id, state FROM submissions")
    return {ids[int(sid)]: state for sid, state in rows if int(sid) in ids}


def test_a_ramp_board_event_ends_scored_on_its_leaderboard(
    postgres: PostgresServer, ramp_board: Deployment, ramp_board_env: Path, tmp_path: Path
) -> None:
    config = serving(postgres, ramp_board, tmp_path / "deploy", ramp_board_env)
    done = dispatch(config)
    assert done.returncode == 0, done.stderr
    assert "3 scored, 1 training errors, 0 checking errors, 0 waiting" in done.stdout
    assert states(postgres, ramp_board) == {**dict.fromkeys(TRAINED, "scored"),
                                           "alice/broken": "training_error"}
    assert {state for _, state in query(postgres, ramp_board, "SELECT id, state FROM submissions")
            if _ in {str(i) for i in ramp_board.sandbox.values()}} == {"new"}  # never trained
    event = load_event_config(config)
    accuracy = {}
    for name in TRAINED:
        board_id = ramp_board.submissions[name]
        basename = f"submission_{board_id:09d}"
        with (event.dirs.predictions.path / basename / "bagged_scores.csv").open() as handle:
            rows = [row for row in csv.DictReader(handle) if row["step"] == "test"]
        expected = float(max(rows, key=lambda row: int(row["n_bag"]))["acc"])
        scores = {score: test for score, _, test in bagged_scores(postgres, ramp_board, board_id)}
        assert scores["acc"] == pytest.approx(expected)
        accuracy[basename] = scores["acc"]
        assert submission_row(postgres, ramp_board, board_id, "queue_position") == ["-1"]
    broken = ramp_board.submissions["alice/broken"]
    error = submission_row(postgres, ramp_board, broken, "error_msg")[0]
    assert error.startswith("Traceback") and error.endswith(
        "ValueError: BrokenClassifier.fit: this submission is broken on purpose")
    [[board]] = query(postgres, ramp_board, "SELECT private_leaderboard_html FROM events "
                                            f"WHERE name = '{ramp_board.event_name}'")
    names = {f"submission_{ramp_board.submissions[n]:09d}": n.split("/")[1] for n in TRAINED}
    ranked = sorted(names, key=lambda basename: -accuracy[basename])
    positions = [board.index(names[basename]) for basename in ranked]
    assert positions == sorted(positions), "the leaderboard lists them by accuracy"
    [[failed]] = query(postgres, ramp_board, "SELECT failed_leaderboard_html FROM events "
                                             f"WHERE name = '{ramp_board.event_name}'")
    assert "broken" in failed
    store = Store(event.store_path)  # ramp-fleet's own record, still kept
    assert {s.name: s.source_id for s in store.all()} == {
        f"submission_{i:09d}": i for i in ramp_board.submissions.values()}
    assert {s.name: s.team for s in store.all()} == {  # the fair queue's teams
        f"submission_{i:09d}": name.split("/")[0] for name, i in ramp_board.submissions.items()}
    assert len(store.runs()) == 4


def test_a_killed_dispatcher_restarts_and_scores_each_submission_once(
    postgres: PostgresServer, ramp_board: Deployment, ramp_board_env: Path, tmp_path: Path
) -> None:
    config = serving(postgres, ramp_board, tmp_path / "deploy", ramp_board_env, n_workers=1)
    for name in ("alice/logreg", "bob/knn"):  # slow enough to be killed mid-run
        slow_down(config, ramp_board.submissions[name])
    first = subprocess.Popen([sys.executable, "-m", "ramp_fleet", "dispatch", str(config)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: "training" in states(postgres, ramp_board).values(), "a run to start", 300)
    first.send_signal(signal.SIGKILL)
    first.wait()
    done = dispatch(config)
    assert done.returncode == 0, done.stderr
    assert states(postgres, ramp_board) == {**dict.fromkeys(TRAINED, "scored"),
                                           "alice/broken": "training_error"}
    for name in TRAINED:
        board_id = ramp_board.submissions[name]
        rows = bagged_scores(postgres, ramp_board, board_id)
        assert len(rows) == len({score for score, _, _ in rows}), "no score written twice"
    store = Store(load_event_config(config).store_path)
    for submission in store.all():
        assert [s for s, _ in history(store, submission.name)].count("scored") <= 1


def test_postgresql_restarting_mid_event_loses_nothing(
    postgres: PostgresServer, ramp_board: Deployment, ramp_board_env: Path, tmp_path: Path
) -> None:
    config = serving(postgres, ramp_board, tmp_path / "deploy", ramp_board_env, n_workers=1)
    slow_down(config, ramp_board.submissions["bob/knn"])
    process = subprocess.Popen([sys.executable, "-m", "ramp_fleet", "dispatch", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: states(postgres, ramp_board)["bob/knn"] == "training", "knn to start", 300)
    postgres.stop()
    time.sleep(3)  # the runs go on, their results wait for the database
    postgres.start()
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    assert states(postgres, ramp_board) == {**dict.fromkeys(TRAINED, "scored"),
                                           "alice/broken": "training_error"}


def test_an_unreachable_database_is_one_line_exit_1_and_a_missing_event_exit_2(
    postgres: PostgresServer, ramp_board: Deployment, ramp_board_env: Path, tmp_path: Path
) -> None:
    config = serving(postgres, ramp_board, tmp_path / "deploy", ramp_board_env)
    deployment_config = tmp_path / "deploy" / "config.yml"
    settings = yaml.safe_load(deployment_config.read_text())
    settings["sqlalchemy"]["port"] = 1  # nothing listens there
    deployment_config.write_text(yaml.safe_dump(settings))
    done = dispatch(config)
    assert done.returncode == 1, "the outside world's fault"
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("error: ")
    assert str(settings["sqlalchemy"]["password"]) not in done.stderr + done.stdout

    settings["sqlalchemy"]["port"] = ramp_board.database["port"]
    deployment_config.write_text(yaml.safe_dump(settings))
    event_config = yaml.safe_load(config.read_text())
    event_config["ramp"]["event_name"] = "iris_elsewhere"
    (config.parent.parent / "iris_elsewhere" / "submissions").mkdir(parents=True)
    moved = config.parent.parent / "iris_elsewhere" / "config.yml"
    moved.write_text(yaml.safe_dump(event_config))
    done = dispatch(moved)
    assert done.returncode == 2
    assert "event 'iris_elsewhere' is not in ramp-board's database" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_flag_and_the_deployment_config_option_serve_a_sqlite_config(
    postgres: PostgresServer, ramp_board: Deployment, ramp_board_env: Path, tmp_path: Path
) -> None:
    config = serving(postgres, ramp_board, tmp_path / "deploy", ramp_board_env)
    event_config = yaml.safe_load(config.read_text())
    event_config["store"]["backend"] = "sqlite"
    config.write_text(yaml.safe_dump(event_config))
    elsewhere = tmp_path / "secrets" / "ramp-board.yml"
    elsewhere.parent.mkdir()
    shutil.move(tmp_path / "deploy" / "config.yml", elsewhere)
    os.chmod(elsewhere, 0o600)
    done = dispatch(config, "--ramp-board", "--deployment-config", str(elsewhere),
                    "--deployment-dir", str(tmp_path / "deploy"))
    assert done.returncode == 0, done.stderr
    assert states(postgres, ramp_board)["alice/logreg"] == "scored"
    assert Store(load_event_config(config, deployment_dir=tmp_path / "deploy").store_path
                 ).counts()[State.SCORED] == 3


def test_a_store_of_an_earlier_life_of_the_event_is_set_aside_not_resent(
    postgres: PostgresServer, ramp_board: Deployment, ramp_board_env: Path, tmp_path: Path
) -> None:
    """A test run, then the event deleted and deployed again under the same name: the
    store's results belong to submissions the database no longer has."""
    from tests.fixtures.ramp_board_event import deploy_event

    config = serving(postgres, ramp_board, tmp_path / "deploy", ramp_board_env)
    assert dispatch(config).returncode == 0
    store_path = config.parent / "ramp-fleet.sqlite"
    assert store_path.exists()
    # The real event: a new database, where Dave submits first (every id moves).
    again = deploy_event(ramp_board_env, tmp_path / "again", postgres, "iris_again",
                         plan=({"signup": "dave"}, {"submit": ["dave", "knn", "knn"]}))
    (config.parent.parent.parent / "config.yml").write_text(yaml.safe_dump(
        {"flask": {"secret_key": "abcdefghijkl"}, "sqlalchemy": again.database}))
    submissions = config.parent / "submissions"
    shutil.rmtree(submissions)
    shutil.copytree(again.root / "events" / again.event_name / "submissions", submissions)
    postgres.psql(f"UPDATE events SET path_ramp_submissions = '{submissions}' "
                  f"WHERE name = '{again.event_name}'", again.database_name)
    try:
        done = dispatch(config)
        assert done.returncode == 0, done.stderr
        [note] = [line for line in done.stderr.splitlines() if line.startswith("note: ")]
        assert note.startswith(f"note: the store {store_path} belongs to an earlier life of event "
                               f"'{ramp_board.event_name}' in ramp-board (")
        [aside] = config.parent.glob("ramp-fleet.earlier-life-*.sqlite")
        assert note.endswith(f": kept as {aside}; serving the event as the database has it now")
        assert "1 scored, 0 training errors" in done.stdout
        [(state,)] = query(postgres, again, "SELECT state FROM submissions "
                                            "WHERE name = 'knn'")
        assert state == "scored"
        old = Store(aside)
        assert {row.state for row in old.all()} == {State.SCORED, State.TRAINING_ERROR}
        old.close()
        # The same life again (a plain restart) is not set aside.
        done = dispatch(config)
        assert done.returncode == 0 and "note: " not in done.stderr, done.stderr
    finally:
        postgres.drop_database(again.database_name)
