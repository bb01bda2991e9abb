"""Drive one worker through its lifecycle exactly as a dispatcher slot does.

For the per-backend tests that look at one worker closely; the worker
contract suite (tests/contract/) goes through the dispatcher itself.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ramp_fleet.results import RunResult
from ramp_fleet.scoring.scorer import Scorer
from ramp_fleet.workers.base import BaseWorker, WorkerRetry


@dataclass
class Outcome:
    worker: BaseWorker
    status_after_wait: str = ""
    result: RunResult | None = None
    #: The reason of a :class:`WorkerRetry`, if the run asked for one.
    retry: str | None = None
    #: Any other exception, as the dispatcher's one line.
    error: str | None = None


def run_one(worker: BaseWorker, shared: Any = None, *, poll_interval: float = 0.2,
            during_wait: Callable[[Any], None] | None = None,
            stop: threading.Event | None = None) -> Outcome:
    """prepare → start → wait → collect, and release in a finally, as a slot does.

    With the labels hidden (the default), the run needs what the trusted scorer hands it:
    a worker without one gets one for this run, as the dispatcher gives its slots.
    """
    worker.shared = shared
    outcome = Outcome(worker)
    own_scorer = None
    if worker.scorer is None and worker.settings.isolation.hides_labels:
        own_scorer = worker.scorer = Scorer(sys.executable, worker.event.dirs.kit.path,
                                            worker.event.dirs.data.path).start()
    try:
        worker.prepare()
        worker.start()
        if during_wait is not None:
            during_wait(worker)
        outcome.status_after_wait = worker.wait(poll_interval, stop or threading.Event())
        outcome.result = worker.collect()
    except WorkerRetry as retry:
        outcome.retry = retry.reason
    except Exception as exc:
        outcome.error = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    finally:
        worker.release()
        if own_scorer is not None:
            own_scorer.close()
    return outcome
