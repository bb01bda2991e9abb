"""The store: legal state changes only, atomic claims, names that are safe."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from ramp_fleet.config import load_event_config
from ramp_fleet.errors import UsageError
from ramp_fleet.sources import submit
from ramp_fleet.store import IllegalStateChange, State, Store
from ramp_fleet.store.names import name_problem
from tests.conftest import EventFactory, write_submission
from tests.store_helpers import discover, history


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store.sqlite")


def test_the_happy_path_follows_ramp_database_names(store: Store) -> None:
    store.add("a")
    claimed = store.claim_next("conda-1")
    assert claimed is not None and claimed.state == State.SENT_TO_TRAINING and claimed.attempts == 1
    store.mark_training("a", run_state="run-1")
    assert store.get("a").run_state == "run-1"  # type: ignore[union-attr]
    store.record_scored("a", returncode=0, peak_memory_mb=12.5, score=0.9, scores={"bagged": {}})
    row = store.get("a")
    assert row is not None
    assert (row.state, row.score, row.peak_memory_mb, row.run_state) == (State.SCORED, 0.9, 12.5, None)
    assert [state for state, _ in history(store, "a")] == [
        "new", "sent_to_training", "training", "tested", "scored"]


def test_a_scored_result_is_recorded_in_one_transaction(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from ramp_fleet.store.records import Outcome, RunPlace
    from ramp_fleet.store.states import TRANSITIONS

    store.add("a")
    store.claim_next("aws-1", "aws")
    store.mark_training("a")
    # A table where tested cannot go on to scored: the second move fails after the first.
    monkeypatch.setitem(TRANSITIONS, State.TESTED, frozenset({State.CHECKING_ERROR, State.NEW}))
    scores = {"folds": [], "bagged": {"test": {"acc": 0.9}}}
    with pytest.raises(IllegalStateChange):
        store.record_scored("a", returncode=0, peak_memory_mb=12.5, score=0.9, scores=scores)
    row = store.get("a")
    assert row is not None
    assert (row.state, row.returncode, row.peak_memory_mb) == (State.TRAINING, None, None)
    assert [state for state, _ in history(store, "a")] == ["new", "sent_to_training", "training"]
    [run] = store.runs()
    assert (run.outcome, run.ended, run.returncode) == (Outcome.RUNNING, None, None)

    monkeypatch.undo()
    ended = time.time() - 5
    store.record_scored("a", returncode=0, peak_memory_mb=12.5, ended=ended,
                        place=RunPlace(instance_id="i-1"), score=0.9, scores=scores)
    row = store.get("a")
    assert row is not None and (row.state, row.returncode, row.score, row.scores) == (
        State.SCORED, 0, 0.9, scores)
    assert row.finished is not None
    assert [(name, test) for name, _, test in store.scored_test_scores()] == [("a", '{"acc": 0.9}')]
    [run] = store.runs()
    assert (run.outcome, run.ended, run.returncode, run.peak_memory_mb, run.instance_id) == (
        Outcome.SCORED, ended, 0, 12.5, "i-1")


#: ramp-database's life of a submission, written out here rather than read from the code.
LEGAL = {
    ("new", "sent_to_training"),
    ("sent_to_training", "training"), ("sent_to_training", "checking_error"),
    ("sent_to_training", "new"),
    ("training", "tested"), ("training", "training_error"), ("training", "checking_error"),
    ("training", "new"),
    ("tested", "scored"), ("tested", "checking_error"), ("tested", "new"),
}


@pytest.mark.parametrize("current", list(State))
def test_exactly_ramps_state_changes_are_allowed(current: State) -> None:
    from ramp_fleet.store.states import check_state_change

    for target in State:
        if (current.value, target.value) in LEGAL:
            check_state_change(current, target)
        else:
            with pytest.raises(IllegalStateChange):
                check_state_change(current, target)


def test_a_scored_submission_cannot_be_scored_again(store: Store) -> None:
    store.add("a")
    store.claim_next("w")
    store.mark_training("a")
    store.record_scored("a", returncode=0, peak_memory_mb=None, score=1.0, scores={})
    with pytest.raises(IllegalStateChange):
        store.record_scored("a", returncode=0, peak_memory_mb=None, score=0.5, scores={})
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
    store.mark_training("a", run_state="dask-run-42")
    store.claim_next("w")
    recovered = store.recover()
    assert {s.name for s in recovered} == {"a", "b"}
    assert {s.name: s.run_state for s in recovered} == {"a": "dask-run-42", "b": None}
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


def test_each_attempt_is_recorded_with_the_state_change_that_ends_it(store: Store) -> None:
    import time

    from ramp_fleet.store.records import Outcome, RunPlace

    before = time.time()
    store.add("a")
    store.claim_next("aws-1", "aws")
    store.mark_training("a", None, RunPlace(instance_id="i-1", instance_type="t3.micro",
                                            market="spot"))
    store.requeue("a", 0, "spot interruption")
    store.claim_next("aws-2", "aws")
    store.mark_training("a")
    store.record_scored("a", returncode=0, peak_memory_mb=40.0, ended=time.time(), score=0.9, scores={})
    first, second = store.runs()
    assert (first.attempt, first.slot, first.backend, first.outcome, first.error) == (
        1, "aws-1", "aws", Outcome.RETRY, "spot interruption")
    assert (first.instance_id, first.instance_type, first.market) == ("i-1", "t3.micro", "spot")
    assert (second.attempt, second.slot, second.outcome, second.peak_memory_mb) == (
        2, "aws-2", Outcome.SCORED, 40.0)
    for run in (first, second):
        assert run.setup_start is not None and run.launched is not None
        assert before <= run.queued <= run.setup_start <= run.launched
        assert run.ended is not None and run.collected is not None
        assert run.launched <= run.ended <= run.collected


def test_runs_a_dead_dispatcher_left_are_recorded_as_interrupted(store: Store) -> None:
    from ramp_fleet.store.records import Outcome

    store.add("a")
    store.claim_next("w")
    store.recover()
    store.claim_next("w")
    store.mark_failed("a", State.CHECKING_ERROR, "no env")
    assert [(r.attempt, r.outcome) for r in store.runs()] == [
        (1, Outcome.INTERRUPTED), (1, Outcome.CHECKING_ERROR)]


def test_submit_never_follows_a_link_out_of_the_folder(
    make_event: EventFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    event = load_event_config(make_event())
    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key=hunter2")
    source = write_submission(tmp_path / "incoming", "mine")
    (source / "x").symlink_to(secret)
    with caplog.at_level(logging.WARNING):
        submit(event, Store(event.store_path), source)
    copied = event.dirs.submissions.path / "mine"
    assert sorted(p.name for p in copied.iterdir()) == ["estimator.py"]
    assert "skipped 'x'" in caplog.text and "a symbolic link" in caplog.text


def test_many_openers_of_a_new_store_all_get_it(tmp_path: Path) -> None:
    """The dispatcher and ``status`` (or a test) opening a new store at the same moment:
    SQLite refused the switch to WAL to the loser at once ("database is locked", 3 of 200
    new stores opened by 4 threads) until the opening waited for the winner."""
    failures: list[BaseException] = []

    def open_and_read(path: Path) -> None:
        try:
            store = Store(path)
            try:
                store.official_score()
            finally:
                store.close()
        except BaseException as exc:  # every failure is the finding
            failures.append(exc)

    for trial in range(200):
        path = tmp_path / f"store-{trial}.sqlite"
        openers = [threading.Thread(target=open_and_read, args=(path,)) for _ in range(4)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join()
    assert failures == []
