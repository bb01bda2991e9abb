"""Two events on one pool of slots, on every backend: each is served as it would be alone
(its own store, folders and scores), and together they never hold more slots than the
pool has, nor one event more than its ``n_workers``."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from ramp_fleet.config import EventConfig, load_event_config
from ramp_fleet.dispatcher import Dispatcher
from ramp_fleet.fleet import Fleet
from ramp_fleet.pool import SlotPool
from ramp_fleet.store import State, Store
from ramp_fleet.store.records import RunRecord
from tests.contract.conftest import Backend, Quiet
from tests.contract.test_contract import read_scores

SUBMISSIONS = ("logreg", "knn", "dummy")


def most_at_once(runs: list[RunRecord]) -> int:
    """The most runs that were set up or running at the same instant."""
    edges = sorted([(run.setup_start or 0.0, 1) for run in runs]
                   + [(run.collected or run.ended or 0.0, -1) for run in runs])
    now = most = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def serve(events: list[EventConfig], slots: int) -> Fleet:
    def make(event: EventConfig, pool: SlotPool) -> tuple[Dispatcher, Callable[[], None]]:
        return Dispatcher(event, Quiet(), pool=pool), lambda: None

    fleet = Fleet(load_event_config, make, say=print, slots=slots)
    fleet.serve(events)
    return fleet


def second_event(config: Path, name: str) -> EventConfig:
    """Another event beside the first, on the same kit and data: its own name, store,
    predictions and logs (``events/<name>``), a copy of the submissions."""
    shutil.copytree(config.parent / "submissions", config.parent / f"submissions-{name}")
    path = config.with_name(f"{name}.yml")
    text = config.read_text()
    assert "event_name: iris_test\n" in text and "submissions_dir: submissions\n" in text
    path.write_text(text.replace("event_name: iris_test\n", f"event_name: {name}\n").replace(
        "submissions_dir: submissions\n", f"submissions_dir: submissions-{name}\n"))
    return load_event_config(path)


def test_two_events_share_one_pool_and_each_is_served_as_alone(
    backend: Backend, contract_event  # type: ignore[no-untyped-def]
) -> None:
    busy = contract_event(SUBMISSIONS, n_workers=2)
    capped = second_event(busy.path, "iris_capped")
    # It would take both slots by its share; its n_workers keeps it to one.
    capped = load_event_config(_with_workers(capped.path, 1, share=10))
    fleet = serve([busy, capped], slots=2)
    assert [served.error for served in fleet.served.values()] == [None, None]
    runs: dict[str, list[RunRecord]] = {}
    for event in (busy, capped):
        store = Store(event.store_path)
        try:
            rows = store.all()
            event_runs = store.runs()
        finally:
            store.close()
        assert {(row.name, row.state) for row in rows} == {
            (name, State.SCORED) for name in SUBMISSIONS}, [(row.name, row.error) for row in rows]
        for name in SUBMISSIONS:
            assert read_scores(event.dirs.predictions.path / name).bagged, (event.event_name, name)
        assert len(event_runs) == len(SUBMISSIONS), "each scored once"
        runs[event.event_name] = event_runs
    assert busy.dirs.predictions.path != capped.dirs.predictions.path
    every_run = runs["iris_test"] + runs["iris_capped"]
    assert most_at_once(every_run) == 2, "the pool's 2 slots in use, never 2 per event"
    assert most_at_once(runs["iris_capped"]) == 1, "n_workers: 1 caps the event on the pool"
    assert {run.slot for run in every_run} <= backend.slots


def _with_workers(config: Path, n_workers: int, share: float) -> Path:
    text = config.read_text()
    assert "\n  n_workers: 2\n" in text
    config.write_text(text.replace("\n  n_workers: 2\n",
                                   f"\n  n_workers: {n_workers}\n  share: {share}\n"))
    return config
