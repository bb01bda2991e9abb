"""A synthetic event, written into a real store through the Store's methods.

Slots work one attempt after another; about ``failure_rate`` of the attempts
fail (training or checking errors with realistic excerpts), some ask for a
retry and run again, the last attempt of a few slots is still running, and
the first ``aws_slots`` slots run on EC2 instances (spot on even slots,
reused now and then). Used by the report's tests, its benchmark and the
docs' screenshot.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from ramp_fleet.store import State, Store
from ramp_fleet.store.records import InstanceRecord, Outcome, RunRecord
from tests.store_helpers import add_run

START = 1_750_000_000.0
TRAINING_ERRORS = (
    "Traceback (most recent call last):\n  File \"submissions/{name}/estimator.py\", line 12, in fit\n"
    "ValueError: X has {n} features, but LogisticRegression is expecting 4 features as input.",
    "Traceback (most recent call last):\n  File \"estimator.py\", line 30, in fit\n"
    "numpy.core._exceptions._ArrayMemoryError: Unable to allocate {gib} GiB for an array "
    "with shape ({n}, 4096) and data type float64",
    "timed out after 7200 s",
    "Traceback (most recent call last):\n  File \"estimator.py\", line 1, in <module>\n"
    "ModuleNotFoundError: No module named 'xgboost'",
)
CHECKING_ERRORS = (
    "conda environment 'ramp-iris' not found",
    "InsufficientInstanceCapacity: no capacity for {type} in eu-west-3a",
)
RETRY_REASONS = ("spot instance interrupted", "SSH connection lost")


@dataclass
class SyntheticEvent:
    runs: list[RunRecord] = field(default_factory=list)
    instances: list[InstanceRecord] = field(default_factory=list)
    #: Submissions never claimed (state new).
    waiting: list[str] = field(default_factory=list)
    end: float = START

    def attempts(self) -> Iterator[tuple[str, list[RunRecord]]]:
        """Each submission with its attempts, in the order it was first queued."""
        by_name: dict[str, list[RunRecord]] = {}
        for run in sorted(self.runs, key=lambda r: (r.queued, r.attempt)):
            by_name.setdefault(run.submission, []).append(run)
        yield from by_name.items()


def synthetic_event(
    n_runs: int = 200,
    n_slots: int = 4,
    *,
    failure_rate: float = 0.08,
    retry_rate: float = 0.02,
    aws_slots: int = 1,
    n_waiting: int = 3,
    seed: int = 0,
    names: tuple[str, ...] = (),
    start: float = START,
    stretch: float = 1.0,
) -> SyntheticEvent:
    """``names`` are used first for the submissions (then ``submission_000000042``...);
    the event begins at ``start`` (epoch seconds), its trainings ``stretch`` times as long."""
    rng = np.random.default_rng(seed)
    event = SyntheticEvent(end=start)
    width = max(2, len(str(n_slots)))
    slots = [f"{'aws' if s < aws_slots else 'conda'}-{s + 1:0{width}d}" for s in range(n_slots)]
    cursor = np.full(n_slots, start) + rng.uniform(0, 30, n_slots)
    instance: list[InstanceRecord | None] = [None] * n_slots
    pending: list[tuple[str, int, float]] = []  # retries waiting for a slot, and since when
    counter = 0
    for i in range(n_runs):
        s = int(np.argmin(cursor))
        setup_start = float(cursor[s]) + rng.uniform(0.5, 5)
        if pending and pending[0][2] < setup_start:
            name, attempt, queued = pending.pop(0)
        else:
            name = names[counter] if counter < len(names) else f"submission_{counter:09d}"
            attempt, counter = 1, counter + 1
            queued = max(start, setup_start - rng.exponential(600))
        aws = s < aws_slots
        launched = setup_start + (rng.uniform(40, 120) if aws else rng.uniform(1, 5))
        ended = launched + stretch * float(np.clip(rng.lognormal(5.5, 0.9), 3, 7200))
        collected = ended + (rng.uniform(5, 30) if aws else rng.uniform(0.2, 2))
        run = RunRecord(name, attempt, slots[s], "aws" if aws else "conda", queued, setup_start, launched,
                        ended, collected, Outcome.SCORED, 0, None,
                        float(rng.lognormal(6.5, 0.7)) if aws else None)
        draw = rng.random()
        if draw < failure_rate * 0.8:
            n = int(rng.integers(2, 9))
            error = str(rng.choice(TRAINING_ERRORS)).format(name=name, n=n, gib=round(n * 1.7, 1))
            run = replace(run, outcome=Outcome.TRAINING_ERROR, returncode=124 if "timed" in error else 1,
                          error=error)
        elif draw < failure_rate:
            error = str(rng.choice(CHECKING_ERRORS)).format(type="c5.xlarge")
            run = replace(run, outcome=Outcome.CHECKING_ERROR, launched=None, ended=setup_start + 3,
                          collected=setup_start + 3.5, returncode=None, error=error)
        elif draw < failure_rate + retry_rate:
            run = replace(run, outcome=Outcome.RETRY, error=str(rng.choice(RETRY_REASONS)),
                          collected=None, returncode=None)
            pending.append((name, attempt + 1, ended + 5))
        if i >= n_runs - n_slots // 4 and run.outcome == Outcome.SCORED:
            run = replace(run, outcome=Outcome.RUNNING, ended=None, collected=None, returncode=None)
        if aws:
            run, instance[s] = _on_instance(event, run, instance[s], s, rng)
        event.runs.append(run)
        cursor[s] = max(v for v in (run.collected, run.ended, run.launched, setup_start) if v is not None)
        event.end = max(event.end, float(cursor[s]))
        if run.outcome == Outcome.RUNNING:
            cursor[s] = np.inf  # the slot is busy until the end
    event.waiting = [f"submission_{counter + k:09d}" for k in range(n_waiting)]
    return event


def _on_instance(
    event: SyntheticEvent, run: RunRecord, current: InstanceRecord | None, slot: int, rng: np.random.Generator
) -> tuple[RunRecord, InstanceRecord | None]:
    """Put an AWS run on the slot's reused instance, or a new one."""
    assert run.setup_start is not None
    end = run.collected if run.collected is not None else run.ended
    if current is None or rng.random() < 0.5:
        kind = "c5.xlarge" if slot % 3 == 2 else "t3.medium"
        market = "spot" if slot % 2 == 0 else "on-demand"
        current = InstanceRecord(f"i-{len(event.instances):017x}", kind, market, "eu-west-3",
                                 launched=run.setup_start + 0.5)
        event.instances.append(current)
    index = next(i for i, known in enumerate(event.instances) if known.instance_id == current.instance_id)
    current = replace(current, terminated=None if end is None else end + 5)
    event.instances[index] = current
    run = replace(run, instance_id=current.instance_id, instance_type=current.instance_type,
                  market=current.market)
    return run, current


def forget_recorded_runs(store: Store) -> None:
    """Drop the attempts the state changes above recorded, for the exact records to replace."""
    import sqlite3

    with sqlite3.connect(store.path) as db:
        db.execute("DELETE FROM runs")


def fill_store(store: Store, event: SyntheticEvent) -> None:
    """Write the event into the store: states and instances through its own methods, then the
    exact run records, written whole."""
    for name, attempts in event.attempts():
        store.add(name)
        for number, run in enumerate(attempts, start=1):
            claimed = store.claim_next(run.slot)
            assert claimed is not None and claimed.name == name, (claimed, name)
            if run.outcome == Outcome.CHECKING_ERROR:
                store.mark_failed(name, State.CHECKING_ERROR, run.error or "")
                continue
            store.mark_training(name)
            if run.outcome == Outcome.RETRY:
                # The last attempt was a retry: it waits for its back-off, out of the next claims' way.
                not_before = 0.0 if number < len(attempts) else time.time() + 3600
                store.requeue(name, not_before, run.error or "retry")
            elif run.outcome == Outcome.TRAINING_ERROR:
                store.mark_failed(name, State.TRAINING_ERROR, run.error or "", run.returncode,
                                  run.peak_memory_mb)
            elif run.outcome == Outcome.SCORED:
                store.record_scored(name, returncode=0, peak_memory_mb=run.peak_memory_mb, score=0.9,
                                    scores={"bagged": {}})
    for name in event.waiting:
        store.add(name)
    forget_recorded_runs(store)
    for run in event.runs:
        add_run(store, run)
    for instance in event.instances:
        store.save_instance(instance)
