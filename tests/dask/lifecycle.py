"""Drive a DaskWorker through the dispatcher's lifecycle, as the dispatcher does."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ramp_fleet.workers.dask import DaskWorker


@dataclass
class Outcome:
    submission: str
    status: str  # after wait()
    returncode: int | None = None
    error_msg: str = ""


def run_one(config: Mapping[str, Any], submission: str, shared: Any,
            stop: threading.Event | None = None) -> Outcome:
    worker = DaskWorker(config, submission)
    worker.shared = shared
    try:
        worker.setup()
        worker.launch_submission()
        status = worker.wait(float(config["time_between_collection"]), stop or threading.Event())
        if status == "retry":
            return Outcome(submission, status)
        returncode, error_msg = worker.collect_results()
        return Outcome(submission, status, returncode, error_msg)
    finally:
        worker.teardown()


def run_many(config: Mapping[str, Any], submissions: list[str], slots: int) -> dict[str, Outcome]:
    shared = DaskWorker.open_shared(config, None)
    try:
        with ThreadPoolExecutor(slots) as pool:
            outcomes = pool.map(lambda s: run_one(config, s, shared), submissions)
            return {outcome.submission: outcome for outcome in outcomes}
    finally:
        DaskWorker.close_shared(shared)
