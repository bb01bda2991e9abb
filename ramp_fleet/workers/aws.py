"""``worker_type: aws`` — each submission runs on an EC2 instance of the event's AMI.

``setup`` gets an instance from the dispatcher's :class:`~ramp_fleet.aws.fleet.Fleet`
(new, or a finished one when ``reuse_instances`` is on) and uploads the
submission; ``launch_submission`` starts ``ramp-test`` detached on it;
``poll``/``wait`` read its exit-code file over the same SSH connection;
``collect_results`` downloads the log and ``training_output``; ``teardown``
gives the instance back (terminated unless it is reused).

Failures of the infrastructure (instance gone, spot interruption, SSH lost
for good, no capacity) end in status ``retry``: the submission goes back to
the queue. Failures of the configuration end in ``error`` and are raised
from ``setup``/``launch_submission``. The instance is released in every case.
"""

from __future__ import annotations

import logging
import tarfile
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ramp_fleet.aws import instances, remote
from ramp_fleet.aws.fleet import Fleet, Lease, settings_from_mapping
from ramp_fleet.aws.instances import InstanceError
from ramp_fleet.aws.ssh import ConnectionLost
from ramp_fleet.errors import CommandError
from ramp_fleet.process import TIMEOUT_RETURNCODE
from ramp_fleet.results import error_excerpt, publish_dir, publish_file
from ramp_fleet.waiting import Backoff, WaitTimeout
from ramp_fleet.workers.base import BaseWorker
from ramp_fleet.workers.status import WorkerStatus

logger = logging.getLogger("ramp_fleet.workers.aws")

#: How long an upload or download is retried before it is classified.
TRANSFER_DEADLINE = 60.0
T = TypeVar("T")


class AWSWorker(BaseWorker):
    """Trains one submission on an EC2 instance (see the module docstring)."""

    def __init__(self, config: Mapping[str, Any], submission: str):
        super().__init__(config, submission)
        self.settings = settings_from_mapping(self.config)
        self.kit = self.settings.remote_ramp_kit_folder
        self._lease: Lease | None = None
        self._private_fleet = False
        self._returncode: int | None = None
        #: Why the run ended in ``retry`` / ``error``; the dispatcher reports them.
        self.retry_reason = ""
        self.error_reason = ""
        self._stop = threading.Event()

    # -- shared by the dispatcher's slots ----------------------------------------

    @classmethod
    def open_shared(cls, config: Mapping[str, Any], event: Any) -> Fleet:
        """The fleet, after terminating what a previous dispatcher left behind."""
        fleet = Fleet.from_config(config, event_dir=getattr(event, "event_dir", None))
        fleet.reap()
        return fleet

    @classmethod
    def close_shared(cls, shared: Any) -> None:
        if shared is not None:
            shared.close()

    @property
    def fleet(self) -> Fleet:
        if self.shared is None:  # driven without a dispatcher: a fleet of our own
            self.shared = Fleet.from_config(self.config)
            self._private_fleet = True
        fleet: Fleet = self.shared
        return fleet

    @property
    def instance_id(self) -> str | None:
        return self._lease.instance_id if self._lease is not None else None

    # -- the guide's API ----------------------------------------------------------------

    def setup(self) -> None:
        try:
            self._lease = self.fleet.acquire(self.submission, stop=self._stop)
            self._transfer(self._upload, "upload")
        except Exception as exc:
            self._failed(exc, "setup")
            return
        super().setup()

    def launch_submission(self) -> None:
        if self._status != WorkerStatus.SETUP:
            return
        command = remote.start(
            self.kit, self.submission, activate=self.settings.remote_activate,
            timeout=self.timeout, n_threads=self.config.get("n_threads"),
            memory_profiling=self.settings.memory_profiling,
        )
        try:
            self._remote(command, "start")
        except Exception as exc:
            self._failed(exc, "launch")
            return
        super().launch_submission()

    def _is_submission_finished(self) -> bool:
        try:
            self._check_instance()
            answer = self._remote(remote.poll(self.kit, self.submission), "poll").strip()
        except Exception as exc:
            self._failed(exc, "poll", raise_errors=False)
            return False
        if not answer:
            return False
        self._returncode = int(answer) if answer.lstrip("-").isdigit() else 1
        return True

    def kill_submission(self, timed_out: bool = False) -> None:
        if self._status == WorkerStatus.RUNNING:
            try:
                self._remote(remote.kill(self.kit, self.submission), "kill")
            except Exception as exc:
                logger.warning("%s: could not stop the run on %s: %s", self.submission,
                               self.instance_id, exc)
            if timed_out:
                self._returncode = TIMEOUT_RETURNCODE
        super().kill_submission(timed_out)

    def collect_results(self) -> tuple[int, str]:
        if self._status == WorkerStatus.RUNNING:
            # Stopped by the dispatcher before the end: the run goes back to the queue.
            self.kill_submission()
            self._retry("stopped by the dispatcher before the run ended")
        if self._status in (WorkerStatus.FINISHED, WorkerStatus.TIMEOUT):
            try:
                self._transfer(self._download, "download")
            except Exception as exc:
                self._failed(exc, "download", raise_errors=False)
        if self._status in (WorkerStatus.RETRY, WorkerStatus.ERROR, WorkerStatus.KILLED):
            return 1, self.retry_reason or self.error_reason or f"run {self.status}"
        super().collect_results()
        return self._outcome()

    def teardown(self) -> None:
        self._stop.set()
        lease, self._lease = self._lease, None
        fleet: Fleet | None = self.shared
        try:
            if lease is not None and fleet is not None:
                fleet.release(lease, reusable=self._reusable(lease))
        except Exception:
            logger.exception("%s: releasing instance %s failed; it is reaped by tag at "
                             "dispatcher stop", self.submission, lease and lease.instance_id)
        finally:
            if self._private_fleet and fleet is not None:
                fleet.close(reap=False)
            super().teardown()

    # -- steps ----------------------------------------------------------------------------

    def _upload(self, lease: Lease) -> None:
        source = Path(self.config["submissions_dir"]) / self.submission
        if not source.is_dir():
            raise CommandError(["upload", self.submission], 1,
                               stderr=f"no submission folder {source}")
        archive_name = remote.state_path(self.kit, self.submission, "submission.tar.gz")
        with tempfile.TemporaryDirectory(prefix="ramp-fleet-") as tmp:
            archive = Path(tmp) / "submission.tar.gz"
            with tarfile.open(archive, "w:gz") as tar:
                for item in sorted(source.iterdir()):
                    if item.name not in {"training_output", "__pycache__"}:
                        tar.add(item, arcname=item.name)
            lease.host.run(remote.prepare(self.kit, self.submission), "prepare")
            lease.host.put(archive, remote.remote_path(self.kit, ".ramp-fleet", self.submission,
                                                       "submission.tar.gz"))
        lease.host.run(remote.unpack(self.kit, self.submission, archive_name), "unpack")

    def _download(self, lease: Lease) -> None:
        archive_name = remote.state_path(self.kit, self.submission, "results.tar.gz")
        lease.host.run(remote.pack(self.kit, self.submission, archive_name), "pack")
        with tempfile.TemporaryDirectory(prefix="ramp-fleet-") as tmp:
            archive = Path(tmp) / "results.tar.gz"
            lease.host.get(remote.remote_path(self.kit, ".ramp-fleet", self.submission,
                                              "results.tar.gz"), archive)
            unpacked = Path(tmp) / "results"
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(unpacked, filter="data")
            self._store_results(unpacked)

    def _store_results(self, unpacked: Path) -> None:
        log = unpacked / "log"
        publish_file(log.read_bytes() if log.is_file() else b"",
                     Path(self.config["logs_dir"]) / self.submission / "log")
        peak = unpacked / "peak_kb"
        if self.settings.memory_profiling and peak.is_file():
            words = peak.read_text().split()
            if words and words[-1].isdigit():
                self.peak_memory_mb = int(words[-1]) / 1024
        output = unpacked / "training_output"
        if self._returncode == 0 and output.is_dir():
            publish_dir(output, Path(self.config["predictions_dir"]) / self.submission)

    def _outcome(self) -> tuple[int, str]:
        returncode = TIMEOUT_RETURNCODE if self._returncode is None else self._returncode
        if returncode == TIMEOUT_RETURNCODE:
            return returncode, f"timed out after {self.timeout:g} s"
        if returncode != 0:
            log = Path(self.config["logs_dir"]) / self.submission / "log"
            return returncode, error_excerpt(log)
        if not (Path(self.config["predictions_dir"]) / self.submission).is_dir():
            return 1, "ramp-test succeeded but wrote no training_output"
        return 0, ""

    def _reusable(self, lease: Lease) -> bool:
        if self._status != WorkerStatus.COLLECTED or not self.settings.reuse_instances:
            return False
        try:
            lease.host.run(remote.clean(self.kit, self.submission), "clean")
        except Exception as exc:
            logger.info("%s: instance %s not reused (%s)", self.submission,
                        lease.instance_id, exc)
            return False
        lease.runs += 1
        return True

    # -- plumbing -------------------------------------------------------------------------

    def _require_lease(self) -> Lease:
        if self._lease is None:
            raise InstanceError("no instance", transient=True)
        return self._lease

    def _check_instance(self) -> None:
        lease = self._require_lease()
        instances.check_alive(self.fleet.ec2, lease.instance_id)

    def _reconnect(self, lease: Lease) -> None:
        logger.warning("%s: SSH connection to %s lost; reconnecting", self.submission,
                       lease.instance_id)
        lease.host.connect(stop=self._stop,
                           alive=lambda: instances.check_alive(self.fleet.ec2, lease.instance_id))

    def _remote(self, command: str, what: str) -> str:
        """Run a short command; a dropped connection is reopened (with back-off) once."""
        lease = self._require_lease()
        try:
            return lease.host.run(command, what)
        except ConnectionLost:
            self._reconnect(lease)
            return lease.host.run(command, what)

    def _transfer(self, action: Callable[[Lease], T], what: str) -> T:
        """Retry an upload/download until TRANSFER_DEADLINE, reconnecting as needed."""
        lease = self._require_lease()
        try:
            for attempt in Backoff(deadline=TRANSFER_DEADLINE, first=1.0, cap=10.0,
                                   what=f"{what} of {self.submission}", stop=self._stop):
                if not lease.host.connected:
                    self._reconnect(lease)
                try:
                    return action(lease)
                except (ConnectionLost, CommandError, OSError, tarfile.TarError) as exc:
                    logger.warning("%s: %s failed (attempt %d): %s", self.submission, what,
                                   attempt.number, exc)
                    instances.check_alive(self.fleet.ec2, lease.instance_id)
                    attempt.failed(exc)
        except WaitTimeout as exc:
            raise exc.__cause__ or exc from None
        raise ConnectionLost(f"{what} of {self.submission} stopped")  # pragma: no cover

    def _retry(self, reason: str) -> None:
        self.retry_reason = reason
        logger.warning("%s: will be retried: %s", self.submission, reason)
        self.status = "retry"

    def _failed(self, exc: Exception, during: str, raise_errors: bool = True) -> None:
        """Infrastructure trouble → ``retry``; anything else → ``error`` (raised)."""
        if _is_transient(exc):
            self._retry(f"{during}: {exc}")
            return
        self.error_reason = f"{during}: {exc}"
        logger.error("%s: %s failed: %s", self.submission, during, exc)
        self.status = "error"
        if raise_errors:
            raise exc


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, InstanceError):
        return exc.transient
    return isinstance(exc, ConnectionLost | WaitTimeout | TimeoutError)

