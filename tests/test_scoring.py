"""ramp_fleet.scoring against real ramp-test output of the iris example, and bad files."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ramp_fleet.errors import UsageError
from ramp_fleet.scoring import ScoreError, Scores, ScoreType
from ramp_fleet.scoring.official import official_score_type
from tests.score_files import read_scores

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "iris"
RAMP_TEST = Path(sys.executable).parent / "ramp-test"
LABELS = ["setosa", "versicolor", "virginica"]
SCORE_NAMES = {"acc", "error", "nll", "macro_recall"}


@pytest.fixture
def event(reference_event: Path) -> Path:
    """A copy of the iris event where logreg, dummy and broken were run by ramp-test."""
    return reference_event


def output_of(event: Path, submission: str) -> Path:
    return event / "submissions" / submission / "training_output"


# -- real ramp-test output -----------------------------------------------------


def test_reads_every_fold_and_step_of_a_real_run(event: Path) -> None:
    scores = read_scores(output_of(event, "logreg"))
    assert len(scores.folds) == 3  # problem.py: StratifiedShuffleSplit(n_splits=3)
    for fold in scores.folds:
        assert set(fold) == {"train", "valid", "test"}
        for step_scores in fold.values():
            assert set(step_scores) == SCORE_NAMES  # "time" is not a score
            assert math.isclose(step_scores["acc"] + step_scores["error"], 1.0)
    assert set(scores.bagged) == {"valid", "test"}
    assert [set(t) for t in scores.times] == [{"train", "valid", "test"}] * 3
    assert all(t["train"] > 0 for t in scores.times)


def test_official_score_is_the_bagged_test_score_over_all_folds(event: Path) -> None:
    """Recompute the bagged test scores from the fold predictions ramp-test saved."""
    output = output_of(event, "logreg")
    probas = np.mean(
        [np.load(output / f"fold_{i}" / "y_pred_test.npz")["y_pred"] for i in range(3)], axis=0
    )
    test = (event / "ramp-data" / "iris" / "data" / "test.csv").read_text().splitlines()[1:]
    truth = np.array([LABELS.index(line.rsplit(",", 1)[1]) for line in test])
    accuracy = float(np.mean(probas.argmax(axis=1) == truth))
    normalised = np.clip(probas / probas.sum(axis=1, keepdims=True), 1e-15, 1 - 1e-15)
    nll = float(-np.mean(np.log(normalised[np.arange(len(truth)), truth])))

    scores = read_scores(output)
    assert scores.official("acc") == pytest.approx(accuracy)
    assert scores.official("nll") == pytest.approx(nll)  # differs at n_bag 0 and 1
    assert scores.official("no such score") is None


def test_a_good_submission_outscores_the_dummy(event: Path) -> None:
    logreg = read_scores(output_of(event, "logreg")).official("acc")
    dummy = read_scores(output_of(event, "dummy")).official("acc")
    assert logreg is not None and dummy is not None
    assert logreg > 0.85 > 0.6 > dummy


def test_a_submission_that_failed_has_no_scores_and_says_why(event: Path) -> None:
    with pytest.raises(ScoreError) as caught:
        read_scores(output_of(event, "broken"))
    message = str(caught.value)
    assert message.startswith("training_output of broken has no scores: ")
    assert "fold_0" in message and "training_error" in message
    assert "ValueError: BrokenClassifier.fit" in message


def test_to_dict_is_json_ready(event: Path) -> None:
    import dataclasses
    import json

    scores = read_scores(output_of(event, "logreg"))
    again = json.loads(json.dumps(dataclasses.asdict(scores)))
    assert Scores(**again) == scores


def test_official_score_type_is_the_first_of_the_example_problem() -> None:
    assert official_score_type(EXAMPLE / "ramp-kits" / "iris") == ScoreType(
        name="acc", lower_is_better=False, precision=3
    )


# -- official_score_type on hand-written kits ---------------------------------


def write_problem(kit: Path, body: str) -> Path:
    kit.mkdir(parents=True, exist_ok=True)
    problem = kit / "problem.py"
    problem.write_text(body)
    return problem


NLL_FIRST = textwrap.dedent("""
    import rampwf as rw
    score_types = [
        rw.score_types.NegativeLogLikelihood(name="nll", precision=4),
        rw.score_types.Accuracy(name="acc"),
    ]
""")


def test_official_score_type_keeps_the_direction_of_a_lower_is_better_score(
    tmp_path: Path,
) -> None:
    write_problem(tmp_path, NLL_FIRST)
    assert official_score_type(tmp_path) == ScoreType("nll", lower_is_better=True, precision=4)


def test_loading_a_problem_leaves_no_module_and_no_path_behind(tmp_path: Path) -> None:
    write_problem(tmp_path, NLL_FIRST + "\nimport helper_of_this_kit\n")
    (tmp_path / "external_imports").mkdir()
    (tmp_path / "external_imports" / "helper_of_this_kit.py").write_text("")
    path_before, problem_before = list(sys.path), sys.modules.get("problem")

    official_score_type(tmp_path)

    assert sys.path == path_before
    assert sys.modules.get("problem") is problem_before


def test_the_problem_is_read_once_per_version_of_the_file(tmp_path: Path) -> None:
    loads = tmp_path / "loads"
    problem = write_problem(
        tmp_path, f"with open({str(loads)!r}, 'a') as f:\n    f.write('x')\n" + NLL_FIRST
    )
    official_score_type(tmp_path)
    official_score_type(tmp_path)
    assert loads.read_text() == "x"

    problem.write_text(problem.read_text().replace('name="nll"', 'name="logloss"'))
    stat = problem.stat()
    os.utime(problem, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert official_score_type(tmp_path).name == "logloss"
    assert loads.read_text() == "xx"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("raise RuntimeError('kit is broken')\n", "RuntimeError: kit is broken"),
        ("score_types = []\n", "defines no score_types"),
        ("score_types = [object()]\n", "not a rampwf score type"),
    ],
)
def test_a_bad_problem_is_a_usage_error(tmp_path: Path, body: str, expected: str) -> None:
    problem = write_problem(tmp_path, body)
    with pytest.raises(UsageError, match=expected) as caught:
        official_score_type(tmp_path)
    assert str(caught.value).startswith(str(problem))


def test_a_kit_without_problem_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"problem\.py: cannot read the problem"):
        official_score_type(tmp_path / "no-kit")


def test_importing_scoring_does_not_import_rampwf_or_pandas() -> None:
    code = (
        "import sys, ramp_fleet.scoring\n"
        "heavy = {'rampwf', 'pandas', 'sklearn', 'numpy'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


# -- hand-written training_output ----------------------------------------------

FOLD = "step,acc,nll,time\ntrain,1.0,0.1,0.5\nvalid,0.9,0.2,0.01\ntest,0.8,0.3,0.02\n"
BAGGED = (
    "step,n_bag,acc,nll\n"
    "valid,0,0.9,0.2\nvalid,1,0.95,0.15\n"
    "test,1,0.85,0.25\ntest,0,0.8,0.3\n"  # not in n_bag order: the largest wins
)


def make_output(
    root: Path, folds: dict[str, str] | None = None, bagged: str | None = BAGGED
) -> Path:
    output = root / "sub" / "training_output"
    for name, text in (folds if folds is not None else {"fold_0": FOLD}).items():
        (output / name).mkdir(parents=True)
        (output / name / "scores.csv").write_text(text)
    output.mkdir(parents=True, exist_ok=True)
    if bagged is not None:
        (output / "bagged_scores.csv").write_text(bagged)
    return output


def test_the_bagged_row_with_the_most_folds_wins(tmp_path: Path) -> None:
    scores = read_scores(make_output(tmp_path))
    assert scores.bagged == {
        "valid": {"acc": 0.95, "nll": 0.15}, "test": {"acc": 0.85, "nll": 0.25}
    }
    assert scores.folds == [
        {"train": {"acc": 1.0, "nll": 0.1}, "valid": {"acc": 0.9, "nll": 0.2},
         "test": {"acc": 0.8, "nll": 0.3}}
    ]
    assert scores.times == [{"train": 0.5, "valid": 0.01, "test": 0.02}]


def test_folds_are_in_numeric_order(tmp_path: Path) -> None:
    folds = {f"fold_{i}": FOLD.replace("0.8,0.3", f"0.{i:02d},0.3") for i in (10, 2, 1, 9)}
    folds["fold_notes"] = FOLD  # not a fold directory
    scores = read_scores(make_output(tmp_path, folds))
    assert [fold["test"]["acc"] for fold in scores.folds] == [0.01, 0.02, 0.09, 0.10]


def test_not_a_number_is_kept_as_nan(tmp_path: Path) -> None:
    scores = read_scores(make_output(tmp_path, bagged=BAGGED.replace("0.85,0.25", "0.85,nan")))
    assert math.isnan(scores.bagged["test"]["nll"])


@pytest.mark.parametrize(
    ("folds", "bagged", "expected"),
    [
        ({}, BAGGED, "no fold_<i> directory"),
        ({"fold_0": FOLD}, None, "bagged_scores.csv is missing"),
        ({"fold_0": FOLD}, "", "bagged_scores.csv has no step, n_bag column"),
        ({"fold_0": FOLD}, "step,n_bag,acc\n", "bagged_scores.csv has no rows"),
        ({"fold_0": FOLD}, "step,n_bag\nvalid,0\n", "bagged_scores.csv has no score column"),
        ({"fold_0": FOLD}, "step,n_bag,acc\nvalid,0,0.9\n", "bagged_scores.csv has no test row"),
        ({"fold_0": FOLD}, "step,n_bag,acc\ntest,0,high\n", "acc of step 'test' is 'high'"),
        ({"fold_0": FOLD}, "step,n_bag,acc\ntest,0\n", "line 2: not one value per column"),
        ({"fold_0": FOLD}, "step,n_bag,acc\ntest,0,1,2\n", "line 2: not one value per column"),
        ({"fold_0": "acc,nll\n1,2\n"}, BAGGED, "scores.csv has no step column"),
        ({"fold_0": FOLD + "test,0.1,0.1,0.1\n"}, BAGGED, "has two 'test' rows"),
        ({"fold_0": FOLD.replace("0.01", "soon")}, BAGGED, "time of step 'valid' is 'soon'"),
    ],
)
def test_malformed_output_is_a_score_error(
    tmp_path: Path, folds: dict[str, str], bagged: str | None, expected: str
) -> None:
    with pytest.raises(ScoreError, match=expected) as caught:
        read_scores(make_output(tmp_path, folds, bagged))
    assert str(caught.value).startswith("training_output of sub has no scores: ")


def test_a_fold_without_scores_names_its_state(tmp_path: Path) -> None:
    output = make_output(tmp_path, {"fold_0": FOLD, "fold_1": FOLD})
    (output / "fold_1" / "scores.csv").unlink()
    (output / "fold_1" / "state.txt").write_text("validating_error")
    expected = r"fold_1/scores\.csv is missing \(state validating_error\)"
    with pytest.raises(ScoreError, match=expected):
        read_scores(output)


def test_a_missing_training_output_is_a_score_error(tmp_path: Path) -> None:
    with pytest.raises(ScoreError, match="is not a directory"):
        read_scores(tmp_path / "sub" / "training_output")


def test_a_published_copy_is_named_after_its_folder(event: Path, tmp_path: Path) -> None:
    """The conda worker copies training_output to <predictions_dir>/<S>."""
    published = tmp_path / "predictions" / "logreg"
    shutil.copytree(output_of(event, "logreg"), published)
    assert read_scores(published) == read_scores(output_of(event, "logreg"))
    (published / "bagged_scores.csv").unlink()
    with pytest.raises(ScoreError, match=r"^training_output of logreg has no scores: "):
        read_scores(published)


def test_the_scorer_finds_paths_into_the_data_folder_and_nothing_else(tmp_path: Path) -> None:
    """What refuses ``labels: hidden`` for a kit (an image kit's ``(folder, ids)``, a column
    of side files, absolute or relative to the data): never a value that only has a slash."""
    import pandas as pd

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ramp_fleet" / "scoring"))
    try:
        import program  # the scorer's program, as the kit's Python runs it
    finally:
        sys.path.pop(0)
    data = tmp_path / "ramp-data"
    (data / "data" / "fmri").mkdir(parents=True)
    (data / "data" / "fmri" / "a.csv").write_text("")
    side = str(data / "data" / "fmri" / "a.csv")
    assert program.path_into((str(data / "data"), np.arange(3)), str(data)) == str(data / "data")
    assert program.path_into(np.array([side, side]), str(data)) == side
    assert program.path_into(pd.DataFrame({"x": [1], "fmri": ["./data/fmri/a.csv"]}),
                             str(data)) == "./data/fmri/a.csv"
    titanic = pd.DataFrame({"Ticket": ["A/5 21171", "STON/O2. 3101282"], "Age": [22.0, None],
                            "Name": ["Braund, Mr. Owen Harris", "x/y"]})
    assert program.path_into(titanic, str(data)) is None
    assert program.path_into((str(tmp_path), np.arange(3)), str(data)) is None, "not the data's"
