"""Scores: computed from a run's predictions by trusted code, carried, and the official one.

* :mod:`~ramp_fleet.scoring.files` — what a scored run carries (:class:`Scores`);
* :mod:`~ramp_fleet.scoring.program` — the trusted scorer: a process of the kit's own
  environment that scores predictions with the problem's score types, as ramp-test does,
  and never runs a participant's code;
* :mod:`~ramp_fleet.scoring.scorer` — the dispatcher's side of it;
* :mod:`~ramp_fleet.scoring.official` — the event's official score, in one place.
"""

from ramp_fleet.scoring.files import ScoreError, Scores, ScoreType

__all__ = ["ScoreError", "ScoreType", "Scores"]
