"""How much the dispatcher costs on top of ramp-test, with the conda worker.

N identical quick submissions on 2 slots. Prints:

* standalone: one ``ramp-test`` run on its own (median of 3);
* makespan, ideal makespan (N × standalone / slots) and efficiency = ideal / makespan;
* collection latency: from the moment a run's process exits to the moment
  its result is recorded (median and max);
* the dispatcher process's own CPU time (its children, the runs, excluded).

Runs go through a tiny wrapper ``ramp-test`` that prints the instant the real
one exited, so the latency is measured, not guessed. Everything stays on this
machine.

    python benchmarks/dispatch_local.py [--submissions 12] [--workers 2]
"""

from __future__ import annotations

import argparse
import io
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "iris"
END_MARK = "RAMP_FLEET_RUN_END"

WRAPPER = f"""#!{sys.executable}
import os, sys, time
real = {str(Path(sys.executable).parent / "ramp-test")!r}
pid = os.posix_spawn(real, [real, *sys.argv[1:]], os.environ)
_, status = os.waitpid(pid, 0)
print("{END_MARK}", repr(time.time()), flush=True)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def make_event(root: Path, n_submissions: int, n_workers: int) -> tuple[Path, Path]:
    shutil.copytree(EXAMPLE / "ramp-kits", root / "ramp-kits")
    shutil.copytree(EXAMPLE / "ramp-data", root / "ramp-data")
    for i in range(n_submissions):
        shutil.copytree(EXAMPLE / "submissions" / "logreg", root / "submissions" / f"sub_{i:02d}")
    env = root / "bench-env"
    (env / "bin").mkdir(parents=True)
    wrapper = env / "bin" / "ramp-test"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    config = {
        "ramp": {"problem_name": "iris", "event_name": "bench", "submissions_dir": "submissions"},
        "worker": {"worker_type": "conda", "conda_env": str(env), "timeout": 600},
        "dispatcher": {"hunger_policy": "exit", "n_workers": n_workers, "n_threads": 1},
    }
    path = root / "config.yml"
    path.write_text(yaml.safe_dump(config))
    return path, wrapper


def standalone_seconds(root: Path, wrapper: Path, runs: int = 3) -> float:
    times = []
    for i in range(runs):
        scratch = root / f"standalone_{i}"
        shutil.copytree(EXAMPLE / "submissions" / "logreg", scratch / "logreg")
        started = time.perf_counter()
        subprocess.run(
            [str(wrapper), "--submission", "logreg",
             "--ramp-kit-dir", str(root / "ramp-kits" / "iris"),
             "--ramp-data-dir", str(root / "ramp-data" / "iris"),
             "--ramp-submission-dir", str(scratch), "--save-output", "--ignore-warning"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def collection_latencies(store_path: Path, logs_dir: Path) -> list[float]:
    db = sqlite3.connect(store_path)
    tested = dict(db.execute("SELECT name, at FROM history WHERE state = 'tested'").fetchall())
    latencies = []
    for name, at in tested.items():
        for line in (logs_dir / name / "log").read_text().splitlines():
            if line.startswith(END_MARK):
                latencies.append(at - float(line.split()[1]))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from ramp_fleet.config import load_event_config
    from ramp_fleet.dispatcher import Dispatcher
    from ramp_fleet.progress import LogReporter
    from ramp_fleet.store import State, Store

    with tempfile.TemporaryDirectory(prefix="ramp-fleet-bench-") as tmp:
        root = Path(tmp)
        config, wrapper = make_event(root, args.submissions, args.workers)
        standalone = standalone_seconds(root, wrapper)
        event = load_event_config(config)
        dispatcher = Dispatcher(event, LogReporter(io.StringIO()))
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        summary = dispatcher.run()
        makespan = time.perf_counter() - wall_before
        dispatcher_cpu = time.process_time() - cpu_before
        store = Store(event.store_path)
        scored = store.count(State.SCORED)
        store.close()
        latencies = collection_latencies(event.store_path, event.event_dir / "logs")

    ideal = args.submissions * standalone / args.workers
    print(f"submissions            {args.submissions} on {args.workers} slots "
          f"({scored} scored, {summary.training_error + summary.checking_error} failed)")
    print(f"standalone ramp-test   {standalone:.2f} s (median of 3)")
    print(f"makespan               {makespan:.2f} s")
    print(f"ideal makespan         {ideal:.2f} s")
    print(f"efficiency             {ideal / makespan:.3f}   (target >= 0.90)")
    print(f"collection latency     median {1000 * statistics.median(latencies):.1f} ms, "
          f"max {1000 * max(latencies):.1f} ms   (target: median <= 50 ms)")
    print(f"dispatcher CPU time    {dispatcher_cpu:.2f} s   (target <= 1 s)")


if __name__ == "__main__":
    main()
