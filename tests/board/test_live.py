"""A ramp-board event served live: a participant's submission is found at once and its score
is on the website a moment after its run — not at the next poll or the next interval.

A real dispatcher serves the deployed event (PostgreSQL on 127.0.0.1) with both
intervals at two minutes; a participant submits with ramp-database's own
``add_submission``, as the website does. Only the folder nudge (ramp-board makes
the submission's folder, then commits it) and the refresh that follows a result
can bring it to the leaderboard before the deadline.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.board.helpers import query
from tests.board.test_dispatch import serving, states
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.ramp_board_event import EXAMPLE, Deployment, Participant
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(600)

#: Far longer than the test may take: the poll and the interval must not be what finds it.
SLOW = 120
MARK = "<p>not recomputed</p>"


def team_board_has(postgres: PostgresServer, deployment: Deployment, team: str, text: str) -> bool:
    """Whether the team's leaderboard in ramp-board's tables (as its website reads it) has ``text``."""
    [[found]] = query(postgres, deployment, "SELECT coalesce(strpos(et.leaderboard_html, "
                      f"'{text}'), 0) > 0 FROM event_teams et JOIN teams t ON t.id = et.team_id "
                      f"JOIN events e ON e.id = et.event_id WHERE t.name = '{team}' "
                      f"AND e.name = '{deployment.event_name}'")
    return found == "t"


def set_team_board(postgres: PostgresServer, deployment: Deployment, team: str, html: str) -> None:
    query(postgres, deployment, f"UPDATE event_teams SET leaderboard_html = '{html}' "
          f"WHERE team_id = (SELECT id FROM teams WHERE name = '{team}')")


def test_a_submission_made_while_serving_is_on_the_leaderboards_a_moment_after_its_run(
    postgres: PostgresServer, ramp_board: Deployment, ramp_board_env: Path, tmp_path: Path
) -> None:
    config = serving(postgres, ramp_board, tmp_path / "deploy", ramp_board_env,
                     hunger_policy="sleep", sleep_interval=SLOW, time_between_collection=SLOW)
    dispatch = subprocess.Popen([sys.executable, "-m", "ramp_fleet", "dispatch", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    participant = Participant(ramp_board_env, config.parents[2] / "config.yml",
                              ramp_board.event_name)
    try:
        wait_for(lambda: set(states(postgres, ramp_board).values())
                 <= {"new", "scored", "training_error"}  # the sandboxes stay new
                 and team_board_has(postgres, ramp_board, "bob", "knn"),
                 "the deployed submissions on their leaderboards", 300)
        set_team_board(postgres, ramp_board, "bob", MARK)
        submitted = participant.submit("alice", "late_logreg", EXAMPLE / "submissions" / "logreg")
        seen = participant.visible(["late_logreg"], timeout=SLOW / 2)
        assert "late_logreg" in seen, "not on the leaderboard before the poll would have found it"
        assert seen["late_logreg"] - submitted < SLOW / 2
        assert team_board_has(postgres, ramp_board, "alice", "late_logreg")
        # A team's leaderboards list only its own submissions: the others' are left alone.
        assert team_board_has(postgres, ramp_board, "bob", MARK)
    finally:
        participant.close()
        dispatch.send_signal(signal.SIGTERM)
        _, err = dispatch.communicate(timeout=120)
    assert dispatch.returncode == 130, err  # stopped by its operator
