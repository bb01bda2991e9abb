"""``hunger_policy: exit`` ends only when nothing is new, waiting for a retry, or running."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ramp_fleet.config import load_event_config
from ramp_fleet.dispatcher import Dispatcher
from ramp_fleet.store import State, Store
from tests.ramp_board import make_deployment
from tests.test_dispatcher import Quiet

EVENTS = 50
SUBMISSIONS = 1
#: How much longer each read of the store's counts takes (a loaded machine): longer
#: than a slot takes to claim a submission coming back from its back-off.
READ_DELAY = 0.02


def slow_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every read of the store's counts takes longer, as on a loaded machine: whatever can
    slip between two reads gets the time to."""
    for name in ("count", "outstanding", "unfinished"):
        method = getattr(Store, name)

        def slowed(self: Store, *args: object, _method: object = method) -> object:
            answer = _method(self, *args)  # type: ignore[operator]
            time.sleep(READ_DELAY)
            return answer

        monkeypatch.setattr(Store, name, slowed)


@pytest.mark.slow
def test_exit_never_leaves_a_submission_waiting_for_its_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_reads(monkeypatch)
    left: dict[str, list[str]] = {}
    for number in range(EVENTS):
        config = make_deployment(
            tmp_path / f"deploy{number}", "iris", submissions=SUBMISSIONS,
            worker={"worker_type": "tests.instant_worker:InstantWorker", "retries": 2,
                    "run_seconds": 2 * READ_DELAY, "conda_env": None},
            dispatcher={"n_workers": 1, "retry_backoff": 0.001, "retry_backoff_max": 0.001,
                        "time_between_collection": 0.05},
        )
        event = load_event_config(config)
        summary = Dispatcher(event, Quiet()).run()
        store = Store(event.store_path)
        try:
            states = {s.name: s.state for s in store.all()}
        finally:
            store.close()
        unfinished = sorted(name for name, state in states.items()
                            if state != State.TRAINING_ERROR)
        if unfinished or summary.training_error != SUBMISSIONS:
            left[event.event_name + str(number)] = unfinished
    assert left == {}, f"{len(left)} of {EVENTS} events exited with work left: {left}"
