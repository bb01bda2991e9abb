"""The fair queue: a team's tenth submission does not go before another team's first."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ramp_fleet.config import load_event_config
from ramp_fleet.dispatcher import Dispatcher
from ramp_fleet.sources import FolderSource, submit
from ramp_fleet.store import State, Store
from ramp_fleet.store.fair import FIFO, QueuePolicy, Waiting, fair_next, fair_order, forecast
from tests.conftest import EXAMPLE, EventFactory
from tests.test_dispatcher import Quiet

FAIR = QueuePolicy()
NOW = 10_000.0


def waiting(name: str, team: str, age: float = 10.0) -> Waiting:
    return Waiting(name, team, NOW - age, NOW - age)


def test_the_team_with_the_fewest_runs_goes_first_then_its_oldest() -> None:
    queue = [waiting("busy-1", "busy", 50), waiting("busy-2", "busy", 40),
             waiting("quiet-2", "quiet", 20), waiting("quiet-1", "quiet", 30)]
    assert fair_next(queue, {"busy": 2}, NOW, FAIR) == queue[3]
    assert fair_next(queue, {}, NOW, FAIR) == queue[0], "equal loads: the oldest"


def test_the_order_alternates_between_teams_and_agrees_with_each_pick() -> None:
    queue = [waiting(f"busy-{i}", "busy", 100 - i) for i in range(4)]
    queue += [waiting("late", "late", 1), waiting("other", "other", 2)]
    order = [entry.name for entry in fair_order(queue, {}, NOW, FAIR)]
    assert order == ["busy-0", "other", "late", "busy-1", "busy-2", "busy-3"]
    left, load = list(queue), {}
    for expected in order:  # the forecast is the claims, one after the other
        chosen = fair_next(left, load, NOW, FAIR)
        assert chosen is not None and chosen.name == expected
        left.remove(chosen)
        load[chosen.team] = load.get(chosen.team, 0) + 1


def test_a_submission_waiting_past_max_wait_goes_before_any_turn() -> None:
    policy = QueuePolicy(max_wait=60)
    queue = [waiting("starved", "busy", 61), waiting("fresh", "new", 1)]
    assert fair_next(queue, {"busy": 9}, NOW, policy) == queue[0]
    assert [entry.name for entry in fair_order(queue, {"busy": 9}, NOW, policy)] == [
        "starved", "fresh"]


def test_the_forecast_fills_the_slots_in_queue_order() -> None:
    queue = [waiting(name, name) for name in "abc"]
    # 2 slots, one busy for 30 s more of a 60 s run: a now, b in 30 s, c in 60 s
    places = forecast(queue, [30.0], 2, 60.0, NOW)
    assert [(places[n].position, places[n].starts_in) for n in "abc"] == [
        (1, 0.0), (2, 30.0), (3, 60.0)]
    assert forecast(queue, [], 2, None, NOW)["c"].starts_in is None, "no run yet: unknown"


def claims(store: Store, policy: QueuePolicy) -> list[str]:
    taken = []
    while (submission := store.claim_next("slot", policy=policy)) is not None:
        taken.append(submission.name)
    return taken


def test_the_store_claims_in_the_fair_order(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.sqlite")
    try:
        store.add_many(["busy-1", "busy-2", "busy-3"], teams=["busy"] * 3)
        time.sleep(0.01)
        store.add("quiet-1", team="quiet")
        store.add("solo")  # no team: a team of its own
        assert claims(store, FAIR) == ["busy-1", "quiet-1", "solo", "busy-2", "busy-3"]
    finally:
        store.close()


def test_the_stores_claims_follow_the_pure_order_on_a_mixed_queue(tmp_path: Path) -> None:
    """The store picks among each team's head in SQL; it must agree with the pure order
    over the whole queue: teams and none, equal times, overdue submissions, delays."""
    rng = random.Random(3)
    store = Store(tmp_path / "store.sqlite")
    try:
        names = [f"s{i:03d}" for i in range(120)]
        teams = [rng.choice([None, None, "a", "b", "c", "d"]) for _ in names]
        store.add_many(names, teams=teams)
        now = time.time()
        ages = {name: rng.choice([0.0, 5.0, 5.0, 7200.0, 7300.0]) for name in names}
        delays = {name: rng.choice([0.0, 0.0, 0.0, 600.0]) for name in names}
        with store._transaction() as db:
            db.executemany("UPDATE submissions SET submitted = ?, not_before = ? WHERE name = ?",
                           [(now - ages[n], now - ages[n] + delays[n], n) for n in names])
        queue = [Waiting(name, team or name, now - ages[name], now - ages[name] + delays[name])
                 for name, team in zip(names, teams, strict=True)
                 if now - ages[name] + delays[name] <= now]
        expected = [entry.name for entry in fair_order(queue, {}, now, FAIR)]
        assert claims(store, FAIR) == expected
    finally:
        store.close()


def test_fifo_keeps_ramp_engines_order(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.sqlite")
    try:
        store.add_many(["busy-1", "busy-2"], teams=["busy"] * 2)
        time.sleep(0.01)
        store.add("quiet-1", team="quiet")
        assert claims(store, FIFO) == ["busy-1", "busy-2", "quiet-1"]
    finally:
        store.close()


def test_a_teams_recent_runs_count_against_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.sqlite")
    try:
        store.add_many(["busy-1"], teams=["busy"])
        assert claims(store, FAIR) == ["busy-1"]
        store.mark_failed("busy-1", State.CHECKING_ERROR, "it failed")
        store.add_many(["busy-2"], teams=["busy"])
        time.sleep(0.01)
        store.add_many(["quiet-1"], teams=["quiet"])
        assert claims(store, FAIR) == ["quiet-1", "busy-2"], "busy ran within the window"
    finally:
        store.close()


@pytest.mark.parametrize(("queue", "expected"), [
    ("fair", ["busy-1", "quiet-1", "busy-2", "busy-3"]),
    ("fifo", ["busy-1", "busy-2", "busy-3", "quiet-1"]),
])
def test_dispatch_runs_every_teams_first_submission_early(
        make_event: EventFactory, tmp_path: Path, queue: str, expected: list[str]) -> None:
    """One slot, real runs: the team that submitted three variants first does not push the
    other team's first submission behind all three (unless asked: ``queue: fifo``)."""
    config = make_event(dispatcher={"n_workers": 1, "queue": queue})
    event = load_event_config(config)
    logreg = EXAMPLE / "submissions" / "logreg"
    store = Store(event.store_path)
    try:
        for name, team in [("busy-1", "busy"), ("busy-2", "busy"), ("busy-3", "busy"),
                           ("quiet-1", "quiet")]:
            submit(event, store, logreg, name, team)
            time.sleep(0.01)
    finally:
        store.close()
    Dispatcher(event, Quiet()).run()
    store = Store(event.store_path)
    try:
        runs = sorted(store.runs(), key=lambda run: run.setup_start or 0.0)
        assert [run.submission for run in runs] == expected
        assert {row.name: row.team for row in store.all()} == {
            "busy-1": "busy", "busy-2": "busy", "busy-3": "busy", "quiet-1": "quiet"}
    finally:
        store.close()


def test_status_says_where_each_waiting_submission_stands(make_event: EventFactory) -> None:
    config = make_event(dispatcher={"n_workers": 1})
    source = EXAMPLE / "submissions" / "logreg"
    for name, team in [("busy-1", "busy"), ("busy-2", "busy"), ("quiet-1", "quiet")]:
        done = subprocess.run([sys.executable, "-m", "ramp_fleet", "submit", str(config),
                               str(source), "--name", name, "--team", team],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "ramp_fleet", "status", str(config), "--json"],
                          capture_output=True, text=True, timeout=60, check=True)
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert {name: (row["team"], row["queue_position"]) for name, row in rows.items()} == {
        "busy-1": ("busy", 1), "quiet-1": ("quiet", 2), "busy-2": ("busy", 3)}
    table = subprocess.run([sys.executable, "-m", "ramp_fleet", "status", str(config)],
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert table.splitlines()[0].split()[:5] == ["name", "team", "state", "queue", "starts"]


def test_a_dispatcher_finding_the_folder_at_once_claims_it_with_its_team(
        make_event: EventFactory) -> None:
    """``submit --team`` into a running event: the dispatcher looks at the folder without
    pause and claims what it finds; every claim must already know the team (before, the
    folder appeared before the record, and a quick dispatcher took it as a team of one)."""
    event = load_event_config(make_event())
    seen: dict[str, str | None] = {}
    stop = threading.Event()

    def dispatcher() -> None:
        source, store = FolderSource(event), Store(event.store_path)
        try:
            source.start(store)
            while not stop.is_set():
                source.discover(store)
                while (claimed := store.claim_next("slot")) is not None:
                    seen[claimed.name] = claimed.team
        finally:
            store.close()

    looking = threading.Thread(target=dispatcher)
    looking.start()
    store = Store(event.store_path)
    try:
        for index in range(40):
            submit(event, store, EXAMPLE / "submissions" / "logreg", f"busy-{index}", "busy")
        deadline = time.monotonic() + 30
        while len(seen) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        looking.join()
        store.close()
    assert len(seen) == 40
    assert {team for team in seen.values()} == {"busy"}, seen


def test_a_bad_team_name_is_refused_and_nothing_is_written(make_event: EventFactory) -> None:
    config = make_event()
    done = subprocess.run([sys.executable, "-m", "ramp_fleet", "submit", str(config),
                           str(EXAMPLE / "submissions" / "logreg"), "--team", "a\nb"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--team" in done.stderr, done.stderr
    assert not (config.parent / "submissions" / "logreg").exists()


def test_the_report_lists_the_queue_in_the_order_slots_will_take_it(
        make_event: EventFactory, tmp_path: Path) -> None:
    config = make_event(dispatcher={"n_workers": 1})
    event = load_event_config(config)
    store = Store(event.store_path)
    try:
        for name, team in [("busy-1", "busy"), ("busy-2", "busy"), ("quiet-1", "quiet")]:
            submit(event, store, EXAMPLE / "submissions" / "logreg", name, team)
            time.sleep(0.01)
    finally:
        store.close()
    done = subprocess.run([sys.executable, "-m", "ramp_fleet", "report", str(config), "--json"],
                          capture_output=True, text=True, timeout=120, check=True)
    queue = json.loads(done.stdout)["queue"]
    assert queue["policy"] == "fair"
    assert [(entry["position"], entry["submission"], entry["team"])
            for entry in queue["waiting"]] == [
        (1, "busy-1", "busy"), (2, "quiet-1", "quiet"), (3, "busy-2", "busy")]
    page = tmp_path / "report.html"
    subprocess.run([sys.executable, "-m", "ramp_fleet", "report", str(config), "-o", str(page)],
                   capture_output=True, text=True, timeout=120, check=True)
    html = page.read_text()
    queue_html = html[html.index('<h2 id="queue">'):html.index('<h2 id="timeline">')]
    assert [queue_html.index(f"<td>{name}</td>") for name in ("busy-1", "quiet-1", "busy-2")] \
        == sorted(queue_html.index(f"<td>{name}</td>") for name in ("busy-1", "quiet-1", "busy-2"))
