"""``worker_type: aws`` — each submission runs on an EC2 instance of the event's AMI.

``setup`` gets an instance from the dispatcher's :class:`~ramp_fleet.aws.fleet.Fleet`
(new, or a finished one when ``reuse_instances`` is on) and uploads the run's
inputs and the runner into its run folder there; ``launch_submission`` starts
the runner detached (:mod:`ramp_fleet.aws.remote`); polls read its exit-status
file over the same SSH connection; ``fetch_output`` reads the report, the log
(bounded) and downloads the results (capped) for the base class to receive;
``teardown`` gives the instance back (terminated unless it is reused).

Failures of the infrastructure (instance gone, spot interruption, SSH lost
for good, no capacity) and an instance presenting a host key other than the
one it was given raise :class:`~ramp_fleet.workers.base.WorkerRetry`:
the submission goes back to the queue. Anything else is raised as it is.
The instance is released in every case.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ramp_fleet.aws import instances, remote
from ramp_fleet.aws.fleet import Fleet, Lease
from ramp_fleet.aws.instances import InstanceError
from ramp_fleet.aws.ssh import ConnectionLost, HostKeyChanged
from ramp_fleet.config import EventConfig
from ramp_fleet.config.sections import AWSWorkerSection
from ramp_fleet.errors import CommandError
from ramp_fleet.faults import log_failure
from ramp_fleet.results import RunOutput
from ramp_fleet.sandbox.logs import LogSource
from ramp_fleet.sandbox.spec import LOG, RESULTS, Report
from ramp_fleet.sandbox.zipapp import runner_pyz
from ramp_fleet.store.records import RunPlace
from ramp_fleet.waiting import Backoff, WaitTimeout
from ramp_fleet.workers.base import BaseWorker, InterruptedRun, WorkerRetry
from ramp_fleet.workers.inputs import RunInputs, run_inputs

logger = logging.getLogger("ramp_fleet.workers.aws")

#: How long an upload or download is retried before it is classified.
TRANSFER_DEADLINE = 60.0
T = TypeVar("T")


class AWSWorker(BaseWorker):
    """Trains one submission on an EC2 instance (see the module docstring)."""

    section_type: ClassVar[type[AWSWorkerSection]] = AWSWorkerSection
    settings: AWSWorkerSection
    #: The runner on the instance stops a run at its timeout (and then packs its results):
    #: the dispatcher gives up on it this much later.
    deadline_grace: ClassVar[float] = 15.0
    #: Runs start on the instances; the sandbox is built (and bwrap checked) there.
    runs_on_this_machine: ClassVar[bool] = False

    def __init__(self, config: EventConfig, submission: str):
        super().__init__(config, submission)
        self.kit = self.settings.remote_ramp_kit_folder
        #: This run's folder under the kit's ``.ramp-fleet`` on the instance.
        self.folder = remote.run_folder_name(submission)
        self._lease: Lease | None = None
        self._returncode: int | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

    # -- shared by the dispatcher's slots, and what a dead one left ---------------------

    @classmethod
    def open_shared(cls, event: EventConfig) -> Fleet:
        return Fleet.for_event(event)

    @classmethod
    def reconcile(cls, shared: Any, event: EventConfig,
                  interrupted: Sequence[InterruptedRun]) -> None:
        """Terminate, by tag, every instance of the event a dead dispatcher left."""
        if isinstance(shared, Fleet):
            shared.reap()

    @classmethod
    def close_shared(cls, shared: Any) -> None:
        if shared is not None:
            shared.close()

    @classmethod
    def instances_alive(cls, shared: Any) -> int:
        return shared.instance_count() if isinstance(shared, Fleet) else 0

    @property
    def fleet(self) -> Fleet:
        fleet: Fleet = self.shared_resources()
        return fleet

    @property
    def instance_id(self) -> str | None:
        return self._lease.instance_id if self._lease is not None else None

    # -- the run -------------------------------------------------------------------------

    def setup(self) -> None:
        with _retry_on_infrastructure("setup"):
            self._lease = self.fleet.acquire(self.submission, stop=self.stopping)
            self.place = RunPlace(instance_id=self._lease.instance_id,
                                  instance_type=self.settings.instance_type,
                                  market=self._lease.lifecycle)
            # After the instance: its boot and the trusted scorer's start overlap.
            inputs = instance_inputs(self.event, self.submission, handed=self.handed_data())
            self._transfer(lambda lease: self._upload(lease, inputs), "upload")
        super().setup()

    def launch_submission(self) -> None:
        command = remote.start(self.kit, self.folder, activate=self.settings.remote_activate)
        with _retry_on_infrastructure("launch"):
            self._remote(command, "start")
        super().launch_submission()

    def _is_submission_finished(self) -> bool:
        with _retry_on_infrastructure("poll"):
            self._check_instance()
            answer = self._remote(remote.poll(self.kit, self.folder), "poll").strip()
        if not answer:
            return False
        self._returncode = int(answer) if answer.lstrip("-").isdigit() else 1
        return True

    def _stop_run(self, timed_out: bool) -> None:
        try:
            self._remote(remote.kill(self.kit, self.folder), "kill")
        except Exception as exc:
            logger.warning("%s: could not stop the run on %s: %s", self.submission,
                           self.instance_id, exc)

    def fetch_output(self) -> RunOutput:
        with _retry_on_infrastructure("download"):
            return self._transfer(self._download, "download")

    def teardown(self) -> None:
        lease, self._lease = self._lease, None
        fleet: Fleet | None = self.shared
        if lease is not None and self.status == "running" and lease.host.connected:
            try:  # a run given up on (a retry, a bug) is stopped before its instance goes
                lease.host.run(remote.kill(self.kit, self.folder), "kill")
            except Exception as exc:
                logger.info("%s: stopping the run on %s: %s", self.submission,
                            lease.instance_id, exc)
        try:
            if lease is not None and fleet is not None:
                fleet.release(lease, reusable=self._reusable(lease))
        except Exception as exc:
            log_failure(logger, f"{self.submission}: releasing instance "
                                f"{lease and lease.instance_id} failed; it is reaped by tag at "
                                "dispatcher stop", exc)
        finally:
            if self._scratch is not None:
                self._scratch.cleanup()
            super().teardown()

    # -- steps ----------------------------------------------------------------------------

    def _upload(self, lease: Lease, inputs: RunInputs) -> None:
        upload_run(lease, self.kit, self.folder, inputs.files())

    def _download(self, lease: Lease) -> RunOutput:
        limits = self.settings.result_limits
        log = lease.host.read_log(remote.run_folder(self.kit, self.folder, LOG),
                                  limits.max_log_bytes)
        report = Report.parse(lease.host.run(remote.report(self.kit, self.folder), "report"))
        results: Path | None = None
        if self._returncode == 0 and report is not None and report.has_results:
            if self._scratch is None:
                self._scratch = tempfile.TemporaryDirectory(prefix="ramp-fleet-")
            results = Path(self._scratch.name) / RESULTS
            if not lease.host.get_bounded(remote.run_folder(self.kit, self.folder, RESULTS),
                                          results, limits.max_bytes):
                results = None
        return RunOutput(report, LogSource.from_bytes(log), results, self._returncode)

    def _reusable(self, lease: Lease) -> bool:
        if self.status != "collected" or not self.settings.reuse_instances:
            return False
        try:
            lease.host.run(remote.clean(self.kit, self.folder), "clean")
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
        lease.host.connect(stop=self.stopping,
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
                                   what=f"{what} of {self.submission}", stop=self.stopping):
                if not lease.host.connected:
                    self._reconnect(lease)
                try:
                    return action(lease)
                except (ConnectionLost, CommandError, OSError) as exc:
                    logger.warning("%s: %s failed (attempt %d): %s", self.submission, what,
                                   attempt.number, exc)
                    instances.check_alive(self.fleet.ec2, lease.instance_id)
                    attempt.failed(exc)
        except WaitTimeout as exc:
            raise exc.__cause__ or exc from None
        raise ConnectionLost(f"{what} of {self.submission} stopped")  # pragma: no cover


def instance_layout(event: EventConfig) -> dict[str, Any]:
    """Where things are on an instance of the event's AMI: the data in the kit folder, the
    run folders in its ``.ramp-fleet`` (options of :func:`~ramp_fleet.workers.inputs.run_spec`)."""
    assert isinstance(event.worker, AWSWorkerSection)
    kit = remote.home_kit(event.worker.remote_ramp_kit_folder)
    return {"kit_dir": kit, "data_dir": kit, "hidden": (f"{kit}/.ramp-fleet",)}


def instance_inputs(event: EventConfig, submission: str, **options: Any) -> RunInputs:
    """A run's inputs as an instance of the event's AMI lays things out."""
    return run_inputs(event, submission, **instance_layout(event), **options)


def upload_run(lease: Lease, kit: str, folder: str, files: Mapping[str, bytes]) -> None:
    """A new run folder on the instance, with the run's input ``files`` and the runner."""
    lease.host.run(remote.prepare(kit, folder), "prepare")
    for name, data in {**files, remote.RUNNER_PYZ: runner_pyz()}.items():
        lease.host.put(data, remote.run_folder(kit, folder, name))


@contextmanager
def _retry_on_infrastructure(during: str) -> Iterator[None]:
    """Turn a transient failure of the infrastructure into :class:`WorkerRetry`."""
    try:
        yield
    except WorkerRetry:
        raise
    except Exception as exc:
        if _is_transient(exc):
            raise WorkerRetry(f"{during}: {exc}") from exc
        raise


def _is_transient(exc: BaseException) -> bool:
    """Worth another instance: infrastructure trouble, or a host that is not the one launched."""
    if isinstance(exc, InstanceError):
        return exc.transient
    return isinstance(exc, ConnectionLost | HostKeyChanged | WaitTimeout | TimeoutError)
