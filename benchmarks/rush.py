"""The last hour of three events, with real runs: who waits, and how long the slots idle.

Three folder events on this machine (the iris kit, the conda worker, the
sandbox and hidden labels as by default), 30 teams among them, submissions
per team drawn from a heavy-tailed law (a few teams submit most), arriving
over ``--span`` seconds — the last hour, compressed — on ``--slots`` slots.
Served three ways, one after the other on fresh copies:

* ``split``: one ``ramp-fleet dispatch`` per event, the slots split as evenly
  as they go (the largest event gets the remainder), first come first served
  (today's deployments, as ramp-engine);
* ``fifo``: one ``ramp-fleet dispatch`` of the deployment on one pool of
  ``--slots``, first come first served;
* ``fair``: the same pool, the fair queue (the default);
* ``firsts``: the same pool with each team's first submission only — as if no
  team submitted twice: the least wait any policy can give a team's first
  submission under this schedule (when the first submissions alone fill the
  slots, they wait for each other whatever the order).

Printed per policy: makespan (first submission to last result), slot idle
time while any queue was non-empty (share of the slot-seconds), the wait of
each team's *first* submission (submitted to claimed: p50, p95, worst team)
against the median run length, and every submission's wait (p50, p95).

Rounds alternate the policies; the table gives each figure's median.

    python benchmarks/rush.py [--span 30] [--slots 4] [--seed 7] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "iris"
sys.path.insert(0, str(REPO))

from ramp_fleet.config import load_event_config  # noqa: E402
from ramp_fleet.sources import submit  # noqa: E402
from ramp_fleet.store import Store  # noqa: E402

#: The events and how many of the 30 teams each has.
EVENTS = {"challenge": 15, "course": 10, "practice": 5}
POLICIES = ("split", "fifo", "fair", "firsts")


@dataclass(frozen=True)
class Arrival:
    at: float
    event: str
    team: str
    name: str


def schedule(seed: int, span: float) -> list[Arrival]:
    """Each team's submissions: a Pareto number (α 1.1, at most 12), the first at a uniform
    time in the first 70 % of the span, the others after it, uniformly."""
    rng = random.Random(seed)
    arrivals = []
    for event, teams in EVENTS.items():
        for index in range(teams):
            team = f"{event}-team{index:02d}"
            count = min(12, int(rng.paretovariate(1.1)))
            first = rng.uniform(0, 0.7 * span)
            times = [first, *sorted(rng.uniform(first, span) for _ in range(count - 1))]
            arrivals += [Arrival(at, event, team, f"{team}-{number}")
                         for number, at in enumerate(times, 1)]
    return sorted(arrivals, key=lambda arrival: arrival.at)


def deployment(root: Path, policy: str, slots: int) -> dict[str, Path]:
    """The three events in a ramp-board layout under ``root``; their configs by name."""
    shutil.copytree(EXAMPLE / "ramp-kits" / "iris", root / "ramp-kits" / "iris")
    shutil.copytree(EXAMPLE / "ramp-data" / "iris", root / "ramp-data" / "iris")
    (root / "config.yml").write_text(yaml.safe_dump({"flask": {}, "sqlalchemy": {}}))
    split = {name: slots // len(EVENTS) for name in EVENTS}
    split[max(EVENTS, key=EVENTS.__getitem__)] += slots % len(EVENTS)
    configs = {}
    for name in EVENTS:
        event_dir = root / "events" / name
        (event_dir / "submissions").mkdir(parents=True)
        config = {
            "ramp": {"problem_name": "iris", "event_name": name, "event_title": name,
                     "event_is_public": True},
            "worker": {"worker_type": "conda", "conda_env": sys.prefix, "timeout": 300},
            "dispatcher": {"hunger_policy": "sleep", "sleep_interval": 1, "n_threads": 1,
                           "n_workers": split[name] if policy == "split" else slots,
                           "queue": "fifo" if policy in ("split", "fifo") else "fair"},
        }
        configs[name] = event_dir / "config.yml"
        configs[name].write_text(yaml.safe_dump(config, sort_keys=False))
    return configs


def run_policy(policy: str, arrivals: list[Arrival], slots: int, scratch: Path) -> Served:
    root = scratch / policy
    configs = deployment(root, policy, slots)
    ramp_fleet = [sys.executable, "-m", "ramp_fleet", "dispatch"]
    commands = ([[*ramp_fleet, str(config)] for config in configs.values()] if policy == "split"
                else [[*ramp_fleet, str(root), "--slots", str(slots)]])
    logs = [(root / f"dispatch-{index}.log").open("w") for index in range(len(commands))]
    dispatchers = [subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
                   for command, log in zip(commands, logs, strict=True)]
    events = {name: load_event_config(config) for name, config in configs.items()}
    try:
        while not all(event.store_path.exists() for event in events.values()):
            time.sleep(0.1)
        time.sleep(2)  # the dispatchers up (their scorers started)
        source = EXAMPLE / "submissions" / "logreg"
        stores = {name: Store(event.store_path) for name, event in events.items()}
        began = time.time()
        for arrival in arrivals:
            time.sleep(max(0.0, began + arrival.at - time.time()))
            submit(events[arrival.event], stores[arrival.event], source, arrival.name,
                   arrival.team)
        for store in stores.values():
            store.close()
        while not all(_all_final(event.store_path, sum(1 for a in arrivals if a.event == name))
                      for name, event in events.items()):
            time.sleep(0.5)
    finally:
        for dispatcher in dispatchers:
            dispatcher.send_signal(signal.SIGINT)
        for dispatcher in dispatchers:
            dispatcher.wait(timeout=120)
        for log in logs:
            log.close()
    return measure([event.store_path for event in events.values()], slots)


def _all_final(store: Path, expected: int) -> bool:
    with sqlite3.connect(store) as db:
        final = db.execute("SELECT COUNT(*) FROM submissions WHERE state IN "
                           "('scored', 'training_error', 'checking_error')").fetchone()[0]
    return int(final) >= expected


@dataclass
class Served:
    """One policy's round: its figures, and each team's first submission's wait."""
    figures: dict[str, float]
    first_waits: dict[str, float]


def measure(stores: list[Path], slots: int) -> Served:
    runs, firsts = [], {}
    for path in stores:
        with sqlite3.connect(path) as db:
            rows = db.execute(
                "SELECT s.name, s.team, s.submitted, r.setup_start, "
                "COALESCE(r.collected, r.ended) FROM submissions s JOIN runs r "
                "ON r.submission = s.name AND r.attempt = 1").fetchall()
        for _name, team, submitted, claimed, ended in rows:
            runs.append((submitted, claimed, ended))
            if team not in firsts or submitted < firsts[team][0]:
                firsts[team] = (submitted, claimed - submitted)
    start = min(run[0] for run in runs)
    end = max(run[2] for run in runs)
    # Idle slot-seconds while something waited: sweep over every change of the counts.
    changes = sorted([(s, "queued", 1) for s, _, _ in runs] + [(c, "queued", -1) for _, c, _ in runs]
                     + [(c, "running", 1) for _, c, _ in runs] + [(e, "running", -1) for _, _, e in runs])
    counts = {"queued": 0, "running": 0}
    idle = busy_window = 0.0
    last = start
    for at, kind, step in changes:
        if counts["queued"] > 0:
            idle += max(0, slots - counts["running"]) * (at - last)
            busy_window += slots * (at - last)
        counts[kind] += step
        last = at
    first_waits = sorted(wait for _, wait in firsts.values())
    waits = sorted(claimed - submitted for submitted, claimed, _ in runs)
    return Served({
        "submissions": len(runs),
        "makespan": end - start,
        "idle": idle / busy_window if busy_window else 0.0,
        "first_p50": _quantile(first_waits, 0.5),
        "first_p95": _quantile(first_waits, 0.95),
        "first_worst": first_waits[-1],
        "wait_p50": _quantile(waits, 0.5),
        "wait_p95": _quantile(waits, 0.95),
        "run_length": statistics.median(ended - claimed for _, claimed, ended in runs),
    }, {team: wait for team, (_, wait) in firsts.items()})


def _quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def firsts_only(arrivals: list[Arrival]) -> list[Arrival]:
    """Each team's first submission, when it came."""
    seen: set[str] = set()
    firsts = []
    for arrival in arrivals:
        if arrival.team not in seen:
            seen.add(arrival.team)
            firsts.append(arrival)
    return firsts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--span", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    arrivals = schedule(args.seed, args.span)
    per_team: dict[str, int] = {}
    for arrival in arrivals:
        per_team[arrival.team] = per_team.get(arrival.team, 0) + 1
    counts = sorted(per_team.values(), reverse=True)
    print(f"{len(arrivals)} submissions from {len(per_team)} teams over {args.span:g} s, "
          f"{args.slots} slots; per team: {counts[:5]} ... (the top 3 teams: "
          f"{sum(counts[:3]) / len(arrivals):.0%} of them), seed {args.seed}")
    measured: dict[str, list[Served]] = {policy: [] for policy in POLICIES}
    for round_number in range(args.rounds):
        for policy in POLICIES:
            scratch = Path(tempfile.mkdtemp(prefix="ramp-fleet-rush."))
            try:
                served = firsts_only(arrivals) if policy == "firsts" else arrivals
                result = run_policy(policy, served, args.slots, scratch)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            measured[policy].append(result)
            figures = result.figures
            print(f"  round {round_number + 1} {policy}: makespan {figures['makespan']:.1f} s, "
                  f"first p95 {figures['first_p95']:.1f} s", flush=True)
    print(f"medians of {args.rounds} round(s):")
    print(f"{'policy':<7}{'makespan':>10}{'idle':>7}{'1st p50':>9}{'1st p95':>9}"
          f"{'1st worst':>10}{'all p50':>9}{'all p95':>9}{'run':>7}{'1st late p95':>14}")
    for policy, rounds in measured.items():
        figures = {key: statistics.median(r.figures[key] for r in rounds)
                   for key in rounds[0].figures}
        late = statistics.median(
            _quantile(sorted(served.first_waits[team] - alone.first_waits[team]
                             for team in alone.first_waits), 0.95)
            for served, alone in zip(rounds, measured["firsts"], strict=True))
        print(f"{policy:<7}{figures['makespan']:>9.1f}s{figures['idle']:>7.1%}"
              f"{figures['first_p50']:>8.1f}s{figures['first_p95']:>8.1f}s"
              f"{figures['first_worst']:>9.1f}s{figures['wait_p50']:>8.1f}s"
              f"{figures['wait_p95']:>8.1f}s{figures['run_length']:>6.1f}s{late:>13.1f}s")
    print("waits: submitted → claimed by a slot; idle: slot-seconds idle while any "
          "submission waited; run: median claim → result; 1st late: how much later a "
          "team's first submission started than in the same round's `firsts` (p95 over "
          "the teams; the goal: at most one run)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
