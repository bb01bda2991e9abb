"""The store: legal state changes only, atomic claims, names that are safe."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ramp_fleet.config import load_event_config
from ramp_fleet.errors import UsageError
from ramp_fleet.store import IllegalStateChange, State, Store
from ramp_fleet.store.names import name_problem
from ramp_fleet.store.states import TRANSITIONS
from ramp_fleet.store.submissions import discover, submit
from tests.conftest import EventFactory, write_submission


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store.sqlite")


def test_the_happy_path_follows_ramp_database_names(store: Store) -> None:
    store.add("a")
    claimed = store.claim_next("conda-1")
    assert claimed is not None and claimed.state == State.SENT_TO_TRAINING and claimed.attempts == 1
    store.mark_training("a", pgid=1234)
    store.mark_tested("a", 0, 12.5)
    store.mark_scored("a", 0.9, {"bagged": {}})
    row = store.get("a")
    assert row is not None
    assert (row.state, row.score, row.peak_memory_mb, row.pgid) == (State.SCORED, 0.9, 12.5, None)
    assert [state for state, _ in store.history("a")] == [
        "new", "sent_to_training", "training", "tested", "scored"]


@pytest.mark.parametrize("current", list(State))
def test_every_change_outside_the_table_is_refused(store: Store, current: State) -> None:
    for target in State:
        if target in TRANSITIONS[current]:
            continue
        with pytest.raises(IllegalStateChange):
            from ramp_fleet.store.states import check_state_change
            check_state_change(current, target)


def test_a_scored_submission_cannot_be_scored_again(store: Store) -> None:
    store.add("a")
    store.claim_next("w")
    store.mark_training("a")
    store.mark_tested("a", 0, None)
    store.mark_scored("a", 1.0, {})
    with pytest.raises(IllegalStateChange):
        store.mark_scored("a", 0.5, {})
    assert store.get("a").score == 1.0  # type: ignore[union-attr]


def test_claims_take_the_oldest_ready_submission_once(store: Store) -> None:
    for name in ("a", "b"):
        store.add(name)
    first, second = store.claim_next("w1"), store.claim_next("w2")
    assert (first.name, second.name) == ("a", "b")  # type: ignore[union-attr]
    assert store.claim_next("w3") is None


def test_a_requeued_submission_waits_for_its_back_off(store: Store) -> None:
    import time

    store.add("a")
    store.claim_next("w")
    store.requeue("a", time.time() + 60, "spot interruption")
    assert store.claim_next("w") is None
    assert store.get("a").attempts == 1  # type: ignore[union-attr]
    assert store.next_ready_at() is not None


def test_recovery_returns_active_runs_to_new_without_counting_them(store: Store) -> None:
    for name in ("a", "b", "c"):
        store.add(name)
    store.claim_next("w")
    store.mark_training("a", pgid=4242)
    store.claim_next("w")
    recovered = store.recover()
    assert {s.name for s in recovered} == {"a", "b"}
    assert {s.name: s.pgid for s in recovered}["a"] == 4242
    assert {s.state for s in store.all()} == {State.NEW}
    assert all(s.attempts == 0 for s in store.all())


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", ".hidden", "a\\b", "tab\there",
                                  "nul\x00", " padded", "x" * 101, "a..b"])
def test_hostile_names_are_refused(name: str) -> None:
    assert name_problem(name) is not None


@pytest.mark.parametrize("name", ["logreg", "random_forest", "v2.1", "équipe-1"])
def test_ordinary_names_are_accepted(name: str) -> None:
    assert name_problem(name) is None


def test_submit_with_a_bad_name_writes_nothing(make_event: EventFactory, tmp_path: Path) -> None:
    event = load_event_config(make_event())
    source = write_submission(tmp_path / "incoming", "mine")
    store = Store(event.store_path)
    with pytest.raises(UsageError, match=r"submission name '\.\./evil'"):
        submit(event, store, source, name="../evil")
    assert store.all() == []
    assert list((event.path.parent / "submissions").iterdir()) == []
    assert not (tmp_path / "evil").exists()


def test_submit_copies_the_folder_and_records_it(make_event: EventFactory, tmp_path: Path) -> None:
    event = load_event_config(make_event())
    source = write_submission(tmp_path / "incoming", "mine")
    store = Store(event.store_path)
    assert submit(event, store, source, name="team_a") == "team_a"
    assert (event.path.parent / "submissions" / "team_a" / "estimator.py").is_file()
    assert store.get("team_a").state == State.NEW  # type: ignore[union-attr]
    with pytest.raises(UsageError, match="exists already"):
        submit(event, store, source, name="team_a")


def test_discovery_skips_badly_named_folders_with_a_warning(
    make_event: EventFactory, caplog: pytest.LogCaptureFixture
) -> None:
    event = load_event_config(make_event(("logreg",)))
    write_submission(event.path.parent / "submissions", ".hidden")
    write_submission(event.path.parent / "submissions", "new\nline")
    store = Store(event.store_path)
    with caplog.at_level(logging.WARNING):
        added = discover(event, store)
    assert added == ["logreg"]
    assert "new\\nline" in caplog.text
    assert discover(event, store) == []


def test_the_sandbox_is_trained_only_when_asked(make_event: EventFactory) -> None:
    event = load_event_config(make_event())
    store = Store(event.store_path)
    assert discover(event, store) == []
    event = load_event_config(make_event(ramp={"sandbox_as_submission": True}))
    assert discover(event, store) == ["starting_kit"]
