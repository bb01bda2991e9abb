"""The dispatcher with the conda worker: real ramp-test runs on the iris kit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import psutil
import pytest

from ramp_fleet.config import EventConfig, load_event_config
from ramp_fleet.dispatcher import Dispatcher
from ramp_fleet.errors import ConfigError, UsageError
from ramp_fleet.progress import Reporter
from ramp_fleet.scoring import ScoreError
from ramp_fleet.sources import FolderSource, submit
from ramp_fleet.store import State, Store
from tests.conftest import EventFactory, alive, write_submission
from tests.store_helpers import history
from tests.waiting import dispatch_past_a_gate, wait_for


class Quiet(Reporter):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        #: Set once the dispatcher watches for submissions: its first look is done.
        self.watching = threading.Event()

    def line(self, text: str) -> None:
        self.lines.append(text)

    def queued(self, total: int, added: Sequence[str] = ()) -> None:
        super().queued(total, added)
        self.watching.set()


def dispatch(config: Path) -> Store:
    Dispatcher(load_event_config(config), Quiet()).run()
    return Store(load_event_config(config).store_path)


def states(store: Store) -> dict[str, State]:
    return {s.name: s.state for s in store.all()}


def test_an_event_is_trained_scored_and_cleaned_up(make_event: EventFactory) -> None:
    config = make_event(("logreg", "knn", "broken"))
    store = dispatch(config)
    assert states(store) == {"logreg": State.SCORED, "knn": State.SCORED,
                             "broken": State.TRAINING_ERROR}
    root = config.parent
    broken = store.get("broken")
    assert broken is not None and broken.returncode == 1
    assert "Traceback" in (broken.error or "") and "broken on purpose" in (broken.error or "")
    logreg = store.get("logreg")
    assert logreg is not None and logreg.score is not None and 0.5 < logreg.score <= 1
    assert set(logreg.scores["bagged"]) == {"valid", "test"}  # type: ignore[index]
    predictions = root / "events" / "iris_test" / "predictions"
    assert (predictions / "logreg" / "bagged_scores.csv").is_file()
    assert not (predictions / "broken").exists()
    assert (root / "events" / "iris_test" / "logs" / "broken" / "log").is_file()
    # the participant's folder is left as it was, and no scratch copy survives
    assert not (root / "submissions" / "logreg" / "training_output").exists()
    assert list(load_event_config(config).scratch_dir.iterdir()) == []


def test_an_unknown_conda_env_is_refused_before_anything_runs(make_event: EventFactory) -> None:
    config = make_event(("logreg",), worker={"conda_env": str(Path("/nonexistent/env"))})
    with pytest.raises(ConfigError) as refused:
        load_event_config(config)
    assert refused.value.problems == [
        f"{config}: worker.conda_env: no environment at /nonexistent/env (no bin/ folder)"]


def test_threads_and_priority_apply_to_the_child_only(make_event: EventFactory) -> None:
    config = make_event(dispatcher={"n_threads": 3})
    # The run is sandboxed: it reports through its log, the one thing it hands back.
    write_submission(config.parent / "submissions", "probe", '''
        import os
        from sklearn.linear_model import LogisticRegression
        print("SEEN", os.environ.get("OMP_NUM_THREADS", "-"), os.environ.get("MKL_NUM_THREADS", "-"),
              os.nice(0))
        def get_estimator():
            return LogisticRegression(max_iter=500)
    ''')
    before = os.environ.get("OMP_NUM_THREADS")
    assert states(dispatch(config)) == {"probe": State.SCORED}
    log = (config.parent / "events" / "iris_test" / "logs" / "probe" / "log").read_text()
    [seen] = {line for line in log.splitlines() if line.startswith("SEEN ")}
    _, omp, mkl, niceness = seen.split()
    assert (omp, mkl) == ("3", "3")
    assert int(niceness) >= 5
    assert os.environ.get("OMP_NUM_THREADS") == before


def test_a_worker_written_as_the_guide_shows_runs_under_the_dispatcher(
    make_event: EventFactory,
) -> None:
    config = make_event(("logreg", "broken"), worker={"worker_type": "tests.guide_worker:GuideWorker"})
    store = dispatch(config)
    assert states(store) == {"logreg": State.SCORED, "broken": State.TRAINING_ERROR}


FLAKY_WORKER = '''
from pathlib import Path
from ramp_fleet.workers import BaseWorker

class FlakyWorker(BaseWorker):
    """Asks for a retry on its first {fail} attempts (a lost spot instance), then succeeds."""
    def launch_submission(self):
        counter = Path(self.config["logs_dir"]) / (self.submission + ".attempts")
        counter.parent.mkdir(parents=True, exist_ok=True)
        attempt = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(attempt))
        super().launch_submission()
        if attempt <= {fail}:
            self.status = "retry"
    def _is_submission_finished(self):
        return True
    def collect_results(self):
        super().collect_results()
        return (0, "")
'''


@pytest.mark.parametrize(("fail", "max_attempts", "expected"), [
    (2, 3, State.CHECKING_ERROR),  # succeeds on attempt 3, but scores are missing: RAMP's side
    (5, 3, State.CHECKING_ERROR),
])
def test_retries_are_limited_and_backed_off(
    make_event: EventFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    fail: int, max_attempts: int, expected: State,
) -> None:
    module = f"flaky_worker_{fail}_{max_attempts}"
    (tmp_path / f"{module}.py").write_text(FLAKY_WORKER.format(fail=fail))
    monkeypatch.syspath_prepend(str(tmp_path))
    config = make_event(("logreg",), worker={"worker_type": f"{module}:FlakyWorker"},
                        dispatcher={"max_attempts": max_attempts, "retry_backoff": 0.2})
    store = dispatch(config)
    logreg = store.get("logreg")
    assert logreg is not None and logreg.state == expected
    seen = [state for state, _ in history(store, "logreg")]
    attempts = min(fail + 1, max_attempts)
    assert seen.count("sent_to_training") == attempts
    assert logreg.attempts == attempts
    if fail >= max_attempts:
        assert logreg.error == f"gave up after {max_attempts} attempts: the worker asked to retry"
    else:
        assert "has no scores" in (logreg.error or "")


def run_in_thread(dispatcher: Dispatcher) -> threading.Thread:
    thread = threading.Thread(target=dispatcher.run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("policy", [None, "sleep"])
def test_waiting_policies_pick_up_late_submissions(
    make_event: EventFactory, tmp_path: Path, policy: str | None
) -> None:
    config = make_event(dispatcher={"hunger_policy": policy, "sleep_interval": 0.5})
    event = load_event_config(config)
    dispatcher = Dispatcher(event, Quiet())
    thread = run_in_thread(dispatcher)
    time.sleep(1.0)
    assert thread.is_alive()  # nothing to do, and it keeps waiting
    late = Store(event.store_path)
    submit(event, late, write_submission(tmp_path / "incoming", "late"))
    wait_for(lambda: states(late).get("late") == State.SCORED, "the late submission scored")
    dispatcher.request_stop()
    thread.join(timeout=30)
    assert not thread.is_alive()


def test_two_dispatchers_cannot_serve_one_event(make_event: EventFactory) -> None:
    config = make_event(dispatcher={"hunger_policy": None})
    event = load_event_config(config)
    first = Dispatcher(event, Quiet())
    thread = run_in_thread(first)
    wait_for(lambda: event.store_path.exists(), "the store made")
    time.sleep(0.3)
    with pytest.raises(UsageError, match="already served by a dispatcher"):
        Dispatcher(event, Quiet()).run()
    first.request_stop()
    thread.join(timeout=30)


def start_cli_dispatcher(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ramp_fleet", "dispatch", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


SLOW_ESTIMATOR = '''
    import time
    from sklearn.linear_model import LogisticRegression

    class Slow(LogisticRegression):
        def fit(self, X, y):
            time.sleep(1.5)
            return super().fit(X, y)

    def get_estimator():
        return Slow(max_iter=500)
'''


def ramp_tests_running(root: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(str(root) in part for part in cmdline) and any("ramp-test" in p for p in cmdline):
            found.append(proc)
    return found


def test_a_killed_dispatcher_restarts_into_a_consistent_state(make_event: EventFactory) -> None:
    config = make_event(dispatcher={"n_workers": 2})
    for name in ("s1", "s2", "s3", "s4"):
        write_submission(config.parent / "submissions", name, SLOW_ESTIMATOR)
    event = load_event_config(config)
    first = start_cli_dispatcher(config)
    wait_for(lambda: event.store_path.exists() and Store(event.store_path).count(State.TRAINING) == 2,
             "two runs training")
    orphans = ramp_tests_running(config.parent)
    assert orphans, "the runs should be going"
    first.send_signal(signal.SIGKILL)
    first.wait()
    store = dispatch(config)
    assert states(store) == dict.fromkeys(("s1", "s2", "s3", "s4"), State.SCORED)
    for name in ("s1", "s2", "s3", "s4"):
        assert [s for s, _ in history(store, name)].count("scored") == 1
    assert alive([p.pid for p in orphans]) == []
    assert ramp_tests_running(config.parent) == []
    assert list(event.scratch_dir.iterdir()) == [], "what the killed one left is cleared"


def test_first_interrupt_finishes_the_runs_second_stops_them(make_event: EventFactory) -> None:
    config = make_event(dispatcher={"n_workers": 1})
    for name in ("a1", "a2", "a3"):
        write_submission(config.parent / "submissions", name, SLOW_ESTIMATOR)
    event = load_event_config(config)

    graceful = start_cli_dispatcher(config)
    wait_for(lambda: event.store_path.exists() and Store(event.store_path).count(State.TRAINING) == 1,
             "one run training")
    graceful.send_signal(signal.SIGINT)
    out, _ = graceful.communicate(timeout=60)
    assert graceful.returncode == 130, out  # interrupted, as a shell says it
    counts = states(Store(event.store_path))
    assert sorted(counts.values()) == [State.NEW, State.NEW, State.SCORED]

    hard = start_cli_dispatcher(config)
    wait_for(lambda: Store(event.store_path).count(State.TRAINING) == 1, "one run training")
    hard.send_signal(signal.SIGINT)
    time.sleep(0.2)
    hard.send_signal(signal.SIGINT)
    out, _ = hard.communicate(timeout=30)
    assert hard.returncode == 130, out
    counts = states(Store(event.store_path))
    assert sorted(counts.values()) == [State.NEW, State.NEW, State.SCORED]
    assert all(s.attempts == 0 for s in Store(event.store_path).all() if s.state == State.NEW)
    assert ramp_tests_running(config.parent) == []


class _WatchfulSource(FolderSource):
    """The submissions folder, whose start notes whether the dispatcher's trusted scorer was
    already starting (waiting for it a while), or fails."""

    def __init__(self, event: EventConfig, fail: bool = False):
        super().__init__(event)
        self.dispatcher: Dispatcher | None = None
        self.saw_scorer: bool | None = None
        self.fail = fail

    def start(self, store: Store) -> list[str]:
        deadline = time.monotonic() + 30
        while self.dispatcher is not None and self.dispatcher.scorer is None \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        self.saw_scorer = self.dispatcher is not None and self.dispatcher.scorer is not None
        if self.fail:
            raise UsageError("the source cannot start")
        return super().start(store)


def test_the_source_starts_while_the_trusted_scorer_starts(make_event: EventFactory) -> None:
    """ramp-board's helper loads ramp-database (a second) while the scorer loads the kit:
    neither waits for the other, and the first runs get their data sooner."""
    event = load_event_config(make_event(("logreg",)))
    source = _WatchfulSource(event)
    dispatcher = source.dispatcher = Dispatcher(event, Quiet(), source=source)
    summary = dispatcher.run()
    assert source.saw_scorer is True
    assert summary.scored == 1


def test_a_source_that_cannot_start_stops_the_scorer_it_overlapped(
        make_event: EventFactory) -> None:
    event = load_event_config(make_event(("logreg",)))
    source = _WatchfulSource(event, fail=True)
    dispatcher = source.dispatcher = Dispatcher(event, Quiet(), source=source)
    with pytest.raises(UsageError, match="the source cannot start"):
        dispatcher.run()
    assert source.saw_scorer is True
    assert dispatcher.scorer is not None
    with pytest.raises(ScoreError, match="stopped"):
        dispatcher.scorer.official()
    kit = str(event.dirs.kit.path)
    assert [p for p in psutil.process_iter(["cmdline"]) if kit in (p.info["cmdline"] or [])] == [], \
        "the scorer's process is gone"


def test_a_slot_runs_its_next_submission_while_the_last_one_is_scored(
        make_event: EventFactory) -> None:
    """The trusted scorer is off the slot's path: one slot starts the second submission while
    the first one's scoring is held at a gate (only the scorer scores: the labels are hidden),
    and both are scored once it opens."""
    config = make_event(("logreg", "random_forest"), dispatcher={"n_workers": 1})
    gate = config.parent / "gate"
    problem = config.parent / "ramp-kits" / "iris" / "problem.py"
    problem.write_text(problem.read_text() + textwrap.dedent(f"""

        class _Gated(type(score_types[0])):
            def __call__(self, y_true, y_pred):
                import time
                while not os.path.exists({str(gate)!r}):
                    time.sleep(0.05)
                return super().__call__(y_true, y_pred)


        score_types[0] = _Gated(name="acc", precision=3)
        """))
    event = load_event_config(config)
    dispatcher = Dispatcher(event, Quiet())
    store = Store(event.store_path)
    try:
        dispatch_past_a_gate(
            dispatcher.run, gate,
            lambda: [s.state for s in store.all()] == [State.TRAINING, State.TRAINING],
            "the second run started while the first was scored")
        assert states(store) == {"logreg": State.SCORED, "random_forest": State.SCORED}
        predictions = event.dirs.predictions.path
        assert sorted(p.name for p in predictions.iterdir()) == ["logreg", "random_forest"]
    finally:
        store.close()


def test_what_a_killed_dispatcher_received_but_never_published_is_cleared(
        make_event: EventFactory) -> None:
    """A success staged next to its place when the dispatcher died: its run is done again,
    and the staging folder does not stay in ``predictions_dir`` (another name's does)."""
    config = make_event(("logreg",))
    event = load_event_config(config)
    store = Store(event.store_path)
    try:
        store.add("logreg")
        store.claim_next("conda-1")
        store.mark_training("logreg")
    finally:
        store.close()
    predictions = event.dirs.predictions.path
    staged = predictions / ".logreg.k2x_9abc" / "new"
    staged.mkdir(parents=True)
    (staged / "bagged_scores.csv").write_text("forged\n")
    other = predictions / ".logreg_2.k2x_9abc"
    other.mkdir()
    store = dispatch(config)
    try:
        assert states(store) == {"logreg": State.SCORED}
        assert sorted(p.name for p in predictions.iterdir()) == [".logreg_2.k2x_9abc", "logreg"]
    finally:
        store.close()
