"""Live Prometheus metrics of a dispatcher, through the standard ``prometheus_client``.

The dispatcher calls the methods of :class:`DispatcherMetrics` as things
happen; :meth:`DispatcherMetrics.serve` exposes them over HTTP while it runs
(``dispatcher.metrics_port``, off by default; ``dispatcher.metrics_host``,
127.0.0.1 by default). Each dispatcher has its own registry: nothing is
global, two in one process (tests) do not mix, and the page shows only ours
plus the process's own CPU and memory.

Exported (all prefixed ``ramp_fleet_``): ``submissions{state}``,
``runs_in_progress{backend}``, ``queue_length``, ``training_seconds{backend,
outcome}`` (histogram), ``retries_total{backend}``, ``instances_alive``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)

from ramp_fleet.errors import UsageError
from ramp_fleet.listeners import Finished, Listener, Requeued
from ramp_fleet.store import State, Store, Submission

#: Submission states (ramp-database's names), each always exported, 0 included.
STATES = ("new", "sent_to_training", "training", "tested", "scored", "checking_error", "training_error")
#: Training times run from seconds (a broken submission) to hours (the default timeout is 2 h).
TRAINING_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, float("inf"))


class DispatcherMetrics:
    """The metrics of one dispatcher. Every method is cheap and thread-safe."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self._submissions = Gauge("ramp_fleet_submissions", "Submissions of the event by state.",
                                  ["state"], registry=self.registry)
        self._in_progress = Gauge("ramp_fleet_runs_in_progress", "Runs set up, running or being collected.",
                                  ["backend"], registry=self.registry)
        self._queue = Gauge("ramp_fleet_queue_length", "Submissions waiting for a worker slot.",
                            registry=self.registry)
        self._training = Histogram("ramp_fleet_training_seconds", "Training time of finished runs.",
                                   ["backend", "outcome"], buckets=TRAINING_BUCKETS, registry=self.registry)
        self._retries = Counter("ramp_fleet_retries", "Runs that asked to run again (a lost instance...).",
                                ["backend"], registry=self.registry)
        self._instances = Gauge("ramp_fleet_instances_alive", "Cloud instances the dispatcher holds.",
                                registry=self.registry)
        for state in STATES:
            self._submissions.labels(state).set(0)

    def submission_states(self, counts: Mapping[str, int]) -> None:
        """Counts by state; a state missing from ``counts`` has none."""
        for state in (*STATES, *(s for s in counts if s not in STATES)):
            self._submissions.labels(str(state)).set(counts.get(state, 0))

    def run_started(self, backend: str) -> None:
        self._in_progress.labels(backend).inc()

    def run_finished(self, backend: str, training_seconds: float | None, outcome: str) -> None:
        """A run left its slot; ``training_seconds`` is None when it never trained (setup failed)."""
        self._in_progress.labels(backend).dec()
        if training_seconds is not None:
            self._training.labels(backend, str(outcome)).observe(max(training_seconds, 0.0))

    def retried(self, backend: str) -> None:
        self._retries.labels(backend).inc()

    def queue_length(self, n: int) -> None:
        self._queue.set(n)

    def instances_alive(self, n: int) -> None:
        self._instances.set(n)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> MetricsServer:
        """Serve ``/metrics`` (any path, in fact) on ``host:port`` until the returned stop is called."""
        return MetricsServer(self.registry, host, port)


class MetricsServer:
    """A running metrics endpoint (prometheus_client's own server); call it (or :meth:`stop`)
    to stop it. Stopping twice is harmless. Its request threads are daemons: a client that
    keeps a connection open never holds up the dispatcher's exit."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int):
        try:
            self._server, thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise UsageError(f"dispatcher.metrics_port: cannot serve metrics on {host}:{port}: "
                             f"{exc.strerror or exc}") from None
        self.host = host
        self.port = int(self._server.server_port)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        with self._lock:
            if self._thread is None:
                return
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._thread = None

    __call__ = stop


class MetricsListener(Listener):
    """Feeds a dispatcher's events to its :class:`DispatcherMetrics`."""

    #: The counts by state are read from the store at most this often.
    COUNT_INTERVAL = 1.0

    def __init__(self, metrics: DispatcherMetrics, backend: str, instances: Callable[[], int]):
        self.metrics = metrics
        self.backend = backend
        self._instances = instances
        self._counted_at = -float("inf")

    def claimed(self, submission: Submission, slot: str) -> None:
        self.metrics.run_started(self.backend)

    def finished(self, result: Finished) -> None:
        self.metrics.run_finished(self.backend, result.training_seconds, result.state.value)

    def requeued(self, requeued: Requeued) -> None:
        self.metrics.run_finished(self.backend, requeued.training_seconds,
                                  "retry" if requeued.counted else "interrupted")
        if requeued.counted:
            self.metrics.retried(self.backend)

    def tick(self, store: Store, final: bool = False) -> None:
        now = time.monotonic()
        if now - self._counted_at < self.COUNT_INTERVAL and not final:
            return
        self._counted_at = now
        counts = store.counts()
        self.metrics.submission_states({state.value: count for state, count in counts.items()})
        self.metrics.queue_length(counts[State.NEW])
        self.metrics.instances_alive(self._instances())
