"""``worker.isolation.labels: hidden``: the sandbox trains and predicts on what the trusted
scorer hands it, never the test labels, and what is published is ramp-test's own (issue 28).

Every backend: the conda worker links the file into the run folder, the AWS worker
uploads it, the Dask task receives it as bytes, a custom worker's runner finds it.
"""

from __future__ import annotations

import csv
import io
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from rampwf.utils.sanitize import _sanitize_input

from ramp_fleet.config import EventConfig, load_event_config
from ramp_fleet.dispatcher import Dispatcher
from ramp_fleet.progress import LogReporter
from ramp_fleet.store import State, Store
from tests.conftest import EventFactory, write_submission
from tests.contract.conftest import Backend, dispatch
from tests.waiting import dispatch_past_a_gate

pytestmark = pytest.mark.timeout(300)

HIDDEN = {"isolation": {"labels": "hidden"}}
TITANIC = Path(__file__).resolve().parents[1] / "fixtures" / "kits" / "titanic"

#: Looks everywhere it can for the test labels, at import (before any fit): the data
#: folder by its path, every ``test.csv``, and any file holding a line of the test set.
SEEKER = '''
import os
import pathlib
from sklearn.linear_model import LogisticRegression

DATA = {data!r}
LINE = {enil!r}[::-1]  # reversed: its own source does not hold the line
SKIP = ("/proc", "/sys", "/dev", "/usr")
found = []
if os.path.exists(os.path.join(DATA, "test.csv")):
    found.append("the data folder")
for top, folders, files in os.walk("/"):
    folders[:] = [f for f in folders if os.path.join(top, f) not in SKIP and f != "site-packages"]
    for name in files:
        path = os.path.join(top, name)
        try:
            if name == "test.csv" or (os.path.getsize(path) < 1 << 20
                                      and LINE in pathlib.Path(path).read_bytes()):
                found.append(path)
        except OSError:
            pass
print("SEEKER FOUND:", sorted(set(found)) or "nothing", flush=True)


def get_estimator():
    return LogisticRegression(max_iter=500)
'''


def seeker(data_dir: Path) -> str:
    test_csv = data_dir / "data" / "test.csv"
    line = test_csv.read_bytes().splitlines()[1]  # one labelled row of the private test set
    source = textwrap.dedent(SEEKER).format(data=str(data_dir / "data"), enil=line[::-1])
    _sanitize_input(source)  # what rampwf refuses would fail for another reason
    return source


def ramp_test_output(kit: Path, data: Path, source: Path, scratch: Path) -> Path:
    """``training_output`` of a plain ``ramp-test --save-output`` of ``source``."""
    subs = scratch / "submissions"
    shutil.copytree(source, subs / source.name)
    ramp_test = Path(sys.executable).parent / "ramp-test"
    subprocess.run([str(ramp_test), "--submission", source.name, "--ramp-kit-dir", str(kit),
                    "--ramp-data-dir", str(data), "--ramp-submission-dir", str(subs),
                    "--save-output", "--ignore-warning"], check=True, capture_output=True)
    return subs / source.name / "training_output"


def scores_without_times(path: Path) -> list[dict[str, str]]:
    with path.open() as table:
        return [{key: value for key, value in row.items() if key != "time"}
                for row in csv.DictReader(table)]


def test_hidden_labels_publish_what_ramp_test_publishes(
    backend: Backend, contract_event, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    event = contract_event(("logreg", "knn"), worker=HIDDEN)
    assert_as_ramp_test_publishes(event, ("logreg", "knn"), tmp_path)


def test_hidden_labels_on_titanic_publish_what_ramp_test_publishes(
        make_event: EventFactory, tmp_path: Path) -> None:
    """A DataFrame of mixed types with missing values, 8 folds, a ROC AUC."""
    config = make_event(worker=HIDDEN, ramp={"problem_name": "titanic"})
    root = config.parent
    shutil.copytree(TITANIC, root / "ramp-kits" / "titanic", ignore=shutil.ignore_patterns(
        "data", "submissions", "SOURCE.md"))
    shutil.copytree(TITANIC / "data", root / "ramp-data" / "titanic" / "data")
    shutil.copytree(TITANIC / "submissions" / "starting_kit",  # (which ramp-board never runs)
                    root / "submissions" / "logistic")
    assert_as_ramp_test_publishes(load_event_config(config), ("logistic",), tmp_path)


def assert_as_ramp_test_publishes(event: EventConfig, names: tuple[str, ...],
                                  scratch: Path) -> None:
    """Dispatched with the labels hidden, each of ``names`` is published as a plain
    ``ramp-test --save-output`` leaves it: same files, predictions, scores (times aside)."""
    store = dispatch(event)
    assert {row.name: row.state for row in store.all()} == dict.fromkeys(names, State.SCORED)
    for name in names:
        published = event.dirs.predictions.path / name
        reference = ramp_test_output(event.dirs.kit.path, event.dirs.data.path,
                                     event.dirs.submissions.path / name, scratch / name)
        files = sorted(str(p.relative_to(published)) for p in published.rglob("*"))
        assert files == sorted(str(p.relative_to(reference)) for p in reference.rglob("*"))
        assert (published / "bagged_scores.csv").read_bytes() == \
            (reference / "bagged_scores.csv").read_bytes(), "bagged scores to the float"
        for fold in sorted(reference.glob("fold_*")):
            mine = published / fold.name
            assert scores_without_times(mine / "scores.csv") == \
                scores_without_times(fold / "scores.csv")
            for suffix in ("train", "test"):
                ours = np.load(mine / f"y_pred_{suffix}.npz", allow_pickle=False)["y_pred"]
                theirs = np.load(fold / f"y_pred_{suffix}.npz", allow_pickle=False)["y_pred"]
                assert np.array_equal(ours, theirs)
            assert (mine / "state.txt").read_text() == (fold / "state.txt").read_text()
        log = (event.dirs.logs.path / name / "log").read_text()
        assert "labels hidden" in log and "Bagged scores" not in log, "not ramp-test's own run"


def test_with_hidden_labels_a_submission_finds_no_test_label(
    backend: Backend, contract_event  # type: ignore[no-untyped-def]
) -> None:
    """The same seeker finds the labels when they are visible: the search is a real one."""
    event = contract_event(worker=HIDDEN)
    write_submission(event.dirs.submissions.path, "seeker", seeker(event.dirs.data.path))
    store = dispatch(event)
    [row] = store.all()
    assert row.state == State.SCORED, row.error
    log = (event.dirs.logs.path / "seeker" / "log").read_text()
    assert "SEEKER FOUND: nothing" in log and "labels hidden" in log, log
    handed = pickle.loads(event.handed_data_path.read_bytes())
    assert set(handed) == {"X_train", "y_train", "X_test", "cv", "has_test"}
    assert len(handed["X_test"]) == 50 and "species" not in getattr(handed["X_test"], "columns", [])

    store.close()
    Path(event.store_path).unlink()
    visible = contract_event(worker={"isolation": {"labels": "visible"}})
    dispatch(visible)
    log = (visible.dirs.logs.path / "seeker" / "log").read_text()
    assert "SEEKER FOUND: ['" in log and "test.csv" in log, log


def test_hidden_labels_without_the_sandbox_is_a_config_error(make_event: EventFactory) -> None:
    config = make_event(worker={"isolation": {"labels": "hidden", "mode": "auto"}})
    done = subprocess.run([sys.executable, "-m", "ramp_fleet", "validate", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "labels: hidden needs mode: required" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("waiting", [("logreg",), ()], ids=["a-submission-waits", "empty"])
def test_a_kit_whose_data_names_files_in_the_data_folder_is_refused_when_the_event_starts(
        make_event: EventFactory, waiting: tuple[str, ...]) -> None:
    """An image kit's X is ``(folder, ids)``: its workflow opens files there while it
    predicts, which the sandbox cannot see with the labels hidden. The dispatcher says so
    as it starts, even when no submission waits (it serves on, ``hunger_policy: sleep``)."""
    config = make_event(waiting, worker=HIDDEN,
                        dispatcher={"hunger_policy": "sleep", "sleep_interval": 1})
    problem = config.parent / "ramp-kits" / "iris" / "problem.py"
    problem.write_text(problem.read_text().replace(
        "    return X_df, y_array\n",
        "    return (os.path.join(path, 'data'), X_df), y_array\n").replace(
        "    return cv.split(X, y)", "    return cv.split(y, y)"))
    done = subprocess.run([sys.executable, "-m", "ramp_fleet", "dispatch", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = [text for text in done.stderr.splitlines() if "labels: hidden" in text]
    assert line.endswith("X_train holds a path into the data folder ("
                         f"{config.parent / 'ramp-data' / 'iris' / 'data'}): the kit's workflow "
                         "reads files there while it trains or predicts, and labels: hidden "
                         "keeps that folder out of the run's view; use labels: visible for this "
                         "kit"), line
    assert "Traceback" not in done.stderr
    assert not (config.parent / "events" / "iris_test" / "predictions" / "logreg").exists()
    store = Store(load_event_config(config).store_path)
    try:
        assert [(row.name, row.state, row.attempts) for row in store.all()] == [
            (name, State.NEW, 0) for name in waiting], "nothing lost, nothing counted"
    finally:
        store.close()


def test_a_local_run_starts_while_the_trusted_scorer_still_loads_the_data(
        make_event: EventFactory) -> None:
    """A dispatcher's first runs do not wait, idle, for the scorer's start: each run imports
    its libraries meanwhile and takes its data when it comes. Here the scorer cannot load
    the data until the test opens a gate (only the scorer reads the data files)."""
    config = make_event(("logreg",), worker=HIDDEN)
    gate = config.parent / "gate"
    problem = config.parent / "ramp-kits" / "iris" / "problem.py"
    problem.write_text(problem.read_text().replace(
        'def get_train_data(path="."):\n',
        'def get_train_data(path="."):\n'
        f'    while not os.path.exists({str(gate)!r}):\n'
        '        import time; time.sleep(0.05)\n', 1))
    event = load_event_config(config)
    dispatcher = Dispatcher(event, LogReporter(io.StringIO()))
    store = Store(event.store_path)
    try:
        dispatch_past_a_gate(
            dispatcher.run, gate,
            lambda: any(row.name == "logreg" and row.state == State.TRAINING
                        for row in store.all()),
            "the run started before the scorer could hand it the data")
        [row] = store.all()
        assert row.state == State.SCORED, row
    finally:
        store.close()
