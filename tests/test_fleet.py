"""Several events on one pool: the pool's shares and caps, and ``ramp-fleet dispatch`` of a
ramp-board deployment folder — its events served together, events added and removed as it
runs, a crash recovered with each submission scored once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from ramp_fleet.config import load_event_config
from ramp_fleet.pool import SlotPool
from ramp_fleet.store import State, Store
from ramp_fleet.store.records import Outcome
from tests.ramp_board import IRIS_ESTIMATOR, add_submission, event_config, make_deployment
from tests.waiting import PATIENCE, wait_for


class Endless:
    """A tenant with always something to run: each run lasts until released."""

    def __init__(self, name: str, has_work: bool = True, team_load: int = 0):
        self.name = name
        self.has_work = has_work
        self.team_load = team_load
        self.release = threading.Event()
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def peek(self) -> tuple[int, float] | None:
        return (self.team_load, 0.0) if self.has_work else None

    def take(self, label: str) -> bool:
        if not self.has_work:
            return False
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        self.release.wait()
        with self._lock:
            self.running -= 1
        return True


def settled(pool: SlotPool, expected: dict[str, int]) -> None:
    wait_for(lambda: pool.in_use() == expected, f"slots in use {expected} ({pool.in_use()})")


def test_free_slots_go_to_the_event_furthest_below_its_share() -> None:
    pool = SlotPool(4, "test")
    big, small = Endless("big"), Endless("small")
    try:
        pool.join(big, share=3, cap=4)
        pool.join(small, share=1, cap=4)
        settled(pool, {"big": 3, "small": 1})
        time.sleep(0.3)
        assert pool.in_use() == {"big": 3, "small": 1}, "and it stays so"
    finally:
        for tenant in (big, small):
            tenant.release.set()
            pool.leave(tenant)
        pool.close()


def test_an_event_with_nothing_to_run_leaves_its_share_to_the_others_up_to_their_cap() -> None:
    pool = SlotPool(4, "test")
    busy, idle = Endless("busy"), Endless("idle", has_work=False)
    try:
        pool.join(idle, share=10, cap=4)
        pool.join(busy, share=1, cap=3)
        settled(pool, {"busy": 3, "idle": 0})
        time.sleep(0.3)
        assert busy.most == 3, "its cap, though a slot is free"
    finally:
        busy.release.set()
        for tenant in (busy, idle):
            pool.leave(tenant)
        pool.close()


def test_a_teams_first_submission_goes_before_another_teams_tenth_across_events() -> None:
    """One slot, both events at their share: the one whose next submission's team has run
    least gets it, not the one that joined first."""
    pool = SlotPool(1, "test")
    heavy, first = (Endless("heavy", has_work=False, team_load=9),
                    Endless("first", has_work=False, team_load=0))
    try:
        pool.join(heavy, share=1, cap=1)
        pool.join(first, share=1, cap=1)
        heavy.has_work = first.has_work = True  # both ready when the slot looks
        pool.wake()
        settled(pool, {"heavy": 0, "first": 1})
    finally:
        for tenant in (heavy, first):
            tenant.release.set()
            pool.leave(tenant)
        pool.close()


def test_leaving_waits_for_the_events_runs_and_lends_no_more() -> None:
    pool = SlotPool(2, "test")
    tenant = Endless("leaving")
    pool.join(tenant, share=1, cap=2)
    settled(pool, {"leaving": 2})
    left = threading.Event()
    leaving = threading.Thread(target=lambda: (pool.leave(tenant), left.set()))
    leaving.start()
    time.sleep(0.3)
    assert not left.is_set(), "its runs are still going"
    tenant.release.set()
    leaving.join(PATIENCE)
    assert left.is_set() and pool.in_use() == {}
    pool.close()


# -- ramp-fleet dispatch DEPLOYMENT ------------------------------------------------------------


def fleet(*args: str) -> list[str]:
    return [sys.executable, "-m", "ramp_fleet", "dispatch", *args]


def states(config: Path) -> dict[str, State]:
    store = Store(load_event_config(config).store_path)
    try:
        return {row.name: row.state for row in store.all()}
    finally:
        store.close()


def test_a_deployments_events_are_served_together(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    first = make_deployment(deploy, "iris", event="first", submissions=2)
    second = make_deployment(deploy, "iris", event="second", submissions=3)
    make_deployment(deploy, "iris", event="not_named", submissions=1)
    done = subprocess.run(fleet(str(deploy), "--event", "first", "--event", "second",
                                "--slots", "2"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "first: 2 scored, 0 training errors, 0 checking errors, 0 waiting" in done.stdout
    assert "second: 3 scored, 0 training errors, 0 checking errors, 0 waiting" in done.stdout
    assert "[first] " in done.stdout and "[second] " in done.stdout, "lines name their event"
    assert set(states(first).values()) == set(states(second).values()) == {State.SCORED}
    assert not (deploy / "events" / "not_named" / "ramp-fleet.sqlite").exists()


def write_event(deploy: Path, name: str, submissions: int, **dispatcher: object) -> Path:
    """An event appearing in a running deployment: its folders first, its config last and
    whole (renamed into place), as ramp-board's deployment writes it."""
    event_dir = deploy / "events" / name
    for number in range(1, submissions + 1):
        add_submission(event_dir / "submissions", number, IRIS_ESTIMATOR)
    config = event_config("iris", name, dispatcher=dispatcher)
    staging = event_dir / ".config.yml.new"
    staging.write_text(yaml.safe_dump(config, sort_keys=False))
    staging.rename(event_dir / "config.yml")
    return event_dir / "config.yml"


def test_events_added_and_removed_while_it_runs(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    serving = {"hunger_policy": "sleep", "sleep_interval": 1}
    first = make_deployment(deploy, "iris", event="first", submissions=1, dispatcher=serving)
    with subprocess.Popen(fleet(str(deploy)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as running:
        try:
            wait_for(lambda: first.with_name("ramp-fleet.sqlite").exists()
                     and states(first) == {"submission_000000001": State.SCORED}, "first served")
            second = write_event(deploy, "second", 2, **serving)
            wait_for(lambda: second.with_name("ramp-fleet.sqlite").exists()
                     and set(states(second).values()) == {State.SCORED}, "second served")
            first.unlink()  # the event is gone: it finishes, the fleet goes on
            time.sleep(4)
            assert running.poll() is None, "the fleet serves the other event"
            add_submission(second.parent / "submissions", 3, IRIS_ESTIMATOR)
            wait_for(lambda: len(states(second)) == 3
                     and set(states(second).values()) == {State.SCORED}, "second still served")
            second.unlink()
            out, err = running.communicate(timeout=PATIENCE)
        finally:
            if running.poll() is None:
                running.kill()
    assert running.returncode == 0, out + err
    assert "event 'second' added" in err
    assert "event 'first': its config is gone; finishing what runs" in err
    assert "second: 3 scored" in out and "first: 1 scored" in out


def test_a_killed_fleet_restarts_and_scores_each_submission_once(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    slow = "import time\n\ntime.sleep(2)\n" + IRIS_ESTIMATOR
    configs = []
    for name in ("first", "second"):
        config = make_deployment(deploy, "iris", event=name)
        for number in (1, 2):
            add_submission(config.parent / "submissions", number, slow)
        configs.append(config)
    with subprocess.Popen(fleet(str(deploy), "--slots", "2"), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True) as killed:
        try:
            wait_for(lambda: all(c.with_name("ramp-fleet.sqlite").exists() for c in configs)
                     and any(State.TRAINING in states(c).values() for c in configs),
                     "a run training")
        finally:
            os.killpg(killed.pid, signal.SIGKILL)
    done = subprocess.run(fleet(str(deploy), "--slots", "2"), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for config in configs:
        store = Store(load_event_config(config).store_path)
        try:
            assert {row.state for row in store.all()} == {State.SCORED}
            scored = [run.submission for run in store.runs() if run.outcome == Outcome.SCORED]
        finally:
            store.close()
        assert sorted(scored) == ["submission_000000001", "submission_000000002"]


@pytest.mark.parametrize(("args", "says"), [
    (["--event", "nope"], "events: no nope/config.yml (--event)"),
    (["--slots", "0"], "--slots"),
])
def test_a_bad_fleet_is_one_line_and_exit_2(tmp_path: Path, args: list[str], says: str) -> None:
    deploy = tmp_path / "deploy"
    make_deployment(deploy, "iris", event="first", submissions=1)
    done = subprocess.run(fleet(str(deploy), *args), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (deploy / "events" / "first" / "ramp-fleet.sqlite").exists(), "nothing ran"


def test_slots_for_one_config_and_an_empty_deployment_are_refused(tmp_path: Path) -> None:
    config = make_deployment(tmp_path / "deploy", "iris", event="first")
    one = subprocess.run(fleet(str(config), "--slots", "2"), capture_output=True, text=True,
                         timeout=60)
    assert one.returncode == 2 and "--slots: for several events" in one.stderr, one.stderr
    config.unlink()
    empty = subprocess.run(fleet(str(tmp_path / "deploy")), capture_output=True, text=True,
                           timeout=60)
    assert empty.returncode == 2 and "no event (<name>/config.yml) to serve" in empty.stderr
