"""The trusted scorer process (ramp_fleet.scoring.scorer) on the iris example."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ramp_fleet.config import load_event_config
from ramp_fleet.scoring.scorer import Scorer
from tests.conftest import EventFactory


def hand(scorer: Scorer, path: Path, together: threading.Barrier) -> Path:
    together.wait(timeout=60)
    return scorer.handed_data(path)


def test_two_scorers_of_one_event_hand_its_data_over_at_once(make_event: EventFactory) -> None:
    """Each writes the file whole under a name of its own, then renames it in: neither
    meets the other's half-written file, or finds its own taken away."""
    event = load_event_config(make_event())
    scorers = [Scorer(sys.executable, event.dirs.kit.path, event.dirs.data.path).start()
               for _ in range(2)]
    folder = event.handed_data_path.parent
    try:
        for scorer in scorers:
            scorer.official()  # both ready: what is left is the handing over itself
        with ThreadPoolExecutor(2) as pool:
            for attempt in range(25):
                path = folder / f"{attempt}.pkl"
                together = threading.Barrier(2)
                assert list(pool.map(hand, scorers, [path] * 2, [together] * 2)) == [path] * 2
                handed = pickle.loads(path.read_bytes())
                assert set(handed) == {"X_train", "y_train", "X_test", "cv", "has_test"}
    finally:
        for scorer in scorers:
            scorer.close()
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{i}.pkl" for i in range(25))


def test_what_a_scorer_killed_mid_write_left_is_removed_by_the_next_one(
    make_event: EventFactory,
) -> None:
    """The file a scorer writes before renaming it in carries its pid: the next scorer
    removes those of scorers no longer running, and no other's."""
    event = load_event_config(make_event())
    path = event.handed_data_path
    path.parent.mkdir(parents=True)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    killed = path.parent / f".{path.name}.{int(gone.stdout)}.part"
    writing = path.parent / f".{path.name}.{os.getpid()}.part"  # a live writer's
    killed.write_bytes(b"half a pickle")
    writing.write_bytes(b"half a pickle")
    scorer = Scorer(sys.executable, event.dirs.kit.path, event.dirs.data.path).start()
    try:
        assert scorer.handed_data(path) == path
    finally:
        scorer.close()
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, writing.name])
