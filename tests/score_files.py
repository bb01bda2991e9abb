"""ramp-test's score files read back with the standard library: the tests' reference.

``ramp-test --save-output`` writes, under ``<submissions_dir>/<S>/training_output``::

    bagged_scores.csv        step,n_bag,<score>...   (valid/test rows, one per n_bag)
    fold_<i>/scores.csv      step,<score>...,time    (train/valid/test rows)
    fold_<i>/state.txt       scored | training_error | validating_error | ...
    fold_<i>/error.txt       the traceback, when the fold failed

The product never reads them back (the trusted scorer hands the dispatcher its
scores); the tests do, to compare what was published with what ramp-test wrote.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ramp_fleet.scoring import ScoreError, Scores

BAGGED_FILE = "bagged_scores.csv"
FOLD_FILE = "scores.csv"
#: Column of a fold's scores.csv that is a duration in seconds, not a score.
TIME_COLUMN = "time"
_FOLD_DIR = re.compile(r"fold_(\d+)")


def read_scores(training_output: Path) -> Scores:
    """Read the fold and bagged scores of one submission's ``training_output``.

    ``training_output`` is ramp-test's folder (``<submissions>/<S>/training_output``)
    or a published copy of it named after the submission (``<predictions_dir>/<S>``).

    Raises :class:`ScoreError`, naming the submission and the file, when a
    fold failed, a file is missing, or a file is not what ramp-test writes.
    """
    training_output = Path(training_output)
    submission = _submission_name(training_output)
    if not training_output.is_dir():
        raise _no_scores(submission, f"{training_output} is not a directory")
    fold_dirs = _fold_dirs(training_output)
    if not fold_dirs:
        raise _no_scores(submission, f"no fold_<i> directory in {training_output}")
    folds: list[dict[str, dict[str, float]]] = []
    times: list[dict[str, float]] = []
    for fold_dir in fold_dirs:
        path = fold_dir / FOLD_FILE
        if not path.is_file():
            raise _no_scores(submission, f"{path} is missing{_fold_failure(fold_dir)}")
        rows = _read_rows(path, submission, ("step",))
        fold_scores, fold_times = _fold_scores(path, rows, submission)
        folds.append(fold_scores)
        times.append(fold_times)
    bagged = _read_bagged(training_output / BAGGED_FILE, submission)
    return Scores(folds=folds, bagged=bagged, times=times)




# -- reading ramp-test's files -------------------------------------------------


def _no_scores(submission: str, reason: str) -> ScoreError:
    return ScoreError(f"training_output of {submission} has no scores: {reason}")


def _submission_name(training_output: Path) -> str:
    if training_output.name == "training_output":
        return training_output.parent.name
    return training_output.name


def _fold_dirs(training_output: Path) -> list[Path]:
    """``fold_<i>`` directories in fold order (``fold_10`` after ``fold_9``)."""
    numbered = []
    for child in training_output.iterdir():
        match = _FOLD_DIR.fullmatch(child.name)
        if match and child.is_dir():
            numbered.append((int(match.group(1)), child))
    return [path for _, path in sorted(numbered)]


def _fold_failure(fold_dir: Path) -> str:
    """Why a fold has no scores, from the state and error files ramp-test left."""
    state_file, error_file = fold_dir / "state.txt", fold_dir / "error.txt"
    state = state_file.read_text().strip() if state_file.is_file() else ""
    error = error_file.read_text().strip().splitlines() if error_file.is_file() else []
    detail = f" (state {state})" if state else ""
    if error:
        detail += f": {error[-1]}"
    return detail


def _read_rows(path: Path, submission: str, key_columns: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of a scores CSV, checked to have the key columns and a score column."""
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise _no_scores(submission, f"cannot read {path}: {exc}") from None
    missing = [column for column in key_columns if column not in header]
    if missing:
        raise _no_scores(submission, f"{path} has no {', '.join(missing)} column")
    if not [column for column in header if column not in (*key_columns, TIME_COLUMN)]:
        raise _no_scores(submission, f"{path} has no score column")
    if not rows:
        raise _no_scores(submission, f"{path} has no rows")
    for line, row in enumerate(rows, start=2):
        if None in row or None in row.values():
            raise _no_scores(submission, f"{path}, line {line}: not one value per column")
    return rows


def _number(path: Path, submission: str, row: dict[str, str], column: str) -> float:
    value = row[column]
    try:
        return float(value)
    except ValueError:
        raise _no_scores(
            submission, f"{path}: {column} of step {row.get('step')!r} is {value!r}, not a number"
        ) from None


def _fold_scores(
    path: Path, rows: list[dict[str, str]], submission: str
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    scores: dict[str, dict[str, float]] = {}
    times: dict[str, float] = {}
    for row in rows:
        step = row["step"]
        if step in scores:
            raise _no_scores(submission, f"{path} has two {step!r} rows")
        columns = [column for column in row if column not in ("step", TIME_COLUMN)]
        scores[step] = {column: _number(path, submission, row, column) for column in columns}
        if TIME_COLUMN in row:
            times[step] = _number(path, submission, row, TIME_COLUMN)
    return scores, times


def _read_bagged(path: Path, submission: str) -> dict[str, dict[str, float]]:
    """The bagged scores of every step at its largest ``n_bag`` (all folds combined)."""
    if not path.is_file():
        raise _no_scores(submission, f"{path} is missing")
    best: dict[str, tuple[float, dict[str, float]]] = {}
    for row in _read_rows(path, submission, ("step", "n_bag")):
        n_bag = _number(path, submission, row, "n_bag")
        columns = [column for column in row if column not in ("step", "n_bag")]
        values = {column: _number(path, submission, row, column) for column in columns}
        step = row["step"]
        if step not in best or n_bag > best[step][0]:
            best[step] = (n_bag, values)
    if "test" not in best:
        raise _no_scores(submission, f"{path} has no test row")
    return {step: values for step, (_, values) in best.items()}
