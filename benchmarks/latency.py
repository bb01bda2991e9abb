"""What a participant waits: from "submit" to their score on the leaderboard.

A running ``ramp-fleet dispatch`` (``hunger_policy: sleep``, the conda worker,
isolated, 2 slots) serves a folder event copied from ``examples/iris``.
Submissions are made the way an organiser or a participant makes them:

* **idle**: one at a time with ``ramp-fleet submit`` into an idle event, each
  waited for before the next;
* **burst**: many at once (``ramp_fleet.sources.submit`` in a loop, so they
  land within a fraction of a second, as a class submitting before a deadline).

For each, *visible* is the first instant ``ramp-fleet leaderboard`` would list
it (``build_leaderboard``, what the command prints, polled every 20 ms in this
process). Printed: p50 / p95 / max of (visible − submitted), and the same minus
one bare ``ramp-test`` of the submission (median of 3): the overhead a
participant feels on top of their own code. Everything stays on this machine.

    python benchmarks/latency.py [--idle 5] [--burst 50] [--sleep-interval S]

With ``--ramp-board``, the same for a ramp-board event on a private
PostgreSQL (ramp-board's own deployment, ``make ramp-board-venv``): submitted
with ramp-database's ``add_submission``, visible when the name is in the
event's private leaderboard as the website reads it
(``tests/fixtures/ramp_board_participant.py``, in ramp-board's environment).
Also printed there: the SQL statements the dispatcher (and its helper) sent per
submission in each round, as PostgreSQL logged them (``log_statement=all``,
counted by application name), the burst's until the dispatcher has stopped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "iris"
POLL = 0.02
SUBMISSION = "logreg"
BOARD_EVENT = "iris_latency"


def make_event(root: Path, sleep_interval: float | None) -> Path:
    """examples/iris's kit and data, an empty event, a config that serves until stopped."""
    for part in ("ramp-kits", "ramp-data"):
        shutil.copytree(EXAMPLE / part, root / part)
    (root / "submissions").mkdir()
    config = yaml.safe_load((EXAMPLE / "config.yml").read_text())
    config["dispatcher"]["hunger_policy"] = "sleep"
    if sleep_interval is not None:
        config["dispatcher"]["sleep_interval"] = sleep_interval
    path = root / "config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def bare_ramp_test(root: Path, runs: int = 3) -> float:
    """Median seconds of one ``ramp-test`` of the submission, as the dispatcher runs it."""
    from ramp_fleet.sandbox.programs import ramp_test_argv, run_variables

    times = []
    for index in range(runs):
        scratch = root / f"bare_{index}"
        shutil.copytree(EXAMPLE / "submissions" / SUBMISSION, scratch / SUBMISSION)
        argv = ramp_test_argv(str(Path(sys.executable).parent / "ramp-test"), SUBMISSION,
                              str(root / "ramp-kits" / "iris"), str(root / "ramp-data" / "iris"),
                              str(scratch))
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**os.environ, **run_variables(1)})
        times.append(time.perf_counter() - started)
        shutil.rmtree(scratch)
    return statistics.median(times)


class Dispatch:
    """``ramp-fleet dispatch`` in a process of its own, stopped with SIGTERM at the end."""

    def __init__(self, config: Path, log: Path, application: str | None = None):
        self.log = log.open("w")
        env = None if application is None else {**os.environ, "PGAPPNAME": application}
        self.process = subprocess.Popen([sys.executable, "-m", "ramp_fleet", "dispatch",
                                         str(config)], stdout=self.log, stderr=subprocess.STDOUT,
                                        env=env)

    def wait_started(self, store: Path, timeout: float = 60.0) -> None:
        """Until its store exists and it has had a second to start its slots and scorer."""
        deadline = time.monotonic() + timeout
        while not store.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"dispatch did not start: {self.log.name}")
            time.sleep(POLL)
        time.sleep(1.0)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def visible(event, names: set[str], since: float, timeout: float = 600.0) -> dict[str, float]:
    """The instant (``time.time()``) each of ``names`` is first on the leaderboard."""
    from ramp_fleet.leaderboard import build_leaderboard

    seen: dict[str, float] = {}
    deadline = since + timeout
    while len(seen) < len(names):
        if time.time() > deadline:
            raise SystemExit(f"not on the leaderboard after {timeout:.0f} s: "
                             f"{sorted(names - set(seen))}")
        try:
            board = build_leaderboard(event)
        except Exception:  # no scored submission yet: the official score is not known
            board = None
        now = time.time()
        for entry in board.entries if board else ():
            if entry.name in names and entry.name not in seen:
                seen[entry.name] = now
        time.sleep(POLL)
    return seen


def idle_round(config: Path, event, count: int) -> list[float]:
    waits = []
    for index in range(count):
        name = f"idle_{index:03d}"
        submitted = time.time()
        subprocess.run([sys.executable, "-m", "ramp_fleet", "submit", str(config),
                        str(EXAMPLE / "submissions" / SUBMISSION), "--name", name],
                       check=True, stdout=subprocess.DEVNULL)
        waits.append(visible(event, {name}, submitted)[name] - submitted)
    return waits


def burst_round(event, count: int) -> list[float]:
    from ramp_fleet.sources import submit
    from ramp_fleet.store import Store

    store = Store(event.store_path)
    submitted: dict[str, float] = {}
    try:
        for index in range(count):
            name = f"burst_{index:03d}"
            submitted[name] = time.time()
            submit(event, store, EXAMPLE / "submissions" / SUBMISSION, name)
    finally:
        store.close()
    seen = visible(event, set(submitted), min(submitted.values()), timeout=60.0 * count)
    return [seen[name] - submitted[name] for name in sorted(submitted)]


#: The dispatcher's connections, as PostgreSQL names them (its helper inherits it).
APPLICATION = "ramp-fleet-latency"


def ramp_board_rounds(root: Path, args: argparse.Namespace
                      ) -> tuple[list[float], list[float], tuple[int, int]]:
    """Idle and burst submissions to a ramp-board event served by ``ramp-fleet dispatch``;
    and the statements it sent in each round."""
    sys.path.insert(0, str(REPO))
    from tests.fixtures.postgres import remove_postgres, start_postgres
    from tests.fixtures.ramp_board_event import Participant, deploy_event, ramp_board_python

    python = ramp_board_python()
    if not python.exists():
        raise SystemExit(f"ramp-board's environment is missing ({python}): make ramp-board-venv")
    server = start_postgres(settings=("log_statement=all", "log_line_prefix=%a|"))
    try:
        dispatcher = {"hunger_policy": "sleep", "n_workers": 2, "n_threads": 1,
                      "time_between_collection": 1}
        if args.sleep_interval is not None:
            dispatcher["sleep_interval"] = args.sleep_interval
        deployment = deploy_event(python, root / "deploy", server, "latency",
                                  [{"signup": "alice"}], BOARD_EVENT, dispatcher=dispatcher)
        settings = yaml.safe_load(deployment.event_config.read_text())
        settings["worker"] = {"worker_type": "conda", "conda_env": str(python.parent.parent),
                              "timeout": 600}
        settings["store"] = {"backend": "ramp-board", "ramp_board_python": str(python),
                             "deployment_config": str(deployment.root / "config.yml"),
                             "path": str(root / "board.sqlite")}
        config = deployment.event_config.with_name("ramp-fleet.yml")
        config.write_text(yaml.safe_dump(settings, sort_keys=False))
        dispatch = Dispatch(config, root / "board-dispatch.log", APPLICATION)
        participant = Participant(python, deployment.root / "config.yml", BOARD_EVENT)
        source = EXAMPLE / "submissions" / SUBMISSION
        try:
            dispatch.wait_started(root / "board.sqlite")
            idle_from = server.log_size()
            idle = []
            for index in range(args.idle):
                name = f"idle_{index:03d}"
                submitted = participant.submit("alice", name, source)
                seen = participant.visible([name], timeout=600)
                if name not in seen:
                    raise SystemExit(f"{name} never reached ramp-board's leaderboard")
                idle.append(seen[name] - submitted)
            burst_from = server.log_size()
            idle_statements = server.statements(idle_from, APPLICATION)
            submitted_at = {}
            for index in range(args.burst):
                name = f"burst_{index:03d}"
                submitted_at[name] = participant.submit("alice", name, source)
            seen = participant.visible(sorted(submitted_at), timeout=60 * max(args.burst, 1)) \
                if args.burst else {}
            missing = set(submitted_at) - set(seen)
            if missing:
                raise SystemExit(f"never on ramp-board's leaderboard: {sorted(missing)}")
            burst = [seen[name] - submitted_at[name] for name in sorted(submitted_at)]
        finally:
            participant.close()
            dispatch.stop()
        return idle, burst, (idle_statements, server.statements(burst_from, APPLICATION))
    finally:
        remove_postgres(server)


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (f"p50 {statistics.median(ordered):6.2f} s   p95 {p95:6.2f} s   "
            f"max {ordered[-1]:6.2f} s")


def print_waits(idle: list[float], burst: list[float], bare: float) -> None:
    print(f"idle,  {len(idle):3d} submissions   submit → leaderboard  {percentiles(idle)}")
    print(f"                          minus ramp-test       "
          f"{percentiles([wait - bare for wait in idle])}")
    if burst:
        print(f"burst, {len(burst):3d} submissions   submit → leaderboard  {percentiles(burst)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=5)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--ramp-board", action="store_true",
                        help="also serve a ramp-board event on a private PostgreSQL")
    parser.add_argument("--sleep-interval", type=float, default=None,
                        help="dispatcher.sleep_interval (default: the config's default)")
    args = parser.parse_args()
    from ramp_fleet.config import load_event_config

    root = Path(tempfile.mkdtemp(prefix="ramp-fleet-latency-"))
    try:
        config = make_event(root, args.sleep_interval)
        event = load_event_config(config)
        bare = bare_ramp_test(root)
        dispatch = Dispatch(config, root / "dispatch.log")
        try:
            dispatch.wait_started(event.store_path)
            idle = idle_round(config, event, args.idle)
            burst = burst_round(event, args.burst) if args.burst else []
        finally:
            dispatch.stop()
        print(f"folder event, conda worker, 2 slots, isolated; "
              f"sleep_interval {event.dispatcher.sleep_interval:g} s, "
              f"time_between_collection {event.dispatcher.time_between_collection:g} s")
        print(f"bare ramp-test            {bare:.2f} s (median of 3)")
        print_waits(idle, burst, bare)
        if args.ramp_board:
            idle, burst, (idle_sql, burst_sql) = ramp_board_rounds(root, args)
            print("ramp-board event, same worker and slots, served from ramp-board's database")
            print_waits(idle, burst, bare)
            print(f"SQL statements per submission: idle {idle_sql / max(len(idle), 1):.0f}, "
                  f"burst {burst_sql / max(len(burst), 1):.0f} (to the dispatcher's exit)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
