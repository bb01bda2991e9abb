"""What all AWS runs of one dispatcher share: the session, the image, the instances.

The :class:`Fleet` is what ``AWSWorker.open_shared`` returns. It launches
instances for workers (or hands them a finished one when
``reuse_instances`` is on), terminates idle ones after
``instance_idle_timeout``, reaps by tag what nobody owns, and counts what it
did (instances launched, SSH connections opened) for benchmarks and logs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ramp_fleet.aws import instances
from ramp_fleet.aws.ami import ImageChoice, resolve_image
from ramp_fleet.aws.host_keys import InstanceHostKey
from ramp_fleet.aws.session import ec2_client, make_session
from ramp_fleet.aws.ssh import HostKeyChanged, KnownHosts, RemoteHost, SSHSettings
from ramp_fleet.config import EventConfig
from ramp_fleet.config.sections import AWSWorkerSection
from ramp_fleet.errors import UsageError
from ramp_fleet.faults import cleanups, log_failure, outside_fault
from ramp_fleet.store.records import InstanceLog, InstanceRecord

logger = logging.getLogger("ramp_fleet.aws")

KNOWN_HOSTS_NAME = "ssh_known_hosts"


@dataclass
class FleetStats:
    instances_launched: int = 0
    ssh_connections: int = 0
    instances_reused: int = 0
    instances_reaped: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)


@dataclass
class Lease:
    """One instance, lent to one worker at a time."""

    instance_id: str
    host: RemoteHost
    slot: int
    lifecycle: str
    runs: int = 0
    idle_since: float = 0.0


class Fleet:
    def __init__(self, settings: AWSWorkerSection, *, event_name: str, event_dir: Path,
                 instance_log: InstanceLog | None = None):
        self.settings = settings
        self.event_name = event_name
        #: Each instance launched and terminated, for the operator's report.
        self.instance_log = instance_log
        self.ec2 = ec2_client(make_session(settings))
        self.known_hosts = KnownHosts(event_dir / KNOWN_HOSTS_NAME)
        self.stats = FleetStats()
        self._lock = threading.Lock()
        self._busy: dict[str, Lease] = {}
        self._idle: list[Lease] = []
        self._image: tuple[float, ImageChoice] | None = None
        self._closed = threading.Event()
        self._janitor: threading.Thread | None = None
        self._security_groups: tuple[str, ...] | None = None
        #: Slots of launches still in flight (no lease yet).
        self._reserved_slots: set[int] = set()

    @classmethod
    def for_event(cls, event: EventConfig) -> Fleet:
        """The fleet of an event whose worker is the AWS worker (or builds on it)."""
        if not isinstance(event.worker, AWSWorkerSection):
            raise UsageError(f"{event.display}: worker.worker_type: is {event.worker_type!r}; "
                             "this needs the AWS worker's keys")
        from ramp_fleet.store import Store

        return cls(event.worker, event_name=event.event_name, event_dir=event.event_dir,
                   instance_log=Store(event.store_path))

    # -- image ------------------------------------------------------------------

    def image(self, refresh: bool = False) -> ImageChoice:
        """The image to boot, re-resolved every ``ami_refresh_interval`` seconds."""
        with self._lock:
            cached = self._image
        now = time.monotonic()
        if cached is not None and not refresh \
                and now - cached[0] < self.settings.ami_refresh_interval:
            return cached[1]
        choice = resolve_image(self.ec2, image_id=self.settings.ami_image_id,
                               name_prefix=self.settings.ami_image_name,
                               owners=self.settings.ami_owners)
        if cached is None or cached[1].chosen != choice.chosen:
            logger.info("booting %s (%s, version %s)", choice.chosen.image_id,
                        choice.chosen.name, choice.chosen.version_text)
        with self._lock:
            self._image = (now, choice)
        return choice

    # -- instances ----------------------------------------------------------------

    def ssh_settings(self) -> SSHSettings:
        return SSHSettings(
            user=self.settings.ami_user_name,
            key_path=self.settings.key_path,
            ssh_config_file=self.settings.ssh_config_file,
            connect_deadline=self.settings.ssh_connect_timeout,
        )

    def acquire(self, submission: str, stop: threading.Event | None = None) -> Lease:
        """An instance for ``submission``: an idle one when reusing, else a new one."""
        while True:
            lease = self._take_idle()
            if lease is None:
                return self._launch(submission, stop)
            try:
                instances.check_alive(self.ec2, lease.instance_id)
                lease.host.connect(stop=stop, alive=self._alive_check(lease.instance_id))
                instances.retag(self.ec2, lease.instance_id, {
                    instances.SUBMISSION_TAG: submission, instances.SLOT_TAG: str(lease.slot)})
            except Exception as exc:
                logger.warning("idle instance %s is not usable (%s); dropping it",
                               lease.instance_id, exc)
                self.release(lease, reusable=False)
                continue
            self.stats.add("instances_reused")
            return lease

    def _take_idle(self) -> Lease | None:
        with self._lock:
            if not self._idle:
                return None
            lease = self._idle.pop()  # the most recently used: its caches are warm
            lease.slot = self._free_slot()
            self._busy[lease.instance_id] = lease
            return lease

    def _free_slot(self) -> int:
        used = {lease.slot for lease in self._busy.values()} | self._reserved_slots
        return next(slot for slot in range(len(used) + 1) if slot not in used)

    def _alive_check(self, instance_id: str) -> Any:
        return lambda: instances.check_alive(self.ec2, instance_id)

    def _launch(self, submission: str, stop: threading.Event | None) -> Lease:
        image = self.image().chosen
        if self._security_groups is None:
            self._security_groups = instances.security_group_ids(
                self.ec2, self.settings.security_group, self.settings.subnet_id)
        with self._lock:
            slot = self._free_slot()
            self._reserved_slots.add(slot)
        host_key = InstanceHostKey.generate()
        try:
            spec = instances.LaunchSpec(
                image_id=image.image_id,
                instance_type=self.settings.instance_type,
                key_name=self.settings.key_name,
                security_group_ids=self._security_groups,
                subnet_id=self.settings.subnet_id,
                use_spot=self.settings.use_spot_instance,
                tags=instances.event_tags(self.event_name, submission, slot),
                user_data=host_key.user_data,
            )
            launched = instances.launch(self.ec2, spec)
            self.stats.add("instances_launched")
            self._logged(lambda log: log.save_instance(InstanceRecord(
                launched.instance_id, spec.instance_type, launched.lifecycle,
                self.ec2.meta.region_name, time.time())))
            host = RemoteHost("", launched.instance_id, self.ssh_settings(), self.known_hosts,
                              on_connect=lambda: self.stats.add("ssh_connections"))
            lease = Lease(launched.instance_id, host, slot, launched.lifecycle)
            with self._lock:
                self._busy[lease.instance_id] = lease
        finally:
            with self._lock:
                self._reserved_slots.discard(slot)
        try:
            self.known_hosts.record(lease.instance_id, host_key.public_key)
            described = instances.wait_running(self.ec2, lease.instance_id,
                                               self.settings.ssh_connect_timeout, stop)
            host.address = instances.address(described)
            host.connect(stop=stop, alive=self._alive_check(lease.instance_id))
        except BaseException as exc:
            if isinstance(exc, HostKeyChanged):
                logger.warning("terminating instance %s, which is not the host it should be: %s",
                               lease.instance_id, exc)
            self.release(lease, reusable=False)
            raise
        return lease

    def release(self, lease: Lease, reusable: bool) -> None:
        """Give an instance back: kept idle when reusable and reuse is on, else terminated."""
        keep = reusable and self.settings.reuse_instances and not self._closed.is_set()
        with self._lock:
            self._busy.pop(lease.instance_id, None)
            if keep:
                lease.idle_since = time.monotonic()
                self._idle.append(lease)
                self._start_janitor()
        if not keep:
            self._terminate([lease])

    def _terminate(self, leases: list[Lease]) -> None:
        for lease in leases:
            lease.host.close()
        instances.terminate(self.ec2, [lease.instance_id for lease in leases])
        for lease in leases:
            self.known_hosts.forget(lease.instance_id)
            self._log_terminated(lease.instance_id)

    def _start_janitor(self) -> None:
        if self._janitor is None:
            self._janitor = threading.Thread(target=self._expire_idle, daemon=True,
                                             name="ramp-fleet-idle-instances")
            self._janitor.start()

    def _expire_idle(self) -> None:
        period = min(5.0, self.settings.instance_idle_timeout / 4)
        while not self._closed.wait(period):
            now = time.monotonic()
            with self._lock:
                expired = [lease for lease in self._idle
                           if now - lease.idle_since >= self.settings.instance_idle_timeout]
                self._idle = [lease for lease in self._idle if lease not in expired]
            if expired:
                logger.info("terminating %d idle instance(s)", len(expired))
                try:
                    self._terminate(expired)
                except Exception as exc:
                    log_failure(logger, "terminating idle instances failed; reaped at stop", exc)

    def instance_count(self) -> int:
        """Instances this fleet holds: lent to a run, being launched, or idle."""
        with self._lock:
            return len(self._busy) + len(self._idle) + len(self._reserved_slots)

    def idle_instances(self) -> list[str]:
        with self._lock:
            return [lease.instance_id for lease in self._idle]

    # -- reaping ------------------------------------------------------------------

    def reap(self, dry_run: bool = False) -> list[instances.TaggedInstance]:
        """Terminate this event's instances that no lease of this fleet owns."""
        with self._lock:
            owned = set(self._busy) | {lease.instance_id for lease in self._idle}
        found = instances.reap_event_instances(self.ec2, self.event_name,
                                               instances.WORKER_MARKER, spare=owned,
                                               dry_run=dry_run)
        if found and not dry_run:
            for item in found:
                self.known_hosts.forget(item.instance_id)
                self._log_terminated(item.instance_id)
            self.stats.add("instances_reaped", len(found))
        return found

    def close(self, reap: bool = True) -> None:
        """Terminate every instance: idle ones, any still lent, and (``reap``) tagged leftovers."""
        self._closed.set()
        with self._lock:
            leases = self._idle + list(self._busy.values())
            self._idle = []
            self._busy = {}
        try:
            cleanups(("terminating the event's instances",
                      lambda: self._terminate(leases) if leases else None),
                     *([("reaping the event's instances left by tag", self.reap)] if reap else []))
        except Exception as exc:
            fault = outside_fault(exc)
            if fault is None:
                raise
            held = ", ".join(lease.instance_id for lease in leases)
            raise fault.and_then(f"instances of the event may still run{f' ({held})' if held else ''}"
                                 ": they are reaped at the next start, or by `ramp-fleet reap`"
                                 ) from exc
        if self._janitor is not None:
            self._janitor.join(timeout=10)
        if self.instance_log is not None:
            self.instance_log.close()

    def _log_terminated(self, instance_id: str) -> None:
        self._logged(lambda log: log.instance_terminated(instance_id))

    def _logged(self, write: Callable[[InstanceLog], None]) -> None:
        """Record an instance's launch or end; a failure to record never stops the fleet."""
        if self.instance_log is None:
            return
        try:
            write(self.instance_log)
        except Exception:
            logger.exception("could not record an instance in the event's store")

