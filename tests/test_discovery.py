"""Finding new submission folders in O(new): a look at an unchanged folder lists nothing,
a folder added while the dispatcher runs is still found before it leaves.

Nothing here is timed: what is asserted is which submissions were run and how
many times the folder was listed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ramp_fleet import sources as folder_source
from ramp_fleet.config import load_event_config
from ramp_fleet.dispatcher import Dispatcher
from ramp_fleet.sources import FolderSource
from ramp_fleet.store import State, Store
from tests.conftest import EventFactory, write_submission
from tests.store_helpers import history
from tests.test_dispatcher import Quiet, run_in_thread
from tests.waiting import wait_for

#: Two hours ago: a folder time no listing can be in doubt about.
LONG_AGO = 2 * 3600


def count_listings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the listings of the submissions folder (every call of ``new_folders``)."""
    listed: list[int] = []
    real = folder_source.new_folders

    def counted(*args: object, **kwargs: object) -> list[str]:
        listed.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(folder_source, "new_folders", counted)
    return listed


def settle(folder: Path) -> None:
    """Set the folder's time back, as if its last change were long past."""
    past = os.stat(folder).st_mtime - LONG_AGO
    os.utime(folder, (past, past))


def instant_event(make_event: EventFactory, names: list[str], **worker: object) -> Path:
    config = make_event(worker={"worker_type": "tests.instant_worker:InstantWorker",
                                "retries": 0, "conda_env": None, **worker},
                        dispatcher={"n_workers": 4, "time_between_collection": 30})
    for name in names:
        write_submission(config.parent / "submissions", name)
    return config


def run(config: Path) -> dict[str, State]:
    event = load_event_config(config)
    Dispatcher(event, Quiet()).run()
    store = Store(event.store_path)
    try:
        return {s.name: s.state for s in store.all()}
    finally:
        store.close()


@pytest.mark.parametrize("settled", [True, False], ids=["folder-time-moves", "same-second"])
def test_a_folder_added_mid_run_is_run_before_the_dispatcher_exits(
    make_event: EventFactory, settled: bool
) -> None:
    # The first run adds `late`; time_between_collection is 30 s, far longer than the
    # event takes: `late` is found by the look before leaving, whether the folder's time
    # tells (settled: the time moves from hours ago to now) or the listing was too close
    # to the folder's last change to trust it (the racy rule).
    config = make_event(worker={"worker_type": "tests.late_worker:LateWorker", "conda_env": None,
                                "late_name": "late"},
                        dispatcher={"n_workers": 1, "time_between_collection": 30})
    write_submission(config.parent / "submissions", "first")
    if settled:
        settle(config.parent / "submissions")
    assert run(config) == {"first": State.TRAINING_ERROR, "late": State.TRAINING_ERROR}


def test_the_folder_is_listed_a_few_times_not_once_per_result(
    make_event: EventFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"sub_{i:02d}" for i in range(40)]
    config = instant_event(make_event, names)
    listed = count_listings(monkeypatch)
    assert run(config) == dict.fromkeys(names, State.TRAINING_ERROR)
    # at start, then at most: the first look (the start's listing was close to the folder's
    # last change), and the looks before leaving. One look per result would be 40.
    assert 1 <= len(listed) <= 4, listed


def test_an_unchanged_folder_is_not_listed_again(make_event: EventFactory,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    config = instant_event(make_event, ["a", "b"])
    submissions = config.parent / "submissions"
    settle(submissions)
    event = load_event_config(config)
    store = Store(event.store_path)
    try:
        source = FolderSource(event)
        assert source.start(store) == ["a", "b"]
        listed = count_listings(monkeypatch)
        assert source.discover(store) == [] and source.discover(store) == []
        assert listed == []  # one stat each, no listing
        write_submission(submissions, "c")
        assert source.discover(store) == ["c"]
        assert listed == [1]
    finally:
        store.close()


def test_a_folder_added_in_the_same_tick_as_a_listing_is_found(
    make_event: EventFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The folder's time does not move when an entry comes in the same clock tick as the
    # listing that saw it: a listing that close to the folder's time is not trusted.
    config = instant_event(make_event, ["a"])
    submissions = config.parent / "submissions"
    event = load_event_config(config)
    store = Store(event.store_path)
    try:
        source = FolderSource(event)
        assert source.start(store) == ["a"]
        seen = os.stat(submissions).st_mtime_ns
        write_submission(submissions, "b")
        os.utime(submissions, ns=(seen, seen))  # as if in the same tick
        assert source.discover(store) == ["b"]
    finally:
        store.close()


def test_a_listing_is_done_at_least_every_full_scan_interval(make_event: EventFactory) -> None:
    # A folder whose time lies (a clock that is not ours): the periodic listing finds it.
    config = instant_event(make_event, ["a"])
    submissions = config.parent / "submissions"
    settle(submissions)
    event = load_event_config(config)
    store = Store(event.store_path)
    try:
        source = FolderSource(event, full_scan_interval=0)
        assert source.start(store) == ["a"]
        seen = os.stat(submissions).st_mtime_ns
        write_submission(submissions, "b")
        os.utime(submissions, ns=(seen, seen))
        assert source.discover(store) == ["b"]
        never = FolderSource(event, full_scan_interval=3600)
        assert never.start(store) == []
        write_submission(submissions, "c")
        os.utime(submissions, ns=(seen, seen))
        assert never.discover(store) == []  # what the gate costs: up to the interval
    finally:
        store.close()


def test_names_added_to_the_store_elsewhere_are_not_added_twice(make_event: EventFactory) -> None:
    config = instant_event(make_event, ["a"])
    event = load_event_config(config)
    store = Store(event.store_path)
    try:
        source = FolderSource(event)
        assert source.start(store) == ["a"]
        write_submission(config.parent / "submissions", "b")
        store.add("b")  # `ramp-fleet submit` from another process
        assert source.discover(store) == ["b"]  # new to the dispatcher: its slots are woken
        assert store.names() == {"a", "b"}
        assert [state for state, _ in history(store, "b")] == ["new"]  # recorded once
    finally:
        store.close()


def test_a_folder_dropped_in_while_serving_is_run_at_once_not_at_the_next_look(
    make_event: EventFactory,
) -> None:
    # Both intervals are ten minutes: only the quick look (one stat of the folder every
    # 50 ms) can find `late` before the deadline. The folder's time is set back first, so
    # the drop moves it whatever the machine's load (a drop in the same clock tick as the
    # last listing leaves it as it was: that case waits for the interval, by design).
    config = make_event(worker={"worker_type": "tests.instant_worker:InstantWorker",
                                "retries": 0, "conda_env": None},
                        dispatcher={"hunger_policy": "sleep", "sleep_interval": 600,
                                    "time_between_collection": 600})
    submissions = config.parent / "submissions"
    settle(submissions)
    event = load_event_config(config)
    reporter = Quiet()
    dispatcher = Dispatcher(event, reporter)
    thread = run_in_thread(dispatcher)
    wait_for(reporter.watching.is_set, "the dispatcher watches: its first look is done")
    store = Store(event.store_path)  # not before: two first openings of a store race
    try:
        write_submission(submissions, "late")
        wait_for(lambda: store.get("late") is not None
                 and store.get("late").state == State.TRAINING_ERROR, "late run and failed", 60)
    finally:
        dispatcher.request_stop()
        thread.join(timeout=60)
        store.close()
    assert not thread.is_alive()
