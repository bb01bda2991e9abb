"""Scores: computed from a run's predictions by trusted code, read back, and the official one.

* :mod:`~ramp_fleet.scoring.files` — the score files ramp-test writes, read with the
  standard library, and the official score type of a kit's ``problem.py``;
* :mod:`~ramp_fleet.scoring.program` — the trusted scorer: a process of the kit's own
  environment that scores predictions with the problem's score types, as ramp-test does,
  and never runs a participant's code;
* :mod:`~ramp_fleet.scoring.scorer` — the dispatcher's side of it.
"""

from ramp_fleet.scoring.files import (
    BAGGED_FILE,
    FOLD_FILE,
    ScoreError,
    Scores,
    ScoreType,
    official_score_type,
    read_scores,
)

__all__ = ["BAGGED_FILE", "FOLD_FILE", "ScoreError", "ScoreType", "Scores", "official_score_type",
           "read_scores"]
