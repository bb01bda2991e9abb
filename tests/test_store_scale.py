"""The store off the critical path and cheap to read: a read never waits for a write in
progress, the schema of an older store is brought up to date, and the leaderboard and
``status`` read the store only (the official score is recorded, never re-imported)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ramp_fleet.config import load_event_config
from ramp_fleet.leaderboard import build_leaderboard
from ramp_fleet.store import State, Store
from ramp_fleet.store.db import SCHEMA_VERSION
from tests.conftest import EventFactory
from tests.store_helpers import status_json

#: A deadlock detector, not a timing: a read that waits for the write waits forever here.
HANG = 60.0


def scored(store: Store, name: str, acc: float, peak: float | None = None) -> None:
    store.add(name)
    assert store.claim_next("w") is not None
    store.mark_training(name)
    bagged = {"valid": {"acc": acc}, "test": {"acc": acc, "nll": 1 - acc}}
    folds = [{"train": {"acc": 1.0}, "valid": {"acc": acc}, "test": {"acc": acc}}]
    store.record_scored(name, returncode=0, peak_memory_mb=peak, score=acc,
                        scores={"folds": folds, "bagged": bagged})


def test_a_read_does_not_wait_for_a_write_in_progress(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.sqlite")
    store.add("a")
    inside, release = threading.Event(), threading.Event()

    def slow_write() -> None:
        with store._transaction() as db:  # a state change that takes its time
            db.execute("UPDATE submissions SET worker = 'w' WHERE name = 'a'")
            inside.set()
            release.wait()

    writer = threading.Thread(target=slow_write)
    writer.start()
    assert inside.wait(HANG)
    answers: list[object] = []
    reader = threading.Thread(target=lambda: answers.extend(
        [store.count(State.NEW), store.outstanding(), store.get("a")]))
    reader.start()
    reader.join(HANG)
    read_while_writing = not reader.is_alive()
    release.set()
    writer.join()
    reader.join()
    assert read_while_writing, "a read waited for another thread's write"
    assert answers[:2] == [1, (1, 0)]
    assert answers[2].worker is None  # type: ignore[attr-defined]  # committed state only
    assert store.get("a").worker == "w"  # type: ignore[union-attr]
    store.close()


def test_each_thread_reads_through_its_own_connection_and_close_ends_them(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.sqlite")
    store.add("a")
    seen: list[set[str]] = []
    threads = [threading.Thread(target=lambda: seen.append(store.names())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [{"a"}] * 4
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        store.names()


def test_a_store_of_any_older_version_is_brought_to_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE submissions (name TEXT PRIMARY KEY, state TEXT NOT NULL, "
                   "attempts INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL DEFAULT 0, "
                   "worker TEXT, pgid INTEGER, submitted REAL NOT NULL, started REAL, "
                   "finished REAL, "
                   "returncode INTEGER, error TEXT, peak_memory_mb REAL, score REAL, "
                   "scores TEXT)")
        db.execute("INSERT INTO submissions (name, state, submitted) VALUES ('a', 'new', 1)")
        db.execute("INSERT INTO submissions (name, state, submitted, scores) VALUES ('b', "
                   "'scored', 2, '{\"folds\": [], \"bagged\": {\"test\": {\"acc\": 0.5}}}')")
    Store(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        columns = {row[1] for row in db.execute("PRAGMA table_info(submissions)")}
        indexes = {row[1] for row in db.execute("PRAGMA index_list(submissions)")}
    assert {"run_state", "source_id"} <= columns
    assert "submissions_queue" in indexes
    store = Store(path)  # a second open of a current store changes nothing
    assert store.official_score() is None
    assert [(name, json.loads(test)) for name, _, test in store.scored_test_scores()] == [
        ("b", {"acc": 0.5})]  # the test scores of what was scored before, kept apart
    assert store.claim_next("w") is not None
    store.close()


def test_the_first_recorded_official_score_is_kept(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.sqlite")
    assert store.record_official_score("acc", False) == ("acc", False)
    assert store.record_official_score("nll", True) == ("acc", False)
    store.close()


def test_the_leaderboard_reads_the_recorded_score_not_the_kit(
    make_event: EventFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = load_event_config(make_event())
    store = Store(event.store_path)
    for name, acc, peak in (("b", 0.9, None), ("a", 0.9, 10.0), ("c", 0.5, None)):
        scored(store, name, acc, peak)
    store.record_official_score("nll", True)  # lower is better: a and b (0.1) tie first
    store.close()

    def no_kit(kit: Path) -> object:
        raise AssertionError("the kit was imported")

    monkeypatch.setattr("ramp_fleet.scoring.official.official_score_type", no_kit)
    board = build_leaderboard(event)
    assert (board.official, board.lower_is_better) == ("nll", True)
    assert board.score_names == ["nll", "acc"]
    assert [(e.rank, e.name) for e in board.entries] == [(1, "a"), (1, "b"), (3, "c")]
    assert board.entries[0].peak_memory_mb == 10.0
    assert board.entries[2].scores == {"acc": 0.5, "nll": 0.5}


def test_a_store_scored_before_the_score_was_recorded_asks_the_kit_once(
    make_event: EventFactory,
) -> None:
    event = load_event_config(make_event())
    store = Store(event.store_path)
    scored(store, "a", 0.8)
    assert store.official_score() is None
    store.close()
    board = build_leaderboard(event)  # iris: acc, higher is better
    assert (board.official, board.lower_is_better) == ("acc", False)
    store = Store(event.store_path)
    assert store.official_score() == ("acc", False)
    store.close()


PROBE = """
import sys
from ramp_fleet.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    assert not exc.code, exc.code
print('HEAVY', [m for m in ('rampwf', 'sklearn', 'pandas', 'numpy') if m in sys.modules],
      file=sys.stderr)
"""


@pytest.mark.parametrize("command", [["leaderboard"], ["leaderboard", "--json"],
                                     ["status"], ["status", "--json"]])
def test_status_and_leaderboard_import_nothing_of_the_kit(
    make_event: EventFactory, command: list[str]
) -> None:
    config = make_event()
    event = load_event_config(config)
    store = Store(event.store_path)
    scored(store, "a", 0.8)
    store.record_official_score("acc", False)
    store.close()
    done = subprocess.run([sys.executable, "-c", PROBE, command[0], str(config), *command[1:]],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stderr
    if command == ["status", "--json"]:
        store = Store(event.store_path)
        expected = [json.loads(json.dumps(status_json(s))) for s in store.all()]
        store.close()
        assert json.loads(done.stdout) == expected


def test_status_json_of_an_empty_event_is_an_empty_array(make_event: EventFactory) -> None:
    config = make_event()
    done = subprocess.run([sys.executable, "-m", "ramp_fleet", "status", str(config), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
