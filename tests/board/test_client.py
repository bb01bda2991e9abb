"""The client against a real ramp-board database: what each operation reads and writes.

The event is deployed by ramp-board's own tools (TEST_PLAN: alice and bob
sign up, submit logreg and knn, carol signs up — a sandbox id between real
ones — and submits random_forest, alice submits broken); every test works on
its own copy of that database and checks the tables directly.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from ramp_fleet.ramp_board import RampBoardClient, RampBoardError
from tests.board.helpers import bagged_scores, fold_rows, query, submission_row
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.ramp_board_event import Deployment
from tests.score_files import read_scores


def test_new_submissions_in_submission_order_without_the_sandboxes(
        client: RampBoardClient, ramp_board: Deployment) -> None:
    new = client.new_submissions(ramp_board.event_name)
    expected = ["alice/logreg", "bob/knn", "carol/random_forest", "alice/broken"]
    assert [f"{sub.team}/{sub.name}" for sub in new] == expected
    assert [sub.id for sub in new] == [ramp_board.submissions[key] for key in expected]
    assert not set(ramp_board.sandbox.values()) & {sub.id for sub in new}
    assert all(sub.id > 0 for sub in new) and [s.id for s in new] == sorted(s.id for s in new)
    # The basename is the folder ramp-board wrote the submission's files to.
    for sub in new:
        assert (ramp_board.submissions_dir / sub.basename / "estimator.py").is_file()


def test_after_id_returns_only_what_came_later(client: RampBoardClient, ramp_board: Deployment) -> None:
    knn = ramp_board.submissions["bob/knn"]
    later = client.new_submissions(ramp_board.event_name, after_id=knn)
    assert [sub.id for sub in later] == [ramp_board.submissions["carol/random_forest"],
                                        ramp_board.submissions["alice/broken"]]
    assert client.new_submissions(ramp_board.event_name, after_id=later[-1].id) == []


def test_event_describes_where_ramp_board_keeps_submissions(
        client: RampBoardClient, ramp_board: Deployment) -> None:
    event = client.check_event(ramp_board.event_name)
    assert (event.problem, event.sandbox_name, event.exists) == ("iris", "starting_kit", True)
    assert event.submissions_dir == ramp_board.submissions_dir
    assert client.event("no_such_event").exists is False


def test_hello_reports_ramp_boards_versions(client: RampBoardClient, ramp_board: Deployment) -> None:
    info = client.hello(ramp_board.event_name)
    assert info.event_exists is True
    assert info.ramp_database.startswith("0.10") and info.sqlalchemy.startswith("1.4")
    assert int(info.numpy.split(".")[0]) < 2
    assert client.hello("no_such_event").event_exists is False


def test_a_claimed_submission_is_no_longer_new(client: RampBoardClient, postgres: PostgresServer,
                                               ramp_board: Deployment) -> None:
    logreg = ramp_board.submissions["alice/logreg"]
    client.set_state(logreg, "sent_to_training")
    client.set_state(logreg, "sent_to_training")  # idempotent
    assert logreg not in [sub.id for sub in client.new_submissions(ramp_board.event_name)]
    assert client.states(ramp_board.event_name)[logreg] == "sent_to_training"
    assert {state for state, _ in fold_rows(postgres, ramp_board, logreg)} == {"sent_to_training"}
    client.set_state(logreg, "training")
    assert submission_row(postgres, ramp_board, logreg, "state, training_timestamp IS NOT NULL") == [
        "training", "t"]


def test_set_error_writes_the_message_and_the_state_together(
        client: RampBoardClient, postgres: PostgresServer, ramp_board: Deployment) -> None:
    broken = ramp_board.submissions["alice/broken"]
    message = "Traceback (most recent call last):\n  ...\nValueError: broken on purpose"
    client.set_error(broken, message, state="training_error")
    assert submission_row(postgres, ramp_board, broken, "state") == ["training_error"]
    assert submission_row(postgres, ramp_board, broken, "error_msg") == [message]
    client.set_error(broken, "only the message")
    assert submission_row(postgres, ramp_board, broken, "state, error_msg") == [
        "training_error", "only the message"]


def test_a_refused_request_is_one_line_and_keeps_the_helper(
        client: RampBoardClient, ramp_board: Deployment) -> None:
    pid = client.helper_pid
    with pytest.raises(RampBoardError, match=r"^ramp-board's set_state: UnknownStateError: "
                                             r"Unrecognized state : 'bogus'$"):
        client.set_state(ramp_board.submissions["alice/logreg"], "bogus")
    with pytest.raises(RampBoardError, match=r"^ramp-board's set_state: no submission 999 in "):
        client.set_state(999, "new")
    assert client.helper_pid == pid and client.restarts == 0


def test_set_results_twice_scores_once(client: RampBoardClient, postgres: PostgresServer,
                                       ramp_board: Deployment, iris_predictions: Path) -> None:
    logreg = ramp_board.submissions["alice/logreg"]
    rows_before = query(postgres, ramp_board, "SELECT count(*) FROM submission_scores")
    fold_score_rows = query(postgres, ramp_board, "SELECT count(*) FROM submission_score_on_cv_folds")
    client.set_results(logreg, iris_predictions, max_ram_mb=123.5)
    first = bagged_scores(postgres, ramp_board, logreg)
    client.set_results(logreg, iris_predictions, max_ram_mb=123.5)

    expected = read_scores(iris_predictions).bagged
    assert bagged_scores(postgres, ramp_board, logreg) == first
    assert [(name, pytest.approx(expected["valid"][name]), pytest.approx(expected["test"][name]))
            for name in sorted(expected["test"])] == first
    assert query(postgres, ramp_board, "SELECT count(*) FROM submission_scores") == rows_before
    assert query(postgres, ramp_board, "SELECT count(*) FROM submission_score_on_cv_folds") == \
        fold_score_rows
    assert submission_row(postgres, ramp_board, logreg, "state, max_ram") == ["scored", "123.5"]
    times = [float((iris_predictions / f"fold_{i}" / "train_time").read_text()) for i in range(3)]
    assert [float(t) for _, t in fold_rows(postgres, ramp_board, logreg)] == pytest.approx(times)


def test_set_results_is_one_transaction(client: RampBoardClient, postgres: PostgresServer,
                                        ramp_board: Deployment, iris_predictions: Path,
                                        tmp_path: Path) -> None:
    """Fold times and scores are written before the bagged scores fail: none of it stays."""
    knn = ramp_board.submissions["bob/knn"]
    client.set_state(knn, "tested")
    damaged = shutil.copytree(iris_predictions, tmp_path / "damaged")
    (damaged / "bagged_scores.csv").write_text("nonsense\n1\n")
    with pytest.raises(RampBoardError, match=r"^ramp-board's set_results: \w+Error: "):
        client.set_results(knn, damaged)
    assert fold_rows(postgres, ramp_board, knn) == [["tested", "0"]] * 3
    assert submission_row(postgres, ramp_board, knn, "state") == ["tested"]


def test_set_results_without_predictions_says_where_it_looked(
        client: RampBoardClient, ramp_board: Deployment, tmp_path: Path) -> None:
    knn = ramp_board.submissions["bob/knn"]
    with pytest.raises(RampBoardError, match=re.escape(f"no predictions for submission {knn}: {tmp_path} ")):
        client.set_results(knn, tmp_path)


def test_queue_positions(client: RampBoardClient, postgres: PostgresServer,
                         ramp_board: Deployment) -> None:
    ids = ramp_board.submissions
    positions = {ids["alice/logreg"]: -1, ids["bob/knn"]: 1, ids["carol/random_forest"]: 2}
    assert client.set_queue_positions(ramp_board.event_name, positions) == 2  # logreg was -1
    assert client.set_queue_positions(ramp_board.event_name, positions) == 0
    rows = query(postgres, ramp_board, "SELECT id, queue_position FROM submissions ORDER BY id")
    found = {int(sid): int(position) for sid, position in rows}
    assert {sid: found[sid] for sid in positions} == positions
    assert client.set_queue_positions("no_such_event", {ids["bob/knn"]: 7}) == 0


def test_leaderboards_list_the_scored_submissions(
        client: RampBoardClient, postgres: PostgresServer, ramp_board: Deployment,
        iris_predictions: Path) -> None:
    logreg, knn = ramp_board.submissions["alice/logreg"], ramp_board.submissions["bob/knn"]
    client.set_results(logreg, iris_predictions)
    client.update_leaderboards(ramp_board.event_name)
    public = query(postgres, ramp_board, "SELECT public_leaderboard_html_no_links FROM events")
    html = "\n".join(cell for row in public for cell in row)
    assert "logreg" in html and "knn" not in html
    teams = dict(query(postgres, ramp_board, "SELECT t.name, coalesce(e.leaderboard_html, '') "
                                             "FROM event_teams e JOIN teams t ON t.id = e.team_id"))
    assert "logreg" in teams["alice"] and "logreg" not in teams["bob"]
    client.set_results(knn, iris_predictions)
    client.update_leaderboards(ramp_board.event_name)
    public = query(postgres, ramp_board, "SELECT public_leaderboard_html_no_links FROM events")
    assert "knn" in "\n".join(cell for row in public for cell in row)


def test_reset_interrupted_puts_back_what_a_dead_dispatcher_held(
        client: RampBoardClient, postgres: PostgresServer, ramp_board: Deployment) -> None:
    ids = ramp_board.submissions
    held = {"alice/logreg": "sent_to_training", "bob/knn": "training",
            "carol/random_forest": "tested", "alice/broken": "training_error"}
    for key, state in held.items():
        client.set_state(ids[key], state)
    reset = client.reset_interrupted(ramp_board.event_name)
    assert reset == [ids["alice/logreg"], ids["bob/knn"], ids["carol/random_forest"]]
    states = client.states(ramp_board.event_name)
    assert [states[sid] for sid in reset] == ["new"] * 3
    assert states[ids["alice/broken"]] == "training_error"
    assert {state for sid in reset for state, _ in fold_rows(postgres, ramp_board, sid)} == {"new"}
    assert client.reset_interrupted(ramp_board.event_name) == []


def test_states_cover_every_submission_of_the_event(
        client: RampBoardClient, ramp_board: Deployment) -> None:
    states = client.states(ramp_board.event_name)
    assert sorted(states) == sorted([*ramp_board.submissions.values(), *ramp_board.sandbox.values()])
    assert set(states.values()) == {"new"}
    assert client.states("no_such_event") == {}


def test_threads_share_one_client(client: RampBoardClient, ramp_board: Deployment) -> None:
    ids = list(ramp_board.submissions.values())
    errors: list[BaseException] = []

    def work(sid: int) -> None:
        try:
            for _ in range(5):
                client.set_queue_positions(ramp_board.event_name, {sid: 3})
                assert client.states(ramp_board.event_name)[sid] in {"new", "sent_to_training"}
                client.set_state(sid, "sent_to_training")
        except BaseException as exc:  # reported below, with the thread's error
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(sid,)) for sid in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {client.states(ramp_board.event_name)[sid] for sid in ids} == {"sent_to_training"}


#: ramp-database's own refresh, in a fresh process (nothing kept between refreshes).
REFERENCE_REFRESH = """
import json, sys
from ramp_database.tools.leaderboard import update_all_user_leaderboards, update_leaderboards
from ramp_database.utils import session_scope
with session_scope(json.loads(sys.stdin.read())) as session:
    update_leaderboards(session, sys.argv[1])
    update_all_user_leaderboards(session, sys.argv[1])
"""

LEADERBOARDS = ("SELECT private_leaderboard_html, public_leaderboard_html_with_links, "
                "public_leaderboard_html_no_links, failed_leaderboard_html, new_leaderboard_html, "
                "public_competition_leaderboard_html, private_competition_leaderboard_html "
                "FROM events ORDER BY id")
TEAM_LEADERBOARDS = ("SELECT leaderboard_html, failed_leaderboard_html, new_leaderboard_html "
                     "FROM event_teams ORDER BY id")


def leaderboards(postgres: PostgresServer, ramp_board: Deployment) -> list[list[str]]:
    return query(postgres, ramp_board, LEADERBOARDS) + query(postgres, ramp_board, TEAM_LEADERBOARDS)


def rescored(predictions: Path, folder: Path) -> Path:
    """The same training_output with other bagged accuracies (as a second training could give)."""
    shutil.copytree(predictions, folder)
    lines = (folder / "bagged_scores.csv").read_text().splitlines()
    header = lines[0].split(",")
    column = header.index("acc")
    rows = [line.split(",") for line in lines[1:]]
    for number, row in enumerate(rows):
        row[column] = str(0.5 + number / 100)
    (folder / "bagged_scores.csv").write_text("\n".join([lines[0], *map(",".join, rows)]) + "\n")
    return folder


def test_leaderboards_kept_between_refreshes_are_ramp_databases_own(
        client: RampBoardClient, postgres: PostgresServer, ramp_board: Deployment,
        ramp_board_env: Path, iris_predictions: Path, tmp_path: Path) -> None:
    ids = ramp_board.submissions
    for name in ("alice/logreg", "bob/knn", "carol/random_forest"):
        client.set_results(ids[name], iris_predictions)
    client.set_error(ids["alice/broken"], "Traceback ...\nValueError: broken", "training_error")
    client.update_leaderboards(ramp_board.event_name)  # every scored submission read once
    # logreg scored again, with other scores: what was kept of it must not be shown.
    client.set_results(ids["alice/logreg"], rescored(iris_predictions, tmp_path / "again"))
    client.update_leaderboards(ramp_board.event_name, ["alice"])
    ours = leaderboards(postgres, ramp_board)
    assert "0.5" in ours[0][0]  # the new accuracies are on the private leaderboard

    subprocess.run([str(ramp_board_env), "-c", REFERENCE_REFRESH, ramp_board.event_name],
                   input=json.dumps(ramp_board.database), text=True, check=True,
                   capture_output=True)
    assert leaderboards(postgres, ramp_board) == ours
