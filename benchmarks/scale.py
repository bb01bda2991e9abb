"""The dispatcher's own cost as an event grows: N submissions whose runs end at once.

For each N (default 500, 2 000, 10 000) a fresh event of N submission
folders is dispatched by ``ramp-fleet dispatch`` (a process of its own,
timed from start to exit) on 8 slots with the default
``time_between_collection: 1``, with a custom worker whose runs end the
moment they start and hand back a real ``training_output`` (made once by
``ramp-test`` before the benchmark: ``benchmarks/scale_worker.py``). Every
submission is claimed, published, scored by the trusted scorer and recorded;
nothing is trained.
Then ``ramp-fleet status --json`` and ``ramp-fleet leaderboard`` are timed
on the event (each a fresh process, output discarded; first call, then the
median of the next ``--repeats``).

Prints, per N: ms per submission (start to exit), the growth ratio (ms per
submission against the smallest N: 1.0 is linear), the dispatcher's user
and system CPU time (its trusted scorer's included), its own without the
scorer's (``own u/s``), its own peak RSS (``VmHWM``) and that of it and its
children (``ru_maxrss``: its one child is the trusted scorer, which scores
every result with rampwf), and the ``status --json`` and ``leaderboard``
times and peak RSS.

    python benchmarks/scale.py [--sizes 500 2000 10000] [--slots 8] [--repeats 3]
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
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "iris"
CLI = [sys.executable, "-m", "ramp_fleet"]
#: ramp-fleet finds the benchmark's worker module here, as it finds any custom worker.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE),
                                                               os.environ.get("PYTHONPATH")]))}


@dataclass(frozen=True)
class Measured:
    seconds: float
    user: float
    system: float
    #: The process's own peak RSS (VmHWM, last read just before it ended).
    peak_mb: float
    #: ru_maxrss: the largest of it and its children (the dispatcher's one child is its
    #: trusted scorer: rampwf, scikit-learn and pandas imported).
    tree_peak_mb: float
    #: The process's own user and system CPU, without its children's (``/proc/<pid>/stat``,
    #: last read just before it ended): what the dispatcher costs beside its scorer.
    own_user: float = 0.0
    own_system: float = 0.0


@dataclass(frozen=True)
class Row:
    n: int
    dispatch: Measured
    status_first: Measured
    status: float
    leaderboard_first: Measured
    leaderboard: float


def run(argv: list[str], cwd: Path) -> Measured:
    """Run a command to its end; wall time, CPU time (its children's included) and peak RSS
    (its own, and the largest of it and its children)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    own_peak_kb = 0
    own_cpu = (0.0, 0.0)
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        own_peak_kb = max(own_peak_kb, _vm_hwm_kb(proc.pid))
        own_cpu = max(own_cpu, _own_cpu(proc.pid))
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    errors = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{errors}")
    return Measured(seconds, usage.ru_utime, usage.ru_stime, own_peak_kb / 1024,
                    usage.ru_maxrss / 1024, *own_cpu)


def _own_cpu(pid: int) -> tuple[float, float]:
    """``(user, system)`` seconds of the process itself, its children not included."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _vm_hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def ready_output(root: Path) -> Path:
    """A real training_output: ``ramp-test`` on the example's logreg, once."""
    submissions = root / "made"
    shutil.copytree(EXAMPLE / "submissions" / "logreg", submissions / "logreg")
    subprocess.run([str(Path(sys.executable).parent / "ramp-test"), "--submission", "logreg",
                    "--ramp-kit-dir", str(root / "ramp-kits" / "iris"),
                    "--ramp-data-dir", str(root / "ramp-data" / "iris"),
                    "--ramp-submission-dir", str(submissions), "--save-output",
                    "--ignore-warning"], check=True, stdout=subprocess.DEVNULL)
    return submissions / "logreg" / "training_output"


def make_event(root: Path, n: int, slots: int, output: Path) -> Path:
    event = root / f"event_{n}"
    estimator = (EXAMPLE / "submissions" / "logreg" / "estimator.py").read_bytes()
    for i in range(n):
        folder = event / "submissions" / f"sub_{i:05d}"
        folder.mkdir(parents=True)
        (folder / "estimator.py").write_bytes(estimator)
    config = {
        "ramp": {"problem_name": "iris", "event_name": f"scale_{n}",
                 "kit_dir": str(root / "ramp-kits" / "iris"),
                 "data_dir": str(root / "ramp-data" / "iris"),
                 "submissions_dir": "submissions"},
        "worker": {"worker_type": "scale_worker:ReadyWorker", "ready_output": str(output)},
        "dispatcher": {"hunger_policy": "exit", "n_workers": slots,
                       "time_between_collection": 1},
    }
    path = event / "config.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def measure(root: Path, n: int, slots: int, output: Path, repeats: int) -> Row:
    config = make_event(root, n, slots, output)
    dispatch = run([*CLI, "dispatch", str(config)], root)
    status_first = run([*CLI, "status", str(config), "--json"], root)
    status = [run([*CLI, "status", str(config), "--json"], root).seconds for _ in range(repeats)]
    board_first = run([*CLI, "leaderboard", str(config)], root)
    board = [run([*CLI, "leaderboard", str(config)], root).seconds for _ in range(repeats)]
    shutil.rmtree(config.parent)
    return Row(n, dispatch, status_first, statistics.median(status), board_first,
               statistics.median(board))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 10000])
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ramp-fleet-scale-") as tmp:
        root = Path(tmp)
        shutil.copytree(EXAMPLE / "ramp-kits", root / "ramp-kits")
        shutil.copytree(EXAMPLE / "ramp-data", root / "ramp-data")
        output = ready_output(root)
        rows = []
        for n in sorted(args.sizes):
            rows.append(measure(root, n, args.slots, output, args.repeats))
            print(f"measured N = {n}", file=sys.stderr, flush=True)

    base = rows[0].dispatch.seconds / rows[0].n
    print(f"{args.slots} slots, time_between_collection 1, runs that end at once; "
          f"status/leaderboard: first call, then median of {args.repeats}")
    print(f"{'N':>6} {'ms/sub':>7} {'growth':>6} {'total s':>8} {'user s':>7} {'sys s':>6} "
          f"{'own u/s':>9} {'peak MB':>8} {'+child':>7} {'status s':>15} {'status MB':>9} "
          f"{'leaderboard s':>15} {'lb MB':>6}")
    for row in rows:
        per = row.dispatch.seconds / row.n
        print(f"{row.n:>6} {1000 * per:>7.2f} {per / base:>6.2f} {row.dispatch.seconds:>8.1f} "
              f"{row.dispatch.user:>7.1f} {row.dispatch.system:>6.1f} "
              f"{row.dispatch.own_user:>4.1f}/{row.dispatch.own_system:<4.1f} "
              f"{row.dispatch.peak_mb:>8.0f} {row.dispatch.tree_peak_mb:>7.0f} "
              f"{row.status_first.seconds:>6.2f} / {row.status:>6.2f} "
              f"{row.status_first.tree_peak_mb:>9.0f} "
              f"{row.leaderboard_first.seconds:>6.2f} / {row.leaderboard:>6.2f} "
              f"{row.leaderboard_first.tree_peak_mb:>6.0f}")
    print("targets: <= 3 ms/sub at every N, growth <= 1.2, peak <= 100 MB at 10000, "
          "status --json <= 0.5 s and leaderboard <= 0.3 s at 10000")


if __name__ == "__main__":
    main()
