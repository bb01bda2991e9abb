"""How much the dispatcher costs on top of ramp-test, with the conda worker, and what isolation adds.

N identical quick submissions on 2 slots. Prints:

* standalone: one ``ramp-test`` run on its own (median of 3);
* the per-run cost of isolation: building the command and starting a run
  that does nothing, sandboxed vs not, in alternating rounds (medians) — the
  sandbox of every run, and the launcher a memory limit adds;
* makespans, in alternating rounds (medians): ``xargs -P <slots>`` running
  plain ``ramp-test`` (what a person would do by hand), the dispatcher with
  isolation off, isolated with the labels visible (``mode: auto``), and as
  configured by default (``mode: required``: isolated, labels hidden), each
  in this process, and ``ramp-fleet dispatch`` as a person runs it (a process
  of its own, the default config, from start to exit: imports, config, checks
  and all); the efficiency of each = xargs makespan / its makespan, and
  against the ideal (N × standalone / slots);
* the work of each: CPU seconds of the whole tree (runs, sandbox, trusted
  scorer, dispatcher), medians — on a machine the runs keep busy, xargs' work
  / ours is the most the efficiency can be;
* collection latency: from the moment a run's process exits to the moment
  its result is recorded (median and max, isolated runs with the labels
  visible: only there does ``ramp-test`` itself run and say when it exited);
* the steps of a run as the store recorded them (medians, default config):
  claim to process started (scratch copy, command, spawn), awake to handed
  over (the log and the results received and staged: the trusted scorer
  scores them after the slot has moved on), and the gap between one run
  handed over and the slot's next claim;
* the dispatcher process's own CPU time (its children, the runs, excluded).

Runs go through a tiny wrapper ``ramp-test`` that prints the instant the real
one exited, so the latency is measured, not guessed. Everything stays on this
machine.

    python benchmarks/dispatch_local.py [--submissions 12] [--workers 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import os
import resource
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
#: Starts of a run that does nothing, per mode, for the per-run cost.
COST_SAMPLES = 40

WRAPPER = f"""#!{sys.executable}
import os, sys, time
real = {str(Path(sys.executable).parent / "ramp-test")!r}
pid = os.posix_spawn(real, [real, *sys.argv[1:]], os.environ)
_, status = os.waitpid(pid, 0)
print("{END_MARK}", repr(time.time()), flush=True)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def make_env(root: Path) -> Path:
    env = root / "bench-env"
    (env / "bin").mkdir(parents=True)
    wrapper = env / "bin" / "ramp-test"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    return wrapper


def make_event(root: Path, env: Path, n_submissions: int, n_workers: int, mode: str) -> Path:
    shutil.copytree(EXAMPLE / "ramp-kits", root / "ramp-kits")
    shutil.copytree(EXAMPLE / "ramp-data", root / "ramp-data")
    for i in range(n_submissions):
        shutil.copytree(EXAMPLE / "submissions" / "logreg", root / "submissions" / f"sub_{i:02d}")
    config = {
        "ramp": {"problem_name": "iris", "event_name": "bench", "submissions_dir": "submissions"},
        "worker": {"worker_type": "conda", "conda_env": str(env), "timeout": 600,
                   "isolation": {"mode": mode}},
        "dispatcher": {"hunger_policy": "exit", "n_workers": n_workers, "n_threads": 1},
    }
    path = root / "config.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def ramp_test_argv(wrapper: Path, root: Path, name: str, submissions: Path) -> list[str]:
    return [str(wrapper), "--submission", name,
            "--ramp-kit-dir", str(root / "ramp-kits" / "iris"),
            "--ramp-data-dir", str(root / "ramp-data" / "iris"),
            "--ramp-submission-dir", str(submissions), "--save-output", "--ignore-warning"]


def standalone_seconds(root: Path, wrapper: Path, runs: int = 3) -> float:
    times = []
    for i in range(runs):
        scratch = root / f"standalone_{i}"
        shutil.copytree(EXAMPLE / "submissions" / "logreg", scratch / "logreg")
        started = time.perf_counter()
        subprocess.run(ramp_test_argv(wrapper, root, "logreg", scratch), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def isolation_cost(root: Path) -> dict[str, float]:
    """Median ms for the runner to run a command that does nothing: plain, sandboxed, limited.

    The "ramp-test" here is ``true``'s twin in a Python environment of its own
    (a venv's layout), so the sandbox binds what a real run's would. Each sample is a
    whole run as a backend starts it: a run folder with its inputs, the runner on it.
    """
    from ramp_fleet.archive import pack_submission
    from ramp_fleet.sandbox.spec import Isolation, RunSpec

    env = root / "cost-env"
    (env / "bin").mkdir(parents=True)
    program = env / "bin" / "ramp-test"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    source = root / "cost" / "submission" / "s"
    source.mkdir(parents=True)
    (source / "estimator.py").write_text("# nothing\n")
    packed = pack_submission(source)
    kit, data = root / "ramp-kits" / "iris", root / "ramp-data" / "iris"
    modes = {"plain": Isolation(mode="off"), "isolated": Isolation(max_processes=4096),
             "isolated + memory_mb": Isolation(max_processes=4096, memory_mb=2048)}
    samples: dict[str, list[float]] = {name: [] for name in modes}
    for index in range(COST_SAMPLES):  # alternating, so a busy moment hits every mode alike
        for name, isolation in modes.items():
            folder = root / "cost" / f"{index}-{len(samples[name])}-{name.replace(' ', '')}"
            folder.mkdir()
            started = time.perf_counter()
            spec = RunSpec(submission="s", kit_dir=str(kit), data_dir=str(data),
                           ramp_test=str(program), n_threads=1, isolation=isolation)
            (folder / "spec.json").write_text(spec.to_json())
            (folder / "submission.tar.gz").write_bytes(packed)
            subprocess.run([sys.executable, "-m", "ramp_fleet.sandbox.runner", str(folder)],
                           check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            samples[name].append(1000 * (time.perf_counter() - started))
            shutil.rmtree(folder)
    return {name: statistics.median(times) for name, times in samples.items()}


def tree_cpu() -> float:
    """CPU seconds of this process and of every child it has waited for (their own too)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), \
        resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def xargs_seconds(root: Path, wrapper: Path, n_submissions: int, n_workers: int) -> float:
    subs = root / "submissions"
    for i in range(n_submissions):
        shutil.copytree(EXAMPLE / "submissions" / "logreg", subs / f"sub_{i:02d}")
    from ramp_fleet.sandbox.programs import run_variables

    names = "".join(f"sub_{i:02d}\n" for i in range(n_submissions))
    template = ramp_test_argv(wrapper, root.parent, "{}", subs)
    started = time.perf_counter()  # the same thread limits as the dispatcher's n_threads: 1
    subprocess.run(["xargs", "-P", str(n_workers), "-I{}", *template], input=names.encode(),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, **run_variables(1)})
    return time.perf_counter() - started


def dispatch_once(root: Path, env: Path, n_submissions: int, n_workers: int, mode: str
                  ) -> tuple[float, float, int, int, list[float], dict[str, list[float]]]:
    """One dispatcher run: makespan, its CPU time, scored, failed, collection latencies,
    steps of its runs."""
    from ramp_fleet.config import load_event_config
    from ramp_fleet.dispatcher import Dispatcher
    from ramp_fleet.progress import LogReporter
    from ramp_fleet.store import State, Store

    config = make_event(root, env, n_submissions, n_workers, mode)
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
    return makespan, dispatcher_cpu, scored, summary.training_error + summary.checking_error, \
        latencies, run_steps(event.store_path, event.event_dir / "logs")


def collection_latencies(store_path: Path, logs_dir: Path) -> list[float]:
    db = sqlite3.connect(store_path)
    tested = dict(db.execute("SELECT name, at FROM history WHERE state = 'tested'").fetchall())
    db.close()
    latencies = []
    for name, at in tested.items():
        exited = process_exit(logs_dir, name)
        if exited is not None:
            latencies.append(at - exited)
    return latencies


def process_exit(logs_dir: Path, name: str) -> float | None:
    """When the run's ramp-test exited, as the wrapper wrote it in the log."""
    for line in (logs_dir / name / "log").read_text().splitlines():
        if line.startswith(END_MARK):
            return float(line.split()[1])
    return None


def run_steps(store_path: Path, logs_dir: Path) -> dict[str, list[float]]:
    """Seconds of each step of each run, from the store's run records (see the docstring)."""
    db = sqlite3.connect(store_path)
    rows = db.execute("SELECT submission, slot, setup_start, launched, ended, collected "
                      "FROM runs ORDER BY slot, setup_start").fetchall()
    db.close()
    steps: dict[str, list[float]] = {"start": [], "wake": [], "record": [], "gap": []}
    previous: dict[str, float] = {}
    for name, slot, setup_start, launched, ended, collected in rows:
        steps["start"].append(launched - setup_start)
        exited = process_exit(logs_dir, name)
        if exited is not None:
            steps["wake"].append(ended - exited)
        steps["record"].append(collected - ended)
        if slot in previous:
            steps["gap"].append(setup_start - previous[slot])
        previous[slot] = collected
    return steps


def cli_dispatch_seconds(root: Path, env: Path, n_submissions: int, n_workers: int) -> float:
    """``ramp-fleet dispatch`` from start to exit, a process of its own (the default config)."""
    config = make_event(root, env, n_submissions, n_workers, "required")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ramp_fleet", "dispatch", str(config)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n, slots = args.submissions, args.workers

    with tempfile.TemporaryDirectory(prefix="ramp-fleet-bench-") as tmp:
        root = Path(tmp)
        wrapper = make_env(root)
        shutil.copytree(EXAMPLE / "ramp-kits", root / "ramp-kits")
        shutil.copytree(EXAMPLE / "ramp-data", root / "ramp-data")
        standalone = standalone_seconds(root, wrapper)
        cost = isolation_cost(root)
        makespans: dict[str, list[float]] = {"xargs": [], "off": [], "visible": [],
                                             "hidden": [], "cli": []}
        work: dict[str, list[float]] = {key: [] for key in makespans if key != "cli"}
        cpu: list[float] = []
        latencies: list[float] = []
        steps: dict[str, list[float]] = {}
        failed = scored = 0
        for number in range(args.rounds):  # alternating: each round runs all four
            before = tree_cpu()
            makespans["xargs"].append(xargs_seconds(root / f"xargs_{number}", wrapper, n, slots))
            work["xargs"].append(tree_cpu() - before)
            for mode, key in (("off", "off"), ("auto", "visible"), ("required", "hidden")):
                before = tree_cpu()
                made, used, ok, bad, seen, took = dispatch_once(
                    root / f"{key}_{number}", root / "bench-env", n, slots, mode)
                work[key].append(tree_cpu() - before)
                makespans[key].append(made)
                failed += bad
                if key != "off":
                    scored += ok
                if key == "visible":
                    latencies += seen
                if key == "hidden":
                    cpu.append(used)
                    for step, values in took.items():
                        steps.setdefault(step, []).extend(values)
            makespans["cli"].append(cli_dispatch_seconds(root / f"cli_{number}",
                                                         root / "bench-env", n, slots))

    median = {key: statistics.median(values) for key, values in makespans.items()}
    ideal = n * standalone / slots
    print(f"submissions            {n} on {slots} slots, {args.rounds} alternating rounds "
          f"({scored} isolated runs scored, {failed} runs failed in all)")
    print(f"standalone ramp-test   {standalone:.2f} s (median of 3)")
    print(f"isolation, per run     {cost['isolated'] - cost['plain']:.1f} ms   (target <= 20 ms; "
          f"start of a no-op run: plain {cost['plain']:.1f} ms, sandboxed {cost['isolated']:.1f} ms,"
          f" median of {COST_SAMPLES})")
    print(f"  with memory_mb       {cost['isolated + memory_mb'] - cost['plain']:.1f} ms   "
          "(the runner holding a memory limit: cgroup or watchdog)")
    print(f"makespan, xargs -P {slots}    {median['xargs']:.2f} s   (plain ramp-test, medians; "
          f"rounds: {', '.join(f'{m:.1f}' for m in makespans['xargs'])})")
    for key, label in (("off", "isolation off"), ("visible", "labels visible"),
                       ("hidden", "default"), ("cli", "ramp-fleet")):
        print(f"makespan, {label:<15}{median[key]:.2f} s   efficiency vs xargs "
              f"{median['xargs'] / median[key]:.3f}, vs ideal {ideal / median[key]:.3f} "
              f"(rounds: {', '.join(f'{m:.1f}' for m in makespans[key])})")
    print(f"ideal makespan         {ideal:.2f} s   (target: efficiency vs xargs does not drop "
          "with isolation)")
    used = {key: statistics.median(values) for key, values in work.items()}
    print(f"work (CPU s, all)      xargs {used['xargs']:.2f}, " + ", ".join(
        f"{label} {used[key]:.2f} (x{used[key] / used['xargs']:.2f})" for key, label in
        (("off", "off"), ("visible", "visible"), ("hidden", "default"))) +
        f"   (the most the default's efficiency can be on a busy machine: "
        f"{used['xargs'] / used['hidden']:.3f})")
    print(f"collection latency     median {1000 * statistics.median(latencies):.1f} ms, "
          f"max {1000 * max(latencies):.1f} ms   (target: median <= 50 ms)")
    print(f"dispatcher CPU time    {statistics.median(cpu):.2f} s   (target <= 1 s; median, "
          "default config)")
    print("steps of a run (ms, median / max, default config):  " + ",  ".join(
        f"{label} {1000 * statistics.median(steps[step]):.0f} / {1000 * max(steps[step]):.0f}"
        for step, label in (("start", "claim to started"), ("wake", "exit to awake"),
                            ("record", "awake to handed over"), ("gap", "handed over to next claim"))
        if steps.get(step)))
    print("(ramp-fleet: `ramp-fleet dispatch` from start to exit, a process of its own; the "
          "target is efficiency >= 0.97)")


if __name__ == "__main__":
    main()
