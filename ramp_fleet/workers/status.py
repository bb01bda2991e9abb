"""Worker statuses, with RAMP's names, and the one table of legal transitions."""

from __future__ import annotations

from enum import StrEnum


class WorkerStatus(StrEnum):
    INITIALIZED = "initialized"
    SETUP = "setup"
    RUNNING = "running"
    FINISHED = "finished"
    COLLECTED = "collected"
    RETRY = "retry"
    KILLED = "killed"
    ERROR = "error"
    TIMEOUT = "timeout"


S = WorkerStatus

#: Where each status may go next. Staying put is always allowed (a guide-style
#: worker sets ``'collected'`` again after ``super().collect_results()``).
#: ``killed`` is where ``teardown`` leaves every worker, whatever happened.
TRANSITIONS: dict[WorkerStatus, frozenset[WorkerStatus]] = {
    S.INITIALIZED: frozenset({S.SETUP, S.ERROR, S.RETRY, S.KILLED}),
    S.SETUP: frozenset({S.RUNNING, S.ERROR, S.RETRY, S.KILLED}),
    S.RUNNING: frozenset({S.FINISHED, S.TIMEOUT, S.COLLECTED, S.ERROR, S.RETRY, S.KILLED}),
    S.FINISHED: frozenset({S.COLLECTED, S.ERROR, S.RETRY, S.KILLED}),
    S.TIMEOUT: frozenset({S.COLLECTED, S.ERROR, S.RETRY, S.KILLED}),
    S.COLLECTED: frozenset({S.KILLED}),
    S.ERROR: frozenset({S.KILLED}),
    S.RETRY: frozenset({S.KILLED}),
    S.KILLED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A worker moved between statuses in a way the table forbids: a bug."""


def check_transition(current: WorkerStatus, new: WorkerStatus) -> None:
    if new != current and new not in TRANSITIONS[current]:
        raise IllegalTransition(f"worker status cannot go from {current!s} to {new!s}")
