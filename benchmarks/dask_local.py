"""Dask worker overhead: 12 quick submissions over 2 single-thread Dask workers.

    .venv/bin/python benchmarks/dask_local.py [--submissions 12] [--workers 2] [--rounds 3]

Prints figures, asserts nothing; each figure is the median over rounds that
run the plain and the Dask batch in alternating order, because a shared VM's
speed drifts by more than the overhead measured:

* per-submission overhead: the median time a slot spends on one submission
  through DaskWorker (pack, submit, run, return, write outputs) minus the
  median time of the same ramp-test run directly, at the same concurrency
  (target: at most 0.5 s);
* makespan efficiency: the makespan of plain ramp-test runs on the same
  number of parallel slots divided by the Dask makespan (target: 0.85 or more).

Everything runs on 127.0.0.1 with a real ``dask scheduler`` and real
``dask worker`` processes (ramp_fleet.dask.local).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from ramp_fleet.config import EventConfig, load_event_config
from ramp_fleet.dask.local import LocalDaskCluster
from ramp_fleet.results import RunOutput
from ramp_fleet.sandbox.programs import ramp_test_argv, run_variables
from ramp_fleet.workers.dask import DaskWorker

IRIS = Path(__file__).resolve().parents[1] / "examples" / "iris"
QUICK = ("logreg", "dummy", "knn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3,
                        help="plain/Dask pairs, run in alternating order (a VM's speed drifts)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ramp-fleet-bench-"))
    try:
        names = _prepare(root, args.submissions)
        _warm_up(root, names[0])
        with LocalDaskCluster(args.workers, workdir=root / "cluster") as cluster:
            config = _config(cluster, root)
            rounds = []
            for index in range(args.rounds):
                print(f"round {index + 1}/{args.rounds}", flush=True)
                dask_first = index % 2 == 1
                if dask_first:
                    dask = _run_dask(config, names, args.workers)
                plain = _run_plain(root, names, args.workers)
                if not dask_first:
                    dask = _run_dask(config, names, args.workers)
                rounds.append(Round(*plain, *dask))
        _report(args, rounds)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Round:
    plain: list[float]
    plain_makespan: float
    dask: list[float]
    in_task: list[float]
    dask_makespan: float

    @property
    def overhead(self) -> float:
        return statistics.median(self.dask) - statistics.median(self.plain)

    @property
    def efficiency(self) -> float:
        return self.plain_makespan / self.dask_makespan


def _prepare(root: Path, n: int) -> list[str]:
    shutil.copytree(IRIS / "ramp-kits", root / "ramp-kits")
    shutil.copytree(IRIS / "ramp-data", root / "ramp-data")
    names = []
    for index in range(n):
        name = f"q{index:02d}_{QUICK[index % len(QUICK)]}"
        shutil.copytree(IRIS / "submissions" / QUICK[index % len(QUICK)],
                        root / "submissions" / name,
                        ignore=shutil.ignore_patterns("training_output", "__pycache__"))
        names.append(name)
    return names


def _ramp_test(root: Path, name: str) -> float:
    argv = ramp_test_argv(str(Path(sys.executable).parent / "ramp-test"), name,
                          str(root / "ramp-kits" / "iris"), str(root / "ramp-data" / "iris"),
                          str(root / "submissions"))
    started = time.monotonic()
    subprocess.run(argv, env={**os.environ, **run_variables(1)}, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    elapsed = time.monotonic() - started
    shutil.rmtree(root / "submissions" / name / "training_output", ignore_errors=True)
    return elapsed


def _warm_up(root: Path, name: str) -> None:
    print("warming up (one ramp-test run)...", flush=True)
    _ramp_test(root, name)


def _run_plain(root: Path, names: list[str], slots: int) -> tuple[list[float], float]:
    started = time.monotonic()
    with ThreadPoolExecutor(slots) as pool:
        times = list(pool.map(lambda name: _ramp_test(root, name), names))
    return times, time.monotonic() - started


def _config(cluster: LocalDaskCluster, root: Path) -> EventConfig:
    config = {
        "ramp": {"problem_name": "iris", "event_name": "bench",
                 "kit_dir": str(root / "ramp-kits" / "iris"),
                 "data_dir": str(root / "ramp-data" / "iris"),
                 "submissions_dir": str(root / "submissions"), "logs_dir": str(root / "logs"),
                 "predictions_dir": str(root / "predictions")},
        "worker": {"worker_type": "dask", **cluster.worker_config(), "timeout": 300.0},
        "dispatcher": {"n_threads": 1, "time_between_collection": 1.0},
    }
    path = root / "config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return load_event_config(path)


class _TimedDaskWorker(DaskWorker):
    """Keeps the run's own duration, as the runner on the Dask host reported it."""

    in_task: list[float]

    def fetch_output(self) -> RunOutput:
        output = super().fetch_output()
        if output.report is not None and output.report.duration is not None:
            self.in_task.append(output.report.duration)
        return output


def _run_dask(event: EventConfig, names: list[str], slots: int
              ) -> tuple[list[float], list[float], float]:
    shared = DaskWorker.open_shared(event)
    in_task: list[float] = []

    def one(name: str) -> float:
        started = time.monotonic()
        worker = _TimedDaskWorker(event, name)
        worker.in_task = in_task
        worker.shared = shared
        try:
            worker.prepare()
            worker.start()
            worker.wait(1.0, threading.Event())
            result = worker.collect()
            assert result.returncode == 0, (name, result.error)
        finally:
            worker.release()
        return time.monotonic() - started

    try:
        started = time.monotonic()
        with ThreadPoolExecutor(slots) as pool:
            times = list(pool.map(one, names))
        return times, in_task, time.monotonic() - started
    finally:
        DaskWorker.close_shared(shared)


def _report(args: argparse.Namespace, rounds: list[Round]) -> None:
    def spread(values: list[float], form: str, unit: str = "") -> str:
        shown = " / ".join(format(v, form) for v in values)
        return f"{format(statistics.median(values), form)}{unit}  (rounds: {shown})"

    print()
    print(f"submissions / slots / rounds      {args.submissions} / {args.workers} / {len(rounds)}")
    print("plain ramp-test, median per run   "
          + spread([statistics.median(r.plain) for r in rounds], ".2f", " s"))
    print("DaskWorker slot, median per run   "
          + spread([statistics.median(r.dask) for r in rounds], ".2f", " s"))
    print("  ramp-test inside the task       "
          + spread([statistics.median(r.in_task) for r in rounds], ".2f", " s"))
    print("per-submission overhead           "
          + spread([r.overhead for r in rounds], "+.2f", " s") + "   (target <= 0.5 s)")
    print("makespan plain / Dask             "
          + " | ".join(f"{r.plain_makespan:.1f} / {r.dask_makespan:.1f} s" for r in rounds))
    print("makespan efficiency               "
          + spread([r.efficiency for r in rounds], ".2f") + "   (target >= 0.85)")


if __name__ == "__main__":
    main()
