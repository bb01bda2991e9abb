"""The command line: JSON outputs, exit statuses, a help that stays light."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from ramp_fleet.config import load_event_config
from ramp_fleet.store import Store
from tests.conftest import EventFactory, write_submission


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ramp_fleet", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def test_help_imports_nothing_heavy() -> None:
    probe = (
        "import sys\n"
        "from ramp_fleet.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('boto3', 'dask', 'distributed', 'pandas', 'rampwf', 'sklearn',"
        " 'pydantic', 'fabric', 'pulumi', 'rich', 'numpy', 'bokeh', 'prometheus_client')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "dispatch" in done.stdout and "leaderboard" in done.stdout and "report" in done.stdout
    assert "HEAVY []" in done.stdout


def test_an_unknown_command_is_a_usage_error() -> None:
    done = cli("dispatchh", "x.yml")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr


def test_dispatch_status_and_leaderboard(make_event: EventFactory) -> None:
    config = make_event(("logreg", "dummy", "broken"))
    done = cli("dispatch", str(config))
    assert done.returncode == 0, done.stderr
    assert "2 scored, 1 training errors" in done.stdout
    assert "logreg: scored" in done.stdout  # plain log lines when stdout is not a terminal

    rows = json.loads(cli("status", str(config), "--json").stdout)
    by_name = {row["name"]: row for row in rows}
    assert set(by_name) == {"logreg", "dummy", "broken"}
    for row in rows:
        assert {"name", "state", "attempts", "worker", "started", "finished", "returncode",
                "error", "score", "peak_memory_mb"} <= set(row)
    assert by_name["broken"]["state"] == "training_error"
    assert by_name["broken"]["returncode"] == 1
    assert by_name["logreg"]["state"] == "scored" and by_name["logreg"]["attempts"] == 1

    board = json.loads(cli("leaderboard", str(config), "--json").stdout)
    assert [entry["name"] for entry in board] == ["logreg", "dummy"]
    assert board[0]["score_name"] == "acc" and board[0]["lower_is_better"] is False
    assert board[0]["score"] > board[1]["score"]
    assert board[0]["rank"] == 1
    store = Store(load_event_config(config).store_path)
    assert store.official_score() == ("acc", False)  # by dispatch, or by that first leaderboard
    store.close()

    text = cli("leaderboard", str(config)).stdout
    assert "ranked by acc" in text and text.index("logreg") < text.index("dummy")
    assert "peak MB" in text  # the runner measures every run

    with sqlite3.connect(load_event_config(config).store_path) as db:
        db.execute("UPDATE submissions SET peak_memory_mb = 123.4 WHERE name = 'logreg'")
    text = cli("leaderboard", str(config)).stdout
    assert "peak MB" in text and "123.4" in text


def test_submit_refuses_bad_names_with_status_2(make_event: EventFactory, tmp_path: Path) -> None:
    config = make_event()
    source = write_submission(tmp_path / "in", "ok_name")
    bad = cli("submit", str(config), str(source), "--name", "../../etc")
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("error: submission name '../../etc': contains a path separator "
                                  "or a control character")
    good = cli("submit", str(config), str(source))
    assert good.returncode == 0, good.stderr
    assert (config.parent / "submissions" / "ok_name" / "estimator.py").is_file()
    missing = cli("submit", str(config), str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such folder" in missing.stderr
