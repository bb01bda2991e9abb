"""A small AWS event written through the Store's methods, every figure known by hand.

Times are seconds after ``T``; the report is made at ``T + 1800``.

======== ======= ====================== ========================================
name     slot    outcome                instance (t3.medium, eu-west-3)
======== ======= ====================== ========================================
alpha    aws-1   scored                 i-a on-demand (reused by gamma)
beta     aws-2   training_error (3 f.)  i-b spot
gamma    aws-1   training_error (7 f.)  i-a
delta    aws-2   retry, then scored     i-c spot, then i-d on-demand
epsilon  aws-1   checking_error         none (no capacity)
eta      aws-10  still training         i-e on-demand, still running
zeta     -       new                    -
======== ======= ====================== ========================================
"""

from __future__ import annotations

from typing import Any

from ramp_fleet.store import State, Store
from ramp_fleet.store.records import InstanceRecord, Outcome, RunRecord
from tests.store_helpers import add_run

T = 1_750_000_000.0
NOW = T + 1800
FEATURES_ERROR = ("Traceback (most recent call last):\n"
                  "  File \"submissions/{name}/estimator.py\", line 9, in fit\n"
                  "ValueError: X has {n} features, but LogisticRegression is expecting 4 features as input.")


def _run(name: str, slot: str, times: tuple[float | None, ...], outcome: Outcome, attempt: int = 1,
         **extra: Any) -> RunRecord:
    queued, setup_start, launched, ended, collected = (None if t is None else T + t for t in times)
    assert queued is not None
    return RunRecord(name, attempt, slot, "aws", queued, setup_start, launched, ended, collected, outcome,
                     **extra)


RUNS = [
    _run("alpha", "aws-1", (0, 10, 70, 670, 680), Outcome.SCORED, returncode=0, peak_memory_mb=900.0,
         instance_id="i-a", instance_type="t3.medium", market="on-demand"),
    _run("beta", "aws-2", (0, 5, 65, 365, 370), Outcome.TRAINING_ERROR, returncode=1,
         error=FEATURES_ERROR.format(name="beta", n=3), peak_memory_mb=1500.0,
         instance_id="i-b", instance_type="t3.medium", market="spot"),
    _run("gamma", "aws-1", (1, 681, 690, 990, 1000), Outcome.TRAINING_ERROR, returncode=1,
         error=FEATURES_ERROR.format(name="gamma", n=7), peak_memory_mb=300.0,
         instance_id="i-a", instance_type="t3.medium", market="on-demand"),
    _run("delta", "aws-2", (2, 371, 431, 500, None), Outcome.RETRY, error="spot instance interrupted",
         instance_id="i-c", instance_type="t3.medium", market="spot"),
    _run("delta", "aws-2", (510, 515, 575, 875, 880), Outcome.SCORED, attempt=2, returncode=0,
         instance_id="i-d", instance_type="t3.medium", market="on-demand"),
    _run("epsilon", "aws-1", (3, 1001, None, 1004, 1005), Outcome.CHECKING_ERROR,
         error="InsufficientInstanceCapacity: no capacity for t3.medium in eu-west-3a"),
    _run("eta", "aws-10", (4, 900, 960, None, None), Outcome.RUNNING,
         instance_id="i-e", instance_type="t3.medium", market="on-demand"),
]
INSTANCES = [
    InstanceRecord("i-a", "t3.medium", "on-demand", "eu-west-3", T + 10, T + 1090),
    InstanceRecord("i-b", "t3.medium", "spot", "eu-west-3", T + 5, T + 375),
    InstanceRecord("i-c", "t3.medium", "spot", "eu-west-3", T + 371, T + 500),
    InstanceRecord("i-d", "t3.medium", "on-demand", "eu-west-3", T + 515, T + 885),
    InstanceRecord("i-e", "t3.medium", "on-demand", "eu-west-3", T + 900, None),
]
#: Instance lifetimes in seconds, by market.
SPOT_SECONDS = 370 + 129
ON_DEMAND_SECONDS = 1080 + 370 + 900


def fill(store: Store) -> None:
    from tests.report.synthetic import forget_recorded_runs

    """The submissions' states through the state machine, then the run and instance records."""
    for name in ("alpha", "beta", "gamma", "delta", "epsilon", "eta", "zeta"):
        store.add(name)
        if name == "zeta":
            continue
        assert store.claim_next("aws") is not None
        if name == "epsilon":
            store.mark_failed(name, State.CHECKING_ERROR, RUNS[5].error or "")
            continue
        store.mark_training(name)
        if name == "delta":
            store.requeue(name, 0.0, "spot instance interrupted")
            assert store.claim_next("aws") is not None
            store.mark_training(name)
        if name in ("beta", "gamma"):
            error = next(run.error for run in RUNS if run.submission == name)
            store.mark_failed(name, State.TRAINING_ERROR, error or "", 1)
        elif name in ("alpha", "delta"):
            store.record_scored(name, returncode=0, peak_memory_mb=None, score=0.97,
                                scores={"bagged": {}})
    forget_recorded_runs(store)
    for run in RUNS:
        add_run(store, run)
    for instance in INSTANCES:
        store.save_instance(instance)
