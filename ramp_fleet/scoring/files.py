"""Scores of a trained submission, and the official score of its problem.

``ramp-test --save-output`` writes, under ``<submissions_dir>/<S>/training_output``::

    bagged_scores.csv        step,n_bag,<score>...   (valid/test rows, one per n_bag)
    fold_<i>/scores.csv      step,<score>...,time    (train/valid/test rows)
    fold_<i>/state.txt       scored | training_error | validating_error | ...
    fold_<i>/error.txt       the traceback, when the fold failed

The files are read with the standard library: the dispatcher must not import
pandas to read a dozen numbers. The problem's score types, on the other hand,
only exist as Python objects in ``problem.py``, so ``official_score_type``
imports rampwf — lazily, and once per version of the file.
"""

from __future__ import annotations

import csv
import functools
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ramp_fleet.errors import RampFleetError, UsageError

BAGGED_FILE = "bagged_scores.csv"
FOLD_FILE = "scores.csv"
#: Column of a fold's scores.csv that is a duration in seconds, not a score.
TIME_COLUMN = "time"
_FOLD_DIR = re.compile(r"fold_(\d+)")


class ScoreError(RampFleetError):
    """A training_output holds no usable scores (failed fold, missing or malformed file)."""


@dataclass(frozen=True)
class ScoreType:
    """What the leaderboard needs to know about a score: its name and direction."""

    name: str
    lower_is_better: bool
    precision: int


@dataclass(frozen=True)
class Scores:
    """The scores one ``ramp-test --save-output`` run wrote.

    ``folds[i][step][score]`` with steps ``train``/``valid``/``test``;
    ``bagged[step][score]`` with steps ``valid``/``test``, taken at the
    largest ``n_bag`` (all folds bagged); ``times[i][step]`` in seconds.
    """

    folds: list[dict[str, dict[str, float]]]
    bagged: dict[str, dict[str, float]]
    times: list[dict[str, float]] = field(default_factory=list)

    def official(self, score_name: str) -> float | None:
        """The bagged test score of that name (what RAMP ranks on), if it was computed."""
        return self.bagged.get("test", {}).get(score_name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy, as the store keeps it."""
        return {"folds": self.folds, "bagged": self.bagged, "times": self.times}


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


def official_score_type(kit_dir: Path) -> ScoreType:
    """The first score type of the kit's ``problem.py``: the event's official score.

    ``problem.py`` is executed as rampwf executes it, without registering a
    module or leaving its ``external_imports`` folder on ``sys.path``; the
    result is cached until the file changes.
    """
    problem = Path(kit_dir).resolve() / "problem.py"
    try:
        mtime_ns = problem.stat().st_mtime_ns
    except OSError as exc:
        raise UsageError(f"{problem}: cannot read the problem ({exc.strerror})") from None
    return _load_official_score_type(str(problem), mtime_ns)


@functools.lru_cache(maxsize=32)
def _load_official_score_type(problem: str, mtime_ns: int) -> ScoreType:
    """Execute ``problem`` and describe its first score type (cached per mtime)."""
    from rampwf.utils.importing import import_module_from_source

    external = str(Path(problem).parent / "external_imports")
    saved_path = list(sys.path)
    if Path(external).is_dir():
        sys.path.append(external)
    try:
        module = import_module_from_source(problem, "problem")
    except Exception as exc:
        raise UsageError(f"{problem}: loading failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path[:] = saved_path
    score_types = getattr(module, "score_types", None)
    if not score_types:
        raise UsageError(f"{problem}: defines no score_types")
    first = score_types[0]
    try:
        return ScoreType(
            name=str(first.name),
            lower_is_better=bool(first.is_lower_the_better),
            precision=int(getattr(first, "precision", 2)),
        )
    except AttributeError as exc:
        raise UsageError(f"{problem}: score_types[0] is not a rampwf score type ({exc})") from None


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
