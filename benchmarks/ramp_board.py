"""Serving a ramp-board event: ramp-engine's dispatcher and ramp-fleet's, on the same database.

A private PostgreSQL on 127.0.0.1 and an iris event deployed with ramp-board's
own tools (12 submissions from 4 teams: logistic regression, k-NN and random
forest variants). Each round copies the deployed database (``CREATE DATABASE
... TEMPLATE``), then one contender trains and scores all of it with the conda
worker on 2 slots; contenders alternate round by round. Per round:

* makespan: wall time from starting the dispatcher to its exit;
* dispatcher CPU: the dispatcher process's own user+system time, read from
  ``/proc/<pid>/stat`` while it is a zombie (``waitid(WNOWAIT)``) — its
  rusage from ``wait4`` would add every ``ramp-test`` it reaped;
* SQL statements: every statement the server received from the dispatcher's
  connections. The server logs them all (``log_statement=all``) with the
  client's application name first (``log_line_prefix='%a|'``), and each
  dispatcher runs with its own ``PGAPPNAME`` (libpq reads it; the helper
  process inherits it), so the count is exact and per contender, with no
  extension to preload. A batch that psycopg2 sends as one string counts once.
  (``pg_stat_statements`` would need ``shared_preload_libraries`` and cannot
  tell two clients of the same user apart.)

ramp-engine's conda worker finds its environment with ``conda info --envs
--json``; a fake ``conda`` answers with one environment, ``ramp-iris``, a link
to ramp-board's venv (which has ``ramp-test``). Everything stays on this
machine.

    python benchmarks/ramp_board.py [--rounds 2]

Targets (issue 11): ramp-fleet's makespan <= 0.5 x ramp-engine's; its
dispatcher CPU <= 1 s for the 12; statements per submission an order of
magnitude below ramp-engine's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.postgres import PostgresServer, remove_postgres, start_postgres  # noqa: E402
from tests.fixtures.ramp_board_event import Deployment, deploy_event, ramp_board_python  # noqa: E402

EVENT = "iris_bench"
TEAMS = ("alice", "bob", "carol", "dave")
ESTIMATORS = {
    "logreg": ("from sklearn.linear_model import LogisticRegression\n"
               "from sklearn.pipeline import make_pipeline\n"
               "from sklearn.preprocessing import StandardScaler\n\n\n"
               "def get_estimator():\n"
               "    return make_pipeline(StandardScaler(), LogisticRegression(C={}, max_iter=1000))\n",
               ("0.5", "1.0", "2.0", "4.0")),
    "knn": ("from sklearn.neighbors import KNeighborsClassifier\n"
            "from sklearn.pipeline import make_pipeline\n"
            "from sklearn.preprocessing import StandardScaler\n\n\n"
            "def get_estimator():\n"
            "    return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors={}))\n",
            ("3", "5", "7", "9")),
    "rf": ("from sklearn.ensemble import RandomForestClassifier\n\n\n"
           "def get_estimator():\n"
           "    return RandomForestClassifier(n_estimators={}, max_depth=4, random_state=0)\n",
           ("10", "20", "30", "40")),
}
WORKER = {"worker_type": "conda", "conda_env": "ramp-iris", "timeout": 600}
DISPATCHER = {"hunger_policy": "exit", "n_workers": 2, "n_threads": 1, "time_between_collection": 1}

#: ramp_engine.conda._conda_info_envs() runs `conda info --envs --json` and
#: reads envs[0] (base) and envs[1:] (matched by folder name to conda_env).
FAKE_CONDA = """#!/bin/sh
root=$(cd "$(dirname "$0")/.." && pwd)
case "$*" in
  "info --envs --json")
    printf '{"envs": ["%s"' "$root"
    for env in "$root"/envs/*; do [ -e "$env" ] && printf ', "%s"' "$env"; done
    printf ']}\\n' ;;
  *) echo "fake conda: unsupported: $*" >&2; exit 1 ;;
esac
"""


@dataclass(frozen=True)
class Bench:
    """What every round shares: the server, the deployed event, the fake conda."""

    server: PostgresServer
    deployment: Deployment
    python: Path
    fake_conda_bin: Path
    work: Path


@dataclass(frozen=True)
class RoundResult:
    contender: str
    makespan: float
    cpu_own: float
    cpu_children: float
    statements: int
    states: dict[str, int]
    #: ramp-fleet only: where its makespan went (:func:`fleet_phases`).
    phases: str = ""


# -- set-up -------------------------------------------------------------------


def write_sources(folder: Path) -> list[dict[str, list[str]]]:
    """Twelve distinct submissions, three per team, and the deploy plan that submits them."""
    plan: list[dict[str, list[str]]] = []
    for index, team in enumerate(TEAMS):
        for kind, (template, values) in ESTIMATORS.items():
            name = f"{kind}_{values[index]}".replace(".", "_")
            (folder / name).mkdir(parents=True)
            (folder / name / "estimator.py").write_text(template.format(values[index]))
            plan.append({"submit": [team, name, name]})
    return plan


def make_bench(work: Path) -> Bench:
    python = ramp_board_python()
    if not python.exists():
        sys.exit(f"ramp-board's environment is missing ({python}): run `make ramp-board-venv`")
    server = start_postgres(settings=("log_statement=all", "log_line_prefix=%a|"))
    try:
        plan = write_sources(work / "sources")
        steps = [*({"signup": team} for team in TEAMS), *plan]
        deployment = deploy_event(python, work / "deploy", server, "template_bench", steps, EVENT,
                                  sources=work / "sources", worker=WORKER, dispatcher=DISPATCHER)
        conda_root = work / "fakeconda"
        (conda_root / "bin").mkdir(parents=True)
        (conda_root / "envs").mkdir()
        conda = conda_root / "bin" / "conda"
        conda.write_text(FAKE_CONDA)
        conda.chmod(0o755)
        (conda_root / "envs" / "ramp-iris").symlink_to(python.parent.parent)
    except BaseException:
        remove_postgres(server)
        raise
    return Bench(server, deployment, python, conda_root / "bin", work)


def fresh_round(bench: Bench, number: int) -> tuple[str, Path]:
    """A copy of the deployed database, a deployment config naming it, empty outputs."""
    name = f"round_{number}"
    bench.server.create_database(name, template=bench.deployment.database_name)
    event_dir = bench.deployment.root / "events" / EVENT
    for folder in (event_dir / "predictions", event_dir / "logs"):
        shutil.rmtree(folder, ignore_errors=True)
    for output in (event_dir / "submissions").glob("*/training_output"):
        shutil.rmtree(output)
    config = bench.deployment.root / f"config-{name}.yml"
    settings = yaml.safe_load(bench.deployment.config.read_text())
    settings["sqlalchemy"] = bench.server.sqlalchemy(name)
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    return name, config


# -- measuring ----------------------------------------------------------------


def standalone_seconds(bench: Bench) -> float:
    """One ``ramp-test`` of the first submission on its own: the unit of the ideal makespan."""
    first = min(bench.deployment.submissions.values())
    scratch = bench.work / "standalone"
    shutil.copytree(bench.deployment.submissions_dir / f"submission_{first:09d}",
                    scratch / "submission")
    started = time.perf_counter()
    subprocess.run([str(bench.python.parent / "ramp-test"), "--submission", "submission",
                    "--ramp-kit-dir", str(bench.deployment.kit_dir), "--ramp-data-dir",
                    str(bench.deployment.data_dir), "--ramp-submission-dir", str(scratch),
                    "--save-output", "--ignore-warning"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                        "MKL_NUM_THREADS": "1"})
    return time.perf_counter() - started


def own_and_children_cpu(pid: int) -> tuple[float, float]:
    """(own, reaped children's) CPU seconds of an exited, not yet reaped process."""
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks, (int(fields[13]) + int(fields[14])) / ticks


def measure(bench: Bench, contender: str, database: str, argv: Sequence[str],
            env: Mapping[str, str], cwd: Path) -> RoundResult:
    """Run one dispatcher to its end; its makespan, CPU and statements, and the states it left."""
    application = f"{contender}-{database}"
    offset = bench.server.log_size()
    cwd.mkdir(parents=True, exist_ok=True)
    with open(cwd / "dispatcher.out", "wb") as output:
        started_at = time.time()
        started = time.perf_counter()
        process = subprocess.Popen(list(argv), cwd=cwd, env={**env, "PGAPPNAME": application},
                                   stdout=output, stderr=subprocess.STDOUT)
        cpu_own, cpu_children = own_and_children_cpu(process.pid)
        makespan = time.perf_counter() - started
        process.wait()
    if process.returncode != 0:
        print(f"  {contender} exited with {process.returncode}; see {cwd / 'dispatcher.out'}")
    rows = bench.server.psql("SELECT state, count(*) FROM submissions WHERE name <> 'starting_kit' "
                             "GROUP BY state", database)
    store = cwd.parent / "ramp-fleet.sqlite"  # ramp-fleet's (run_ramp_fleet_round)
    return RoundResult(contender, makespan, cpu_own, cpu_children,
                       bench.server.statements(offset, application),
                       {state: int(count) for state, count in rows},
                       fleet_phases(store, started_at, makespan) if store.exists() else "")


def fleet_phases(store: Path, started_at: float, makespan: float) -> str:
    """Where ramp-fleet's makespan went, from the runs its store recorded: before the first
    claim, the runs (and per run, what is not ramp-test), after the last run handed over."""
    import sqlite3

    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        runs = db.execute("SELECT setup_start, launched, ended, collected FROM runs").fetchall()
    first, last = min(r[0] for r in runs), max(r[3] for r in runs)
    before = statistics.median(r[1] - r[0] for r in runs)
    running = statistics.median(r[2] - r[1] for r in runs)
    after = statistics.median(r[3] - r[2] for r in runs)
    return (f"start {first - started_at:.2f} s, runs {last - first:.2f} s "
            f"(per run: claim → started {before * 1000:.0f} ms, running {running:.2f} s, "
            f"ended → handed over {after * 1000:.0f} ms), after the last run handed over "
            f"(its scoring, the last refresh) {started_at + makespan - last:.2f} s")


def run_ramp_engine_round(bench: Bench, database: str, config: Path) -> RoundResult:
    """ramp-engine's ``ramp-launch dispatcher``, as an organiser runs it."""
    event_config = bench.deployment.event_config
    argv = [str(bench.python.parent / "ramp-launch"), "dispatcher", "--config", str(config),
            "--event-config", str(event_config)]
    env = {**os.environ, "PATH": f"{bench.fake_conda_bin}{os.pathsep}{bench.python.parent}"
                                 f"{os.pathsep}{os.environ.get('PATH', '')}"}
    return measure(bench, "ramp-engine", database, argv, env, bench.work / database / "ramp-engine")


def run_ramp_fleet_round(bench: Bench, database: str, config: Path) -> RoundResult:
    """ramp-fleet's ``dispatch`` on the same database, with the same worker: ramp-board's
    environment (its ramp-test) on 2 slots. ``measure`` sets ``PGAPPNAME``, which the helper
    inherits, so its statements are counted like ramp-engine's."""
    event_config = yaml.safe_load(bench.deployment.event_config.read_text())
    event_config["worker"] = {"worker_type": "conda", "conda_env": str(bench.python.parent.parent),
                              "timeout": WORKER.get("timeout", 600)}
    event_config["store"] = {"backend": "ramp-board", "ramp_board_python": str(bench.python),
                             "deployment_config": str(config),
                             "path": str(bench.work / database / "ramp-fleet.sqlite")}
    path = bench.deployment.event_config.with_name(f"ramp-fleet-{database}.yml")
    path.write_text(yaml.safe_dump(event_config, sort_keys=False))
    argv = [str(Path(sys.executable).parent / "ramp-fleet"), "dispatch", str(path)]
    return measure(bench, "ramp-fleet", database, argv, dict(os.environ),
                   bench.work / database / "ramp-fleet")


# -- report -------------------------------------------------------------------


CONTENDERS: dict[str, Callable[[Bench, str, Path], RoundResult]] = {
    "ramp-engine": run_ramp_engine_round,
    "ramp-fleet": run_ramp_fleet_round,
}


def summarise(results: list[RoundResult], n_submissions: int) -> dict[str, dict[str, float]]:
    medians: dict[str, dict[str, float]] = {}
    for contender in CONTENDERS:
        mine = [r for r in results if r.contender == contender]
        if not mine:
            print(f"{contender:<12} not measured")
            continue
        row = {key: statistics.median(getattr(r, key) for r in mine)
               for key in ("makespan", "cpu_own", "cpu_children", "statements")}
        medians[contender] = row
        print(f"{contender:<12} makespan {row['makespan']:6.1f} s   dispatcher CPU {row['cpu_own']:5.2f} s "
              f"(its runs {row['cpu_children']:5.1f} s)   SQL statements {row['statements']:7.0f} "
              f"({row['statements'] / n_submissions:.0f} per submission)   [median of {len(mine)}]")
    if {"ramp-engine", "ramp-fleet"} <= medians.keys():
        engine, fleet = medians["ramp-engine"], medians["ramp-fleet"]
        print(f"makespan ratio ramp-fleet / ramp-engine  {fleet['makespan'] / engine['makespan']:.2f}"
              "   (target <= 0.5)")
        print(f"ramp-fleet dispatcher CPU                 {fleet['cpu_own']:.2f} s   (target <= 1 s)")
        print(f"statements ratio ramp-engine / ramp-fleet {engine['statements'] / fleet['statements']:.1f}"
              "   (target >= 10)")
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds per contender")
    args = parser.parse_args()
    n_submissions = len(TEAMS) * len(ESTIMATORS)
    with tempfile.TemporaryDirectory(prefix="ramp-board-bench-") as tmp:
        started = time.perf_counter()
        bench = make_bench(Path(tmp))
        print(f"PostgreSQL {bench.server.bin_dir.parent.name} on 127.0.0.1:{bench.server.port}, "
              f"event {EVENT} deployed with {n_submissions} submissions "
              f"in {time.perf_counter() - started:.1f} s")
        results: list[RoundResult] = []
        missing: set[str] = set()
        try:
            standalone, slots = standalone_seconds(bench), DISPATCHER["n_workers"]
            print(f"standalone ramp-test {standalone:.1f} s; ideal makespan on {slots} slots "
                  f"{n_submissions * standalone / slots:.1f} s")
            databases = 0
            for round_number in range(1, args.rounds + 1):
                for contender, run in CONTENDERS.items():
                    if contender in missing:
                        continue
                    databases += 1
                    database, config = fresh_round(bench, databases)
                    try:
                        result = run(bench, database, config)
                    except NotImplementedError as exc:
                        print(f"{contender}: not measured ({exc})")
                        missing.add(contender)
                        continue
                    results.append(result)
                    print(f"  round {round_number} {contender:<12} {result.makespan:6.1f} s  "
                          f"CPU {result.cpu_own:5.2f} s  {result.statements:6d} statements  "
                          f"states {result.states}")
                    if result.phases:
                        print(f"      {result.phases}")
        finally:
            remove_postgres(bench.server)
        summarise(results, n_submissions)


if __name__ == "__main__":
    main()
