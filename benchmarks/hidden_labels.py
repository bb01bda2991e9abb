"""What hiding the labels costs per run: ``labels: hidden`` against ``visible`` and a bare ramp-test.

For the iris example and the Titanic kit (tests/fixtures/kits/titanic), one
submission run again and again, in alternating rounds (medians), each as the
dispatcher does it on this machine:

* ``ramp-test``: a bare ``ramp-test --save-output``, no runner, no sandbox
  (what a participant runs at home; it scores in its own process);
* ``visible``: the runner with the sandbox (ramp-test inside), then the trusted
  scorer scores the predictions (what every run pays today);
* ``hidden``: the runner with the sandbox, the kit's data handed over instead of
  the data folder (train and predict only), then the trusted scorer scores.

Each figure is the run's wall time (runner start to end) plus the trusted
scorer's ``score`` call; the scorer's own start and the one-off handing of the
data are printed apart (once per dispatcher). Everything stays on this machine.

    python benchmarks/hidden_labels.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KITS = {
    "iris": (REPO / "examples" / "iris" / "ramp-kits" / "iris",
             REPO / "examples" / "iris" / "ramp-data" / "iris",
             REPO / "examples" / "iris" / "submissions" / "logreg"),
    "titanic": (REPO / "tests" / "fixtures" / "kits" / "titanic",
                REPO / "tests" / "fixtures" / "kits" / "titanic",
                REPO / "tests" / "fixtures" / "kits" / "titanic" / "submissions" / "starting_kit"),
}
RAMP_TEST = Path(sys.executable).parent / "ramp-test"


def bare(kit: Path, data: Path, submission: Path, scratch: Path) -> float:
    subs = scratch / "submissions"
    shutil.copytree(submission, subs / "s")
    started = time.perf_counter()
    subprocess.run([str(RAMP_TEST), "--submission", "s", "--ramp-kit-dir", str(kit),
                    "--ramp-data-dir", str(data), "--ramp-submission-dir", str(subs),
                    "--save-output", "--ignore-warning"], check=True, capture_output=True)
    return time.perf_counter() - started


def through_runner(kit: Path, data: Path, submission: Path, scratch: Path, scorer,  # type: ignore[no-untyped-def]
                   handed: Path | None) -> float:
    """The runner on a fresh run folder, then the trusted scorer on what it made."""
    from ramp_fleet.archive import pack_submission
    from ramp_fleet.results import publish_output
    from ramp_fleet.sandbox.spec import HANDED_FILE, RESULTS, Isolation, RunSpec
    from ramp_fleet.sandbox.tree import Limits

    folder = scratch / "run"
    folder.mkdir(parents=True)
    spec = RunSpec(submission="s", kit_dir=str(kit), data_dir=str(data), ramp_test=str(RAMP_TEST),
                   n_threads=1, compresslevel=1, checked=True,
                   isolation=Isolation(labels="hidden" if handed else "visible"),
                   handed=HANDED_FILE if handed else None)
    (folder / "spec.json").write_text(spec.to_json())
    (folder / "submission.tar.gz").write_bytes(pack_submission(submission))
    if handed is not None:
        (folder / HANDED_FILE).hardlink_to(handed)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ramp_fleet.sandbox.runner", str(folder)], check=True,
                   stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    publish_output(folder / RESULTS, scratch / "published", Limits(),
                   lambda received: scorer.score(received, 1 << 26, "s"))
    return time.perf_counter() - started


def measure(name: str, rounds: int, root: Path) -> None:
    from ramp_fleet.scoring.scorer import Scorer

    kit, data, submission = KITS[name]
    started = time.perf_counter()
    scorer = Scorer(sys.executable, kit, data).start()
    scorer.official()
    ready = time.perf_counter() - started
    started = time.perf_counter()
    handed = scorer.handed_data(root / name / "handed.pkl")
    handing = time.perf_counter() - started
    times: dict[str, list[float]] = {"ramp-test": [], "visible": [], "hidden": []}
    try:
        for index in range(rounds):
            for mode in times:
                scratch = root / name / f"{index}-{mode}"
                if mode == "ramp-test":
                    times[mode].append(bare(kit, data, submission, scratch))
                else:
                    times[mode].append(through_runner(kit, data, submission, scratch, scorer,
                                                      handed if mode == "hidden" else None))
                shutil.rmtree(scratch)
    finally:
        scorer.close()
    medians = {mode: statistics.median(values) for mode, values in times.items()}
    print(f"{name:8} ramp-test {medians['ramp-test']:.2f} s   visible {medians['visible']:.2f} s "
          f"({medians['visible'] / medians['ramp-test'] - 1:+.0%})   hidden "
          f"{medians['hidden']:.2f} s ({medians['hidden'] / medians['ramp-test'] - 1:+.0%} vs "
          f"ramp-test, {medians['hidden'] / medians['visible'] - 1:+.0%} vs visible)   "
          f"once: scorer ready {ready:.2f} s, data handed {handing * 1000:.0f} ms "
          f"({handed.stat().st_size / 1024:.0f} KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ramp-fleet-hidden-"))
    try:
        print(f"per run, median of {args.rounds} alternating rounds "
              f"(wall time, run + trusted scoring):")
        for name in KITS:
            measure(name, args.rounds, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
