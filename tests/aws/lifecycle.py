"""Drive AWS workers through the lifecycle exactly as the dispatcher does."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ramp_fleet.config import EventConfig
from ramp_fleet.workers.aws import AWSWorker


@dataclass
class Outcome:
    status_after_wait: str
    result: tuple[int, str] | None
    final_status: str
    instance_id: str | None
    worker: AWSWorker


def run_one(
    event: EventConfig, submission: str, shared: Any = None,
    during_wait: Any = None, stop: threading.Event | None = None,
) -> Outcome:
    """setup → launch → wait → collect → teardown (in finally), as a slot does."""
    worker = AWSWorker(event.worker_mapping(), submission)
    worker.shared = shared
    stop = stop or threading.Event()
    status_after_wait = ""
    result = None
    instance_id = None
    try:
        worker.setup()
        instance_id = worker.instance_id
        worker.launch_submission()
        if during_wait is not None:
            during_wait(worker)
        status_after_wait = worker.wait(event.dispatcher.time_between_collection, stop)
        result = worker.collect_results()
    finally:
        worker.teardown()
    return Outcome(status_after_wait, result, worker.status, instance_id, worker)
