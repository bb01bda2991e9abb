"""Scores come from the trusted scorer, on every backend; a run's text is shown as text.

A participant writes the score files its own process leaves; the dispatcher
never reads them: the predictions are scored again, by ``problem.py``'s score
types, in a process without the participant's code (issue 21, points 4 and 6).
"""

from __future__ import annotations

import csv
import json
import os
import pty
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ramp_fleet.store import State
from tests.conftest import write_submission
from tests.contract.conftest import Backend, dispatch, submissions_dir

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]

#: A dummy model, whose process then writes itself first on every score file.
FORGER = '''
import atexit, os, pathlib
from sklearn.dummy import DummyClassifier

OUT = pathlib.Path(os.path.dirname(os.path.abspath(__file__)), "training_output")


def forge():
    for path in OUT.glob("fold_*/scores.csv"):
        rows = [f"{step},1.0,0.0,0.0,1.0,0.1" for step in ("train", "valid", "test")]
        path.write_text("step,acc,error,nll,macro_recall,time\\n" + "\\n".join(rows) + "\\n")
    rows = [f"{step},{n},inf,0.0,0.0,1.0" for step in ("valid", "test") for n in (0, 1)]
    (OUT / "bagged_scores.csv").write_text("step,n_bag,acc,error,nll,macro_recall\\n"
                                           + "\\n".join(rows) + "\\n")


atexit.register(forge)


def get_estimator():
    return DummyClassifier(strategy="most_frequent")
'''

#: Trains honestly, then swaps its test predictions for numbers that are not numbers.
NAN_PREDICTIONS = '''
import atexit, os, pathlib
import numpy as np
from sklearn.linear_model import LogisticRegression

OUT = pathlib.Path(os.path.dirname(os.path.abspath(__file__)), "training_output")


def swap():
    for fold in OUT.glob("fold_*"):
        shape = np.load(fold / "y_pred_test.npz")["y_pred"].shape
        np.savez_compressed(fold / "y_pred_test", y_pred=np.full(shape, np.nan))


atexit.register(swap)


def get_estimator():
    return LogisticRegression(max_iter=500)
'''

#: An error whose text would drive a terminal and break rich markup.
SHOUTING = '''
from sklearn.linear_model import LogisticRegression


class Shouting(LogisticRegression):
    def fit(self, X, y):
        raise ValueError("[/][bold red]\\x1b]0;pwned\\x07\\x1b[31mred\\u202etxt.exe[/]")


def get_estimator():
    return Shouting()
'''


def strict(text: str) -> object:
    def refuse(constant: str) -> None:
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def cli(*args: str, tty: bool = False) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    argv = [sys.executable, "-m", "ramp_fleet", *args]
    if not tty:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
        return done.returncode, done.stdout + done.stderr
    leader, follower = pty.openpty()
    process = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 1 << 16)
        except OSError:  # the other end is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return process.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.parametrize("labels", ["visible", "hidden"])
def test_forged_scores_never_count_and_every_output_stays_strict_json(
    backend: Backend, contract_event, labels: str  # type: ignore[no-untyped-def]
) -> None:
    event = contract_event(("logreg",), worker={"isolation": {"labels": labels}})
    write_submission(submissions_dir(event), "forger", textwrap.dedent(FORGER))
    write_submission(submissions_dir(event), "nan", textwrap.dedent(NAN_PREDICTIONS))
    store = dispatch(event)
    rows = {row.name: row for row in store.all()}
    forger = rows["forger"]
    assert forger.state == State.SCORED, forger.error
    assert forger.score is not None and forger.score < 0.5, "the dummy's own accuracy, not 'inf'"
    assert rows["logreg"].score is not None and rows["logreg"].score > forger.score
    published = event.dirs.predictions.path / "forger"
    with (published / "bagged_scores.csv").open() as table:
        bagged = [row for row in csv.DictReader(table) if row["step"] == "test"]
    assert float(bagged[-1]["acc"]) == forger.score, "the files published are the scorer's"
    with (published / "fold_0" / "scores.csv").open() as table:
        assert {row["step"]: float(row["acc"]) for row in csv.DictReader(table)}["train"] < 1.0
    nan = rows["nan"]
    assert nan.state == State.CHECKING_ERROR
    assert (nan.error or "").startswith("nan cannot be scored: "), nan.error
    assert not (event.dirs.predictions.path / "nan").exists()
    for command in (("status", "--json"), ("leaderboard", "--json")):
        code, output = cli(*command, str(event.path))
        assert code == 0, output
        strict(output)
    code, output = cli("leaderboard", str(event.path))
    assert code == 0 and output.index("logreg") < output.index("forger"), output


def test_a_runs_text_is_shown_as_text_everywhere(
    backend: Backend, contract_event  # type: ignore[no-untyped-def]
) -> None:
    event = contract_event(("logreg",))
    write_submission(submissions_dir(event), "shouting", textwrap.dedent(SHOUTING))
    store = dispatch(event)
    row = {row.name: row for row in store.all()}["shouting"]
    assert row.state == State.TRAINING_ERROR
    error = row.error or ""
    assert "\\x1b]0;pwned\\x07\\x1b[31mred\\u202etxt.exe" in error, error
    assert not any(char in error for char in "\x1b\x07\u202e"), "stored as it can be shown"
    code, output = cli("status", str(event.path), tty=True)  # rich, on a terminal
    assert code == 0, output
    assert "Traceback" not in output and "MarkupError" not in output
    assert "\x07" not in output and "\u202e" not in output and "]0;pwned" not in output.replace(
        "\\x1b]0;pwned", "")
    code, output = cli("status", "--json", str(event.path))
    assert code == 0
    [shown] = [entry for entry in strict(output) if entry["name"] == "shouting"]  # type: ignore[attr-defined]
    assert shown["error"] == error
