"""Run and instance records go into the store and come back as they were written."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ramp_fleet.store import Store
from ramp_fleet.store.records import InstanceRecord, Outcome, RunRecord
from tests.store_helpers import add_run


def test_runs_and_instances_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.sqlite")
    first = RunRecord("a", 1, "aws-1", "aws", queued=10.0, setup_start=11.0, launched=40.0,
                      ended=100.0, collected=104.5, outcome=Outcome.RETRY, error="spot interruption",
                      instance_id="i-1", instance_type="t3.small", market="spot")
    second = RunRecord("a", 2, "aws-2", "aws", queued=120.0)
    ids = [add_run(store, first), add_run(store, second)]
    instance = InstanceRecord("i-1", "t3.small", "spot", "eu-west-3", launched=10.5)
    store.save_instance(instance)
    store.save_instance(replace(instance, terminated=106.0))
    store.close()

    reopened = Store(tmp_path / "store.sqlite")
    assert ids[1] > ids[0] > 0
    assert reopened.runs() == [first, second]
    assert reopened.runs()[0].outcome is Outcome.RETRY
    assert reopened.instances() == [replace(instance, terminated=106.0)]
