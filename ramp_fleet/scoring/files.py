"""What a scored run carries: its scores, the score types, and the error when there are none.

The trusted scorer (:mod:`ramp_fleet.scoring.program`) computes the scores and
writes the files ramp-test writes; the dispatcher receives them as
:class:`Scores`, never by reading the files back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ramp_fleet.errors import RampFleetError


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
