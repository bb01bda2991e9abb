"""Train and score every new submission of an event on ``n_workers`` slots.

Each slot is a thread that claims the oldest ready submission, drives one
worker through its lifecycle and records every state change in the store.
Slots never wait for each other: a slow setup (an EC2 boot) holds only its
own slot. Nor for the trusted scorer: a success is received, then scored,
moved into place and recorded by the dispatcher's publisher thread while
its slot runs the next submission (it stays ``training`` until recorded).
The main thread finds new submissions, applies the hunger policy and
handles signals — first SIGINT/SIGTERM: launch nothing more and finish
what runs; second: stop the runs now (they go back to ``new``).
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from ramp_fleet.config import EventConfig
from ramp_fleet.errors import UsageError
from ramp_fleet.faults import cleanups, log_failure, outside_fault
from ramp_fleet.listeners import Finished, Listener, Listeners, Requeued
from ramp_fleet.pool import SlotPool
from ramp_fleet.progress import LogReporter, Reporter
from ramp_fleet.results import RunResult, stale_staging
from ramp_fleet.scoring import ScoreError
from ramp_fleet.scoring.official import official_score
from ramp_fleet.scoring.scorer import HandRefused, Scorer
from ramp_fleet.sources import FolderSource, SubmissionSource
from ramp_fleet.store import DispatcherLock, State, Store, Submission
from ramp_fleet.store.fair import QueuePolicy
from ramp_fleet.store.records import RunPlace
from ramp_fleet.waiting import backoff_delay
from ramp_fleet.workers import BaseWorker, worker_class
from ramp_fleet.workers.base import InterruptedRun, WorkerRetry

logger = logging.getLogger("ramp_fleet.dispatcher")

#: The longest an idle slot sleeps before looking at the store again.
IDLE_RECHECK = 1.0
#: How often the main loop asks the source whether something new may be there (one
#: ``stat`` of the submissions folder, or a flag of ramp-board's thread): a submission
#: waits this long at most to be seen, whatever the collection interval.
QUICK_LOOK = 0.05


@dataclass(frozen=True)
class Summary:
    scored: int
    training_error: int
    checking_error: int
    waiting: int
    #: Every submission the event has, whatever its state.
    total: int


@dataclass
class _Timing:
    """When one attempt launched and ended (epoch seconds), as it goes."""

    launched: float | None = None
    ended: float | None = None
    #: Where it runs, as its worker learns (a Dask worker's host is known at the end).
    place: RunPlace | None = None
    #: When its slot handed the received result over to be scored (deferred scoring).
    handed_over: float | None = None

    def training_seconds(self) -> float | None:
        if self.launched is None:
            return None
        return (self.ended or time.time()) - self.launched


class _Interrupted(WorkerRetry):
    """The run was stopped by the dispatcher (second signal), not by its own fault:
    it runs again, and the attempt is not counted."""

    def __init__(self, reason: str = "stopped by the dispatcher"):
        super().__init__(reason)


class Dispatcher:
    def __init__(self, event: EventConfig, reporter: Reporter | None = None,
                 listeners: Sequence[Listener] = (), source: SubmissionSource | None = None,
                 pool: SlotPool | None = None):
        self.event = event
        #: The event's name on a shared pool (:class:`~ramp_fleet.pool.Tenant`).
        self.name = event.event_name
        #: Slots shared with other events; None: the event's own ``n_workers`` slots.
        self.pool = pool
        self._store: Store | None = None
        #: Who is told what happens: the reporter first, then the other listeners.
        self.listeners = Listeners([reporter or LogReporter(), *listeners])
        #: Where new submissions come from: the submissions folder, or ramp-board's database.
        self.source: SubmissionSource = source or FolderSource(event)
        self.worker_cls: type[BaseWorker] = worker_class(event.worker_type)
        self.shared: Any = None
        self._stop_launching = threading.Event()
        self._kill_now = threading.Event()
        #: An operator asked it to stop (a signal): ``dispatch`` then exits with 130.
        self.interrupted = False
        #: The outside fault that stopped the dispatcher (its store could not be written).
        self._fatal: BaseException | None = None
        self._done = threading.Event()
        self._wake = threading.Condition()
        #: Set (under ``_wake``) by every notification, cleared by the main loop when it
        #: looks: a result that comes in while the loop is not waiting is not missed.
        self._woken = False
        #: The trusted scorer: every success is scored by it from its predictions.
        self.scorer: Scorer | None = None
        self._official_recorded = False
        self._active: dict[str, BaseWorker] = {}
        self._active_lock = threading.Lock()
        self._queue = QueuePolicy.of(event.dispatcher)
        #: Scores, moves into place and records what the slots received (one at a time,
        #: as the one trusted scorer does).
        self._publisher = _Publisher(f"publish-{self.name}")

    @property
    def _slot_prefix(self) -> str:
        """``conda``, ``aws``, ``dask``, or a custom worker's class name (not its module path)."""
        return self.event.worker_type.rpartition(":")[2]

    # -- control --------------------------------------------------------------

    def request_stop(self) -> None:
        """First call: finish what runs. Second call: stop the runs now."""
        self.interrupted = True
        if not self._stop_launching.is_set():
            self._stop_launching.set()
            self.listeners.message("stopping: no new runs; interrupt again to stop the runs now")
        else:
            self._kill_now.set()
            self.listeners.message("stopping the runs now")
            with self._active_lock:
                workers = list(self._active.values())
            for worker in workers:
                try:
                    worker.kill_submission()
                except Exception as exc:
                    log_failure(logger, f"could not stop {worker.submission}", exc)
        self._notify()

    def _notify(self) -> None:
        with self._wake:
            self._woken = True
            self._wake.notify_all()
        if self.pool is not None:
            self.pool.wake()

    # -- the main loop ------------------------------------------------------------

    def run(self) -> Summary:
        """Serve the event until done; an outside fault that stops it is one
        :class:`~ramp_fleet.faults.OutsideFault` (the first one: what fails while releasing
        is logged after it)."""
        try:
            return self._run_locked()
        except Exception as exc:
            fault = outside_fault(exc)
            if fault is None or fault is exc:
                raise
            raise fault from exc

    def _run_locked(self) -> Summary:
        with DispatcherLock(self.event.store_path, self.event.event_name):
            store = Store(self.event.store_path)
            try:
                interrupted = self._recover(store)
                try:
                    # The source's start (ramp-board: its helper loads ramp-database, most of a
                    # second) overlaps the workers' and the trusted scorer's, which a run with
                    # the labels hidden needs first.
                    source_started = _in_background(self.source.start, store)
                    try:
                        self.shared = self.worker_cls.open_shared(self.event)
                    except BaseException:
                        _settled(source_started)
                        raise
                    try:
                        self.scorer = Scorer(self.worker_cls.scoring_python(self.shared),
                                             self.event.dirs.kit.path,
                                             self.event.dirs.data.path).start()
                        self._hand_early()
                        source_started.result()
                        self.worker_cls.reconcile(self.shared, self.event, interrupted)
                        with self._metrics():
                            self._serve(store)
                            if self._fatal is not None:
                                raise self._fatal
                            self.listeners.tick(store, final=True)
                    finally:
                        _settled(source_started)  # never released while it still starts
                        cleanups(("stopping the scorer", self._close_scorer),
                                 (f"releasing the {self._slot_prefix} workers",
                                  lambda: self.worker_cls.close_shared(self.shared)))
                finally:
                    # After the runs: what they recorded is sent.
                    cleanups(("sending what the runs recorded", self.listeners.close))
                return self._summary(store)
            finally:
                cleanups(("closing the store", store.close))

    def _hand_early(self) -> None:
        """With the labels hidden, have the scorer write what the runs are handed now, in
        the background: a kit it cannot serve (its X holds paths into the data folder)
        stops the dispatcher at its start rather than at its first run, and the first
        run finds the file ready. A dispatcher done before that stops the scorer."""
        if not self.event.worker.isolation.hides_labels:
            return
        scorer = self.scorer
        assert scorer is not None

        def hand() -> None:
            try:
                scorer.handed_data(self.event.handed_data_path)
            except HandRefused as exc:
                self._refuse_hidden_labels(exc)
            except ScoreError as exc:  # a run meets it again and says it for its submission
                logger.debug("handing the data over at the start: %s", exc)

        threading.Thread(target=hand, name="hand-data", daemon=True).start()

    def _refuse_hidden_labels(self, exc: HandRefused) -> None:
        self._stop_for(UsageError(f"{self.event.path}: worker.isolation.labels: hidden "
                                  f"cannot serve this kit: {exc}"))

    def _close_scorer(self) -> None:
        if self.scorer is not None:
            self.scorer.close()

    @contextmanager
    def _metrics(self) -> Iterator[None]:
        """Serve Prometheus metrics while dispatching, when ``dispatcher.metrics_port`` says so."""
        settings = self.event.dispatcher
        if settings.metrics_port is None:
            yield
            return
        from ramp_fleet.metrics import DispatcherMetrics, MetricsListener

        metrics = DispatcherMetrics()
        server = metrics.serve(settings.metrics_host, settings.metrics_port)
        self.listeners.message(f"metrics at {server.url}")
        self.listeners.listeners.append(MetricsListener(
            metrics, self.event.worker_type,
            lambda: self.worker_cls.instances_alive(self.shared)))
        try:
            yield
        finally:
            server.stop()

    def _serve(self, store: Store) -> None:
        """Run the event on its slots until :meth:`_watch` says it is done; then launch
        nothing new, and return once the runs have ended."""
        self._store = store
        self._publisher.start()
        try:
            release = self._own_slots(store) if self.pool is None else self._join(self.pool)
            try:
                self._watch(store)
            finally:
                self._done.set()
                self._stop_launching.set()
                self._notify()
                release()
        finally:
            self._publisher.close()  # what the last runs staged, published

    def _own_slots(self, store: Store) -> Callable[[], None]:
        """The event's own ``n_workers`` slots, started; returns what waits for them."""
        slots = [
            threading.Thread(target=self._slot, args=(store, f"{self._slot_prefix}-{i + 1}"),
                             name=f"slot-{i + 1}", daemon=True)
            for i in range(self.event.n_slots)
        ]
        for slot in slots:
            slot.start()

        def join() -> None:
            for slot in slots:
                slot.join()
        return join

    def _join(self, pool: SlotPool) -> Callable[[], None]:
        """Slots shared with other events: at most the event's ``n_workers`` at once, as many
        as its ``share`` gives it when the others want theirs; returns what leaves the pool
        once the event's runs have ended."""
        pool.join(self, self.event.dispatcher.share, self.event.n_slots)
        return lambda: pool.leave(self)

    def _watch(self, store: Store) -> None:
        """Find new submissions and decide when the dispatcher is done.

        New submissions are looked for every collection interval (the sleep
        interval under ``hunger_policy: sleep``), and at once when the source
        says something changed (asked every :data:`QUICK_LOOK`: one ``stat``),
        and once more before leaving; a result only wakes the loop to see
        whether anything is left, which is one look-up in the store.
        """
        policy = self.event.dispatcher.hunger_policy
        interval = (self.event.dispatcher.sleep_interval if policy == "sleep"
                    else self.event.dispatcher.time_between_collection)
        self.listeners.queued(store.count(*State))
        next_look = time.monotonic()
        while True:
            if time.monotonic() >= next_look:
                self._discover(store)
                self.listeners.tick(store)
                next_look = time.monotonic() + interval
            elif self.source.changed():
                self._discover(store)
            if self._fatal is not None:
                return
            if self._stop_launching.is_set() and store.outstanding()[1] == 0:
                return
            if policy == "exit" and not store.unfinished() and not self._discover(store):
                return
            with self._wake:
                if not self._woken:
                    self._wake.wait(timeout=max(0.0, min(next_look - time.monotonic(),
                                                         QUICK_LOOK)))
                self._woken = False

    def _discover(self, store: Store) -> list[str]:
        """Add what the source has that is new; wake the slots for it."""
        added = self.source.discover(store)
        if added:
            self.listeners.queued(store.count(*State), added)
            self._notify()
        return added

    def _slot(self, store: Store, label: str) -> None:
        while not self._stop_launching.is_set():
            if not self.take(label):
                self._idle(store)

    def peek(self) -> tuple[int, float] | None:
        """What :meth:`take` would run now: its team's load and when it was submitted (the
        pool weighs events by it); None when nothing is ready or the dispatcher stops."""
        store = self._store
        if store is None or self._stop_launching.is_set():
            return None
        try:
            return store.peek_next(self._queue)
        except Exception as exc:  # the store's: the take that follows meets it and says so
            logger.debug("%s: looking at the queue: %s", self.name, exc)
            return (0, 0.0)

    def take(self, label: str) -> bool:
        """Claim the next ready submission and run it on slot ``label`` to its end; False
        when there is nothing to run (or the dispatcher is stopping)."""
        store = self._store
        if store is None or self._stop_launching.is_set():
            return False
        try:
            submission = store.claim_next(label, self.event.worker_type, self._queue)
            if submission is None:
                return False
            self._run(store, submission, label)
        except Exception as exc:
            # What escapes a run is the store's (the run's own errors are recorded):
            # the outside world's, it stops the dispatcher; a bug's, this slot goes on.
            fault = outside_fault(exc)
            if fault is not None:
                self._stop_for(fault)
                return False
            logger.exception("slot %s failed", label)
        self._notify()
        return True

    def _stop_for(self, fault: BaseException) -> None:
        """The event cannot be served any more (its store cannot be written): stop now."""
        with self._active_lock:
            if self._fatal is None:
                self._fatal = fault
            workers = list(self._active.values())
        self._stop_launching.set()
        self._kill_now.set()
        for worker in workers:
            try:
                worker.kill_submission()
            except Exception as exc:
                log_failure(logger, f"could not stop {worker.submission}", exc)
        self._notify()

    def _idle(self, store: Store) -> None:
        ready_at = store.next_ready_at()
        timeout = IDLE_RECHECK
        if ready_at is not None and ready_at > time.time():
            timeout = min(timeout, ready_at - time.time())
        with self._wake:  # the flag is read under the lock its setter notifies with
            if not self._stop_launching.is_set():
                self._wake.wait(timeout=max(timeout, 0.01))

    # -- one submission ---------------------------------------------------------------

    def _run(self, store: Store, submission: Submission, label: str) -> None:
        """setup → launch → wait → collect → teardown, and the state that follows."""
        name = submission.name
        worker = self.worker_cls(self.event, name)
        worker.shared = self.shared
        worker.scorer = self.scorer
        worker.defer_scoring = True
        with self._active_lock:
            self._active[label] = worker
        self.listeners.claimed(submission, label)
        # A submission goes back to the queue only once its attempt is torn down: its next
        # attempt must never meet the remains of this one.
        again: WorkerRetry | None = None
        run = _Timing(place=worker.place)
        try:
            worker.prepare()
            worker.start()
            store.mark_training(name, worker.run_state, worker.place)
            run.launched = time.time()
            self.listeners.launched(name)
            worker.wait(self.event.dispatcher.time_between_collection, self._kill_now)
            if self._kill_now.is_set():
                raise _Interrupted
            run.ended = time.time()
            self._record(store, submission, worker.collect(), run)
        except WorkerRetry as retry:
            again = retry
        except HandRefused as exc:  # the kit's, not the submission's: nothing can run
            again = _Interrupted("the event's labels cannot be hidden")
            self._refuse_hidden_labels(exc)
        except Exception as exc:
            fault = outside_fault(exc)
            if self._kill_now.is_set():  # stopped by the operator mid-way: runs again
                again = _Interrupted("stopped by the dispatcher")
            elif fault is not None:  # not the submission's doing: it runs again later
                logger.debug("%s: %s", name, fault, exc_info=True)
                again = WorkerRetry(str(fault))
            else:
                message = _one_line(exc)
                logger.debug("%s: %s", name, message, exc_info=True)
                self._fail(store, name, State.CHECKING_ERROR, message, run=run)
        finally:
            worker.release()
            with self._active_lock:
                self._active.pop(label, None)
        if isinstance(again, _Interrupted):
            store.requeue(name, 0, again.reason, count_attempt=False, place=run.place)
            self.listeners.requeued(Requeued(name, again.reason, False, run.training_seconds()))
        elif again is not None:
            self._retry(store, submission, again.reason, run)

    def _retry(self, store: Store, submission: Submission, reason: str, run: _Timing) -> None:
        attempts = submission.attempts
        limit = self.event.dispatcher.max_attempts
        if attempts >= limit:
            self._fail(store, submission.name, State.CHECKING_ERROR,
                       f"gave up after {attempts} attempts: {reason}", run=run)
            return
        delay = backoff_delay(attempts, self.event.dispatcher.retry_backoff,
                              self.event.dispatcher.retry_backoff_max)
        store.requeue(submission.name, time.time() + delay, reason, place=run.place)
        self.listeners.requeued(Requeued(submission.name, reason, True, run.training_seconds(),
                                         retry_in=delay))

    def _record(self, store: Store, submission: Submission, result: RunResult,
                run: _Timing) -> None:
        name = submission.name
        if result.staged is not None:  # scored and recorded while the slot moves on
            run.handed_over = time.time()
            self._publisher.put(lambda: self._publish(store, submission, result, run))
            return
        if result.returncode != 0:
            self._fail(store, name, State.TRAINING_ERROR,
                       result.error or f"exited with {result.returncode}", result, run)
            return
        scores = result.scores
        if scores is None:  # a custom worker that published nothing to score
            self._fail(store, name, State.CHECKING_ERROR,
                       f"{name} has no scores: its worker published no predictions", result, run)
            return
        self._record_official_score(store)
        test_scores = scores.bagged.get("test", {})
        official = next(iter(test_scores.items()), None)
        store.record_scored(name, returncode=result.returncode,
                            peak_memory_mb=result.peak_memory_mb, ended=run.ended,
                            place=run.place, score=official[1] if official else None,
                            scores={"folds": scores.folds, "bagged": scores.bagged},
                            collected=run.handed_over)
        self.listeners.finished(Finished(name, State.SCORED, None, 0, result.peak_memory_mb,
                                         run.training_seconds(), score=official))

    def _record_official_score(self, store: Store) -> None:
        """At the first scored result: the official score as the trusted scorer read it
        from ``problem.py``, into the store (:mod:`ramp_fleet.scoring.official`)."""
        if self._official_recorded or self.scorer is None:
            return
        self._official_recorded = True
        try:
            official_score(store, self.event.dirs.kit.path, ask=self.scorer.official)
        except ScoreError as exc:  # the leaderboard asks the kit again, and says what is wrong
            logger.warning("could not record the official score: %s", _one_line(exc))

    def _publish(self, store: Store, submission: Submission, result: RunResult,
                 run: _Timing) -> None:
        """A staged success scored, moved into place and recorded (the publisher's thread):
        as the slot would have, an outside fault sends it back to the queue and a score
        the predictions cannot have is the submission's ``checking_error``."""
        assert result.staged is not None
        name = submission.name
        try:
            again: str | None = None
            try:
                scores = result.staged.publish()
                self._record(store, submission, replace(result, scores=scores, staged=None), run)
            except Exception as exc:
                fault = outside_fault(exc)
                if fault is not None:
                    logger.debug("%s: %s", name, fault, exc_info=True)
                    again = str(fault)
                else:
                    logger.debug("%s: %s", name, _one_line(exc), exc_info=True)
                    self._fail(store, name, State.CHECKING_ERROR, _one_line(exc), run=run)
            if again is not None:
                self._retry(store, submission, again, run)
        except Exception as exc:  # the store's, as in take()
            fault = outside_fault(exc)
            if fault is not None:
                self._stop_for(fault)
            else:
                logger.exception("publishing %s failed", name)
        finally:
            result.staged.discard()
            self._notify()

    def _fail(self, store: Store, name: str, state: State, error: str,
              result: RunResult | None = None, run: _Timing | None = None) -> None:
        returncode = result.returncode if result is not None else None
        peak = result.peak_memory_mb if result is not None else None
        store.mark_failed(name, state, error, returncode, peak, run.ended if run else None,
                          run.place if run else None, run.handed_over if run else None)
        self.listeners.finished(Finished(name, state, error, returncode, peak,
                                         run.training_seconds() if run else None))

    # -- start and end -------------------------------------------------------------------

    def _recover(self, store: Store) -> list[InterruptedRun]:
        """Put the runs a dead dispatcher left back to ``new`` (the backend stops them)."""
        recovered = store.recover()
        for submission in recovered:  # what a dead dispatcher received but never published
            for folder in stale_staging(self.event.dirs.predictions.path, submission.name):
                shutil.rmtree(folder, ignore_errors=True)
        if recovered:
            names = ", ".join(s.name for s in recovered)
            self.listeners.message(f"recovered {len(recovered)} interrupted run(s): {names}")
        return [InterruptedRun(s.name, s.run_state) for s in recovered]

    @staticmethod
    def _summary(store: Store) -> Summary:
        return Summary(
            scored=store.count(State.SCORED),
            training_error=store.count(State.TRAINING_ERROR),
            checking_error=store.count(State.CHECKING_ERROR),
            waiting=store.count(State.NEW),
            total=store.count(*State),
        )


class _Publisher:
    """One thread running the jobs put to it in order; :meth:`close` runs what is left."""

    def __init__(self, name: str):
        self.name = name
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def put(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:  # a job says its own failures: this is a bug's
                logger.exception("%s: a job failed", self.name)


def _in_background(start: Callable[[Store], object], store: Store) -> Future[object]:
    """``start(store)`` in a thread of its own; its outcome (or its error) in the future."""
    future: Future[object] = Future()

    def run() -> None:
        try:
            future.set_result(start(store))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name="source-start", daemon=True).start()
    return future


def _settled(future: Future[object]) -> None:
    """Wait for ``future`` to end, its error left unsaid: an earlier one is being raised."""
    try:
        future.result()
    except BaseException as exc:
        logger.debug("while starting: %s", exc)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__
