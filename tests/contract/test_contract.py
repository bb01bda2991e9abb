"""The worker contract: every backend, driven by the real dispatcher, behaves the same.

Each case runs on conda, AWS (moto + loopback sshd), Dask (local scheduler and
workers) and a guide-style custom worker, and compares with what ramp-test
itself gives (tests/fixtures/reference.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import psutil
import pytest

from ramp_fleet.dispatcher import Dispatcher
from ramp_fleet.results import excerpt
from ramp_fleet.store import State, Store
from ramp_fleet.store.records import Outcome
from tests.conftest import alive, hanging_estimator, hanging_run, write_submission
from tests.contract.conftest import Backend, Quiet, dispatch, submissions_dir
from tests.contract.workers import REASON
from tests.processes import unique
from tests.score_files import read_scores
from tests.store_helpers import history

pytestmark = pytest.mark.timeout(240)

TIMEOUT = 20
HOSTILE_NAME = "it's $(touch PWNED) & `touch PWNED2`; co"


def normalised(text: str) -> str:
    """A traceback with the folder each backend ran the submission in taken out."""
    return re.sub(r'File "[^"]*/(submissions/[^/"]+/)', r'File "<run>/\1', text)


def runs_of(submission: str) -> list[psutil.Process]:
    """ramp-test processes of ``submission`` still on this machine (instances included)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any("ramp-test" in part for part in cmdline) and submission in cmdline:
            found.append(proc)
    return found


def test_a_submission_is_scored_as_ramp_test_scores_it(
    backend: Backend, contract_event, reference_event: Path  # type: ignore[no-untyped-def]
) -> None:
    event = contract_event(("logreg",))
    store = dispatch(event)
    [row] = store.all()
    assert (row.state, row.attempts, row.returncode, row.error) == (State.SCORED, 1, 0, None)
    expected = read_scores(reference_event / "submissions" / "logreg" / "training_output")
    published = event.dirs.predictions.path / "logreg"
    assert read_scores(published).bagged == expected.bagged
    assert row.score == expected.official("acc")
    assert sorted(p.name for p in published.iterdir()) == [
        "bagged_scores.csv", "fold_0", "fold_1", "fold_2"]
    log = (event.dirs.logs.path / "logreg" / "log").read_text()
    assert "CV fold 2" in log  # (no score table: the labels are hidden, the scorer scores)
    [run] = store.runs()
    assert (run.outcome, run.returncode) == (Outcome.SCORED, 0)
    assert run.slot in backend.slots


def test_a_failing_submission_gets_the_same_excerpt_everywhere(
    backend: Backend, contract_event, reference_event: Path  # type: ignore[no-untyped-def]
) -> None:
    event = contract_event(("broken",))
    store = dispatch(event)
    [row] = store.all()
    assert (row.state, row.returncode) == (State.TRAINING_ERROR, 1)
    expected = excerpt((reference_event / "logs" / "broken").read_text())
    assert expected.splitlines()[-1].startswith("ValueError: BrokenClassifier.fit")
    assert normalised(row.error or "") == normalised(expected)
    assert not (event.dirs.predictions.path / "broken").exists()


def test_a_timeout_kills_the_whole_tree_with_one_message(
    backend: Backend, contract_event  # type: ignore[no-untyped-def]
) -> None:
    # Long enough for ramp-test to reach fit even on a loaded machine: the point is
    # what the timeout leaves behind, not how soon it fires.
    event = contract_event(timeout=TIMEOUT)
    marker = unique("hang-")
    write_submission(submissions_dir(event), "hang", hanging_estimator(marker=marker))
    dispatched = threading.Thread(target=dispatch, args=(event,), daemon=True)
    dispatched.start()
    pids = hanging_run(marker, dispatched.is_alive)
    dispatched.join(timeout=180)
    assert not dispatched.is_alive()
    [row] = Store(event.store_path).all()
    assert (row.state, row.returncode, row.error) == (
        State.TRAINING_ERROR, 124, f"timed out after {TIMEOUT} s")
    log = (event.dirs.logs.path / "hang" / "log").read_text()
    assert log.endswith(f"\nramp-fleet: timed out after {TIMEOUT} s; the run was killed\n")
    assert alive(pids) == [], "the timeout must take the whole tree down, SIGTERM ignored or not"


def test_an_operator_stop_puts_the_run_back_and_stops_it(
    backend: Backend, contract_event  # type: ignore[no-untyped-def]
) -> None:
    event = contract_event(hunger_policy=None)
    marker = unique("hang-")
    write_submission(submissions_dir(event), "hang", hanging_estimator(marker=marker))
    dispatcher = Dispatcher(event, Quiet())
    thread = threading.Thread(target=dispatcher.run, daemon=True)
    thread.start()
    pids = hanging_run(marker, thread.is_alive)
    dispatcher.request_stop()
    dispatcher.request_stop()  # second interrupt: stop the runs now
    thread.join(timeout=60)
    assert not thread.is_alive()
    [row] = Store(event.store_path).all()
    assert (row.state, row.attempts) == (State.NEW, 0)
    assert alive(pids) == []
    assert [run.outcome for run in Store(event.store_path).runs()] == [Outcome.INTERRUPTED]


def test_a_retry_asked_mid_run_runs_it_again_and_stops_the_first(
    backend: Backend, contract_event  # type: ignore[no-untyped-def]
) -> None:
    event = contract_event(retrying=True)
    name = unique("retried_")  # no other run on this machine has it
    write_submission(submissions_dir(event), name)
    store = dispatch(event)
    [row] = store.all()
    assert (row.state, row.attempts) == (State.SCORED, 2), row.error
    assert [(run.attempt, run.outcome) for run in store.runs()] == [
        (1, Outcome.RETRY), (2, Outcome.SCORED)]
    expected = REASON if backend.name != "guide" else "the worker asked to retry"
    assert store.runs()[0].error == expected
    assert ("new", expected) in history(store, name)
    assert runs_of(name) == []


def test_a_hostile_name_is_only_a_name(
    backend: Backend, contract_event, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    event = contract_event(("logreg",))
    (submissions_dir(event) / "logreg").rename(submissions_dir(event) / HOSTILE_NAME)
    store = dispatch(event)
    assert [(row.name, row.state) for row in store.all()] == [(HOSTILE_NAME, State.SCORED)]
    assert (event.dirs.predictions.path / HOSTILE_NAME / "bagged_scores.csv").is_file()
    planted = [p for p in tmp_path.rglob("PWNED*")] + list(Path.cwd().glob("PWNED*"))
    assert planted == []


LINKING_ESTIMATOR = '''
    import os

    from sklearn.linear_model import LogisticRegression

    HERE = os.path.dirname(os.path.abspath(__file__))


    class Linker(LogisticRegression):
        def fit(self, X, y):
            out = os.path.join(HERE, "training_output")
            os.makedirs(out, exist_ok=True)
            if not os.path.lexists(os.path.join(out, "s")):
                os.symlink(".", os.path.join(out, "s"))
                os.symlink({secret!r}, os.path.join(out, "creds"))
            return super().fit(X, y)


    def get_estimator():
        return Linker(max_iter=500)
'''


def test_links_in_a_result_are_refused_and_nothing_leaks(
    backend: Backend, contract_event, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    secret = tmp_path / "SECRET"
    secret.write_text("DB_PASSWORD=hunter2\n")
    event = contract_event()
    write_submission(submissions_dir(event), "linker",
                     textwrap.dedent(LINKING_ESTIMATOR.format(secret=str(secret))))
    write_submission(submissions_dir(event), "logreg")
    store = dispatch(event)
    rows = {row.name: row for row in store.all()}
    assert rows["logreg"].state == State.SCORED
    linker = rows["linker"]
    assert linker.state == State.CHECKING_ERROR
    assert "is a symbolic link" in (linker.error or "")
    assert "a result holds regular files and folders only" in (linker.error or "")
    assert not (event.dirs.predictions.path / "linker").exists()
    for folder in (event.dirs.predictions.path, event.dirs.logs.path):
        assert [p for p in folder.rglob("*") if p.is_symlink()] == []
        assert all("hunter2" not in p.read_text(errors="replace")
                   for p in folder.rglob("*") if p.is_file())


STATUS_FIELDS = {
    "name": str, "state": str, "attempts": int, "worker": str, "submitted": str, "started": str,
    "finished": str, "returncode": int, "error": type(None), "peak_memory_mb": float,
    "score": float, "scores": dict, "team": type(None),
}


def test_status_json_has_the_same_fields_on_every_backend(
    backend: Backend, contract_event  # type: ignore[no-untyped-def]
) -> None:
    event = contract_event(("logreg",))
    dispatch(event)
    done = subprocess.run([sys.executable, "-m", "ramp_fleet", "status", "--json", str(event.path)],
                          capture_output=True, text=True, timeout=60, check=True)
    [row] = json.loads(done.stdout)
    assert {key: type(value) for key, value in row.items()} == STATUS_FIELDS
    assert 20 < row["peak_memory_mb"] < 2000, "the runner measured the run's peak"
    assert row["worker"] in backend.slots
