"""The worker API: RAMP's statuses, one transition table, guide compatibility."""

from __future__ import annotations

from typing import Any

import pytest

from ramp_fleet.config import EventConfig, load_event_config
from ramp_fleet.errors import UsageError
from ramp_fleet.workers import BaseWorker, IllegalTransition, WorkerStatus, worker_class
from ramp_fleet.workers.status import check_transition
from tests.conftest import EventFactory


class Minimal(BaseWorker):
    def _is_submission_finished(self) -> bool:
        return True


@pytest.fixture
def event(make_event: EventFactory) -> EventConfig:
    """An event whose worker is this module's own (its timeout: 10 s)."""
    return load_event_config(make_event(worker={"worker_type": "tests.test_workers:Minimal",
                                                "timeout": 10}))


def test_status_names_and_order_are_ramps() -> None:
    assert [s.value for s in WorkerStatus][:5] == [
        "initialized", "setup", "running", "finished", "collected"]


def test_the_lifecycle_walks_the_table(event: EventConfig) -> None:
    worker = Minimal(event, "s")
    assert worker.status == "initialized"
    worker.setup()
    worker.launch_submission()
    assert worker.status == "running"  # reading never polls
    assert worker.poll() == "finished"
    worker.collect_results()
    assert worker.status == "collected"
    worker.status = "collected"  # the guide sets it again after super()
    worker.teardown()
    assert worker.status == "killed"


#: RAMP's worker statuses, written out here rather than read from the code; every
#: status may go to killed (teardown), and stay where it is.
LEGAL = {
    ("initialized", "setup"), ("initialized", "error"), ("initialized", "retry"),
    ("setup", "running"), ("setup", "error"), ("setup", "retry"),
    ("running", "finished"), ("running", "timeout"), ("running", "collected"),
    ("running", "error"), ("running", "retry"),
    ("finished", "collected"), ("finished", "error"), ("finished", "retry"),
    ("timeout", "collected"), ("timeout", "error"), ("timeout", "retry"),
}


@pytest.mark.parametrize("current", list(WorkerStatus))
def test_exactly_ramps_moves_are_allowed(current: WorkerStatus) -> None:
    for target in WorkerStatus:
        legal = (current.value, target.value) in LEGAL or target == current or (
            target == WorkerStatus.KILLED and current != WorkerStatus.KILLED)
        if legal:
            check_transition(current, target)
        else:
            with pytest.raises(IllegalTransition):
                check_transition(current, target)


def test_an_illegal_assignment_fails_loudly(event: EventConfig) -> None:
    worker = Minimal(event, "s")
    with pytest.raises(IllegalTransition, match="initialized to collected"):
        worker.status = "collected"
    with pytest.raises(ValueError):
        worker.status = "bogus"


def test_teardown_of_a_worker_in_error_does_not_raise(event: EventConfig) -> None:
    worker = Minimal(event, "s")
    worker.status = "error"
    worker.teardown()
    assert worker.status == "killed"


def test_the_default_wait_times_out_through_kill_submission(make_event: EventFactory) -> None:
    import threading

    class Never(BaseWorker):
        def _is_submission_finished(self) -> bool:
            return False

    worker = Never(load_event_config(make_event(worker={"timeout": 0.2})), "s")
    worker.setup()
    worker.launch_submission()
    assert worker.wait(0.05, threading.Event()) == "timeout"


@pytest.mark.parametrize(("worker_type", "name"), [
    ("conda", "CondaEnvWorker"),
    ("tests.guide_worker:GuideWorker", "GuideWorker"),
])
def test_worker_types_resolve_to_classes(worker_type: str, name: str) -> None:
    cls: Any = worker_class(worker_type)
    assert cls.__name__ == name and issubclass(cls, BaseWorker)


def test_an_unknown_worker_type_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="must be one of conda, aws, dask"):
        worker_class("kubernetes")


def test_a_worker_registered_as_an_entry_point_is_found_by_name(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = tmp_path / "ramp_fleet_openstack-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ramp-fleet-openstack\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[ramp_fleet.workers]\nopenstack = tests.guide_worker:GuideWorker\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cls: Any = worker_class("openstack")
    assert cls.__name__ == "GuideWorker"
    from ramp_fleet.config.checks import custom_worker_problem

    assert custom_worker_problem("openstack") is None
