"""The worker API of the RAMP guide, with explicit statuses and no hidden polling.

A worker trains one submission: ``setup`` → ``launch_submission`` → (the
dispatcher polls ``_is_submission_finished``) → ``collect_results`` →
``teardown``. Subclasses override what differs and call ``super()``, exactly
as the guide's "Create your own worker" section shows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from ramp_fleet.workers.status import WorkerStatus, check_transition

logger = logging.getLogger("ramp_fleet.workers")


class BaseWorker:
    """Status bookkeeping and logging for one submission's run.

    ``config`` is the worker section of the event config as a mapping (paths
    absolute: ``kit_dir``, ``data_dir``, ``submissions_dir``, ``logs_dir``,
    ``predictions_dir``; ``timeout`` in seconds); ``submission`` its name.
    """

    #: Runs on this machine are waited for, not polled (see ``wait``).
    is_local: ClassVar[bool] = False

    def __init__(self, config: Mapping[str, Any], submission: str):
        self.config = dict(config)
        self.submission = submission
        #: What ``open_shared`` returned, set by the dispatcher before ``setup``.
        self.shared: Any = None
        self._status = WorkerStatus.INITIALIZED
        #: Set by workers that measure it; stored with the submission.
        self.peak_memory_mb: float | None = None
        self._launched_at: float | None = None

    # -- resources shared by every slot of one dispatcher ----------------------

    @classmethod
    def open_shared(cls, config: Mapping[str, Any], event: Any) -> Any:
        """Open what all runs of one dispatcher share (a Dask client, an instance pool).

        Called once when the dispatcher starts, before any worker exists; the
        place to reconcile what a previous, dead dispatcher left behind.
        ``event`` is the :class:`~ramp_fleet.config.EventConfig`.
        """
        return None

    @classmethod
    def close_shared(cls, shared: Any) -> None:
        """Release what ``open_shared`` opened; runs in a ``finally``."""

    # -- status ---------------------------------------------------------------

    @property
    def status(self) -> str:
        """The current status; reading it never polls anything."""
        return self._status.value

    @status.setter
    def status(self, value: str) -> None:
        new = WorkerStatus(value)
        check_transition(self._status, new)
        if new != self._status:
            logger.debug("%s: %s -> %s", self.submission, self._status, new)
        self._status = new

    @property
    def timeout(self) -> float:
        return float(self.config.get("timeout") or 7200)

    # -- the guide's API ----------------------------------------------------------

    def setup(self) -> None:
        """Prepare what the run needs (an environment, an instance...)."""
        self.status = "setup"

    def launch_submission(self) -> None:
        """Start training the submission; must return without waiting for it."""
        self._launched_at = time.monotonic()
        self.status = "running"

    def _is_submission_finished(self) -> bool:
        raise NotImplementedError

    def collect_results(self) -> tuple[int, str] | None:
        """Fetch logs and predictions; subclasses return ``(returncode, error_msg)``."""
        if self._status in (WorkerStatus.FINISHED, WorkerStatus.RUNNING, WorkerStatus.TIMEOUT):
            self.status = "collected"
        return None

    def teardown(self) -> None:
        """Release what ``setup`` took. Safe whatever the status, errors included."""
        self.status = "killed"

    # -- what the dispatcher drives -------------------------------------------------

    def poll(self) -> str:
        """Check once whether a running submission has finished; returns the status."""
        if self._status == WorkerStatus.RUNNING and self._is_submission_finished():
            self.status = "finished"
        return self.status

    def elapsed(self) -> float:
        return 0.0 if self._launched_at is None else time.monotonic() - self._launched_at

    def wait(self, poll_interval: float, stop: threading.Event) -> str:
        """Block until the run finishes, times out or ``stop`` is set.

        The default polls every ``poll_interval`` seconds, as RAMP does for
        remote workers; local workers override it to wake up the moment
        their process ends.
        """
        while self.poll() == WorkerStatus.RUNNING:
            remaining = self.timeout - self.elapsed()
            if remaining <= 0:
                self.kill_submission(timed_out=True)
                break
            if stop.wait(min(poll_interval, remaining)):
                break
        return self.status

    def kill_submission(self, timed_out: bool = False) -> None:
        """Stop a running submission. Workers that can stop their run override this."""
        if self._status == WorkerStatus.RUNNING:
            self.status = "timeout" if timed_out else "killed"
