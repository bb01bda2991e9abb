"""Helpers of the Dask tests: a hanging submission, the event of a local cluster."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import yaml

from ramp_fleet.config import EventConfig, load_event_config
from ramp_fleet.dask.local import LocalDaskCluster
from tests.processes import unique

#: A submission whose fit starts a child (in a session of its own) and hangs.
#: (ramp-workflow refuses submissions that mention ``subprocess``: fork + exec.)
HANGING_ESTIMATOR = textwrap.dedent('''
    import os
    import sys
    import time

    from sklearn.dummy import DummyClassifier


    class Hanging(DummyClassifier):
        def fit(self, X, y):
            if os.fork() == 0:
                os.setsid()
                os.execv(sys.executable,
                         [sys.executable, "-c", "import time; time.sleep(600)", "{marker}"])
            time.sleep(600)


    def get_estimator():
        return Hanging()
''')




def add_hanging_submission(iris: Path, name: str) -> str:
    """Write a hanging submission; returns the marker its child process carries."""
    marker = unique(f"ramp-fleet-test-marker-{name}-")
    folder = iris / "submissions" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "estimator.py").write_text(HANGING_ESTIMATOR.replace("{marker}", marker))
    return marker


def worker_config(cluster: LocalDaskCluster, iris: Path, out: Path, **extra: Any) -> EventConfig:
    """The event a dispatcher of these Dask workers would hand them (the iris copy's kit and
    data, results under ``out``)."""
    config = {
        "ramp": {"problem_name": "iris", "event_name": "iris_dask",
                 "kit_dir": str(iris / "ramp-kits" / "iris"),
                 "data_dir": str(iris / "ramp-data" / "iris"),
                 "submissions_dir": str(iris / "submissions"),
                 "logs_dir": str(out / "logs"), "predictions_dir": str(out / "predictions")},
        "worker": {"worker_type": "dask", **cluster.worker_config(), "timeout": 120.0,
                   "dask_connect_timeout": 10.0, **extra},
        "dispatcher": {"n_threads": 1, "time_between_collection": 0.5},
    }
    path = out / "config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return load_event_config(path)
