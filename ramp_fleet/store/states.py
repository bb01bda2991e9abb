"""Submission states, with ramp-database's names, and their legal transitions."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    NEW = "new"
    SENT_TO_TRAINING = "sent_to_training"
    TRAINING = "training"
    TESTED = "tested"
    SCORED = "scored"
    #: Setup or launch failed: RAMP's side (a broken env, no instance...).
    CHECKING_ERROR = "checking_error"
    #: The submission failed or timed out: the participant's side.
    TRAINING_ERROR = "training_error"


#: States whose run may still be going on somewhere.
ACTIVE = frozenset({State.SENT_TO_TRAINING, State.TRAINING, State.TESTED})
FINAL = frozenset({State.SCORED, State.CHECKING_ERROR, State.TRAINING_ERROR})

TRANSITIONS: dict[State, frozenset[State]] = {
    State.NEW: frozenset({State.SENT_TO_TRAINING}),
    State.SENT_TO_TRAINING: frozenset({State.TRAINING, State.CHECKING_ERROR, State.NEW}),
    State.TRAINING: frozenset(
        {State.TESTED, State.TRAINING_ERROR, State.CHECKING_ERROR, State.NEW}
    ),
    State.TESTED: frozenset({State.SCORED, State.CHECKING_ERROR, State.NEW}),
    State.SCORED: frozenset(),
    State.CHECKING_ERROR: frozenset(),
    State.TRAINING_ERROR: frozenset(),
}


class IllegalStateChange(RuntimeError):
    """A submission moved between states in a way the table forbids: a bug."""


def check_state_change(current: State, new: State) -> None:
    if new not in TRANSITIONS[current]:
        raise IllegalStateChange(f"submission state cannot go from {current} to {new}")
