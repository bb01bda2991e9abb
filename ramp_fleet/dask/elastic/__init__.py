"""An elastic Dask cluster on EC2 for one event, opened and closed by its owner.

    cluster = ElasticCluster.open(settings, event)     # scheduler up, adaptive on
    client = Client(cluster.address, security=cluster.security)
    ...
    cluster.close()                                     # every host terminated

This module is the cluster's lifecycle: open, scale, close, reap, and the
dispatcher's connection (:func:`open_connection`). The hosts boot the newest
event AMI (the AWS worker's version-aware resolution), run Dask from the
event's conda environment (no Docker) as :mod:`.plan` says, talk TLS with
certificates of the cluster's own (:mod:`.tls`; the hosts' key through
SSM), carry the event tag, and are driven by dask-cloudprovider's
``VMCluster`` (:mod:`.hosts`). Adaptive scaling follows the queue between
``min_workers`` and ``max_workers`` and retires a worker idle for
``idle_timeout``.

An event's cluster has one owner at a time: the dispatcher, or
``ramp-fleet dask ec2``, each under the event's dispatcher lock. So what
opening finds of an earlier cluster is a dead owner's, and is reaped (hosts
by tag, keys in SSM, client files); :func:`reap` does the same on demand.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from ramp_fleet.aws import instances
from ramp_fleet.aws.ami import ImageChoice
from ramp_fleet.aws.instances import TaggedInstance
from ramp_fleet.config import EventConfig
from ramp_fleet.config.sections import DaskWorkerSection, ElasticDaskSection
from ramp_fleet.dask.certs import TLSFiles
from ramp_fleet.dask.connection import DaskConnection
from ramp_fleet.dask.elastic.plan import (
    CLUSTER_TAG,
    MARKER,
    TARGET_DURATION_SECONDS,
    AwsClients,
    aws_clients,
    choose_image,
    host_boot,
    launch_plan,
)
from ramp_fleet.dask.elastic.tls import ClusterCertificates, HostKeys, client_security
from ramp_fleet.errors import RampFleetError, UsageError
from ramp_fleet.extras import require
from ramp_fleet.names import EventNames, elastic_section, event_tags

logger = logging.getLogger("ramp_fleet.dask.elastic")

#: Under the event folder: the client certificates of the open cluster.
LOCAL_FOLDER = ".dask-elastic"
#: How long closing may take before the cluster's hosts are terminated by tag.
CLOSE_TIMEOUT = 120.0


class ElasticClusterError(RampFleetError):
    """The elastic cluster could not be opened."""


@dataclass(frozen=True)
class Scaling:
    """Dask's adaptive scaling, with a worker retired after ≈ ``interval × wait_count`` idle."""

    minimum: int
    maximum: int
    interval: float
    wait_count: int
    target_duration: float = TARGET_DURATION_SECONDS

    @classmethod
    def of(cls, settings: ElasticDaskSection) -> Scaling:
        interval = min(5.0, max(0.5, settings.idle_timeout / 6))
        wait_count = max(1, round(settings.idle_timeout / interval))
        return cls(settings.min_workers, settings.max_workers, interval, wait_count)


class ElasticCluster:
    """An open elastic cluster: ``address`` and ``security`` for clients, ``close()`` when done."""

    def __init__(self, vm: Any, *, cluster_id: str, image: ImageChoice, tls: TLSFiles,
                 cleanup: _Cleanup):
        self._vm = vm
        self.cluster_id = cluster_id
        self.image = image
        #: The client's TLS files (CA, certificate, key) for ``dask_tls``.
        self.tls = tls
        #: ``tls://host:port`` as this machine reaches the scheduler.
        self.address: str = vm.scheduler_address
        #: ``distributed.security.Security`` for a client of this cluster.
        self.security = client_security(tls)
        self._cleanup = cleanup
        self._closed = False

    @classmethod
    def open(cls, settings: ElasticDaskSection, event: EventConfig, *,
             workdir: Path | None = None, workers: int | None = None) -> ElasticCluster:
        """Boot the scheduler and scale adaptively (or to a fixed number of ``workers``)."""
        clients = aws_clients(settings, event)
        names = EventNames.of(event)
        keys = HostKeys(clients.ssm, names, event_tags(event))
        _reap(clients, keys, event)
        image = choose_image(clients.ec2, settings, names)
        cluster_id = uuid.uuid4().hex[:8]
        folder = workdir or event.event_dir / LOCAL_FOLDER / cluster_id
        # A folder of our own goes with the cluster; one we were given is kept.
        cleanup = _Cleanup(clients.ec2, keys, event.event_name, cluster_id,
                           None if workdir else folder)
        try:
            launch = launch_plan(settings, event, clients.ec2, cluster_id, image.chosen.image_id)
            certificates = ClusterCertificates.generate(f"ramp-fleet {event.event_name} {cluster_id}")
            tls = certificates.write_client_files(folder)
            key_parameter = keys.put(cluster_id, certificates.host_key_pem)
            boot = host_boot(settings, event, clients.region, cluster_id, certificates,
                             key_parameter)
            logger.info("opening elastic Dask cluster %s of %s from %s (%s)", cluster_id,
                        event.event_name, image.chosen.image_id, image.chosen.name)
            vm = _cluster_class()(launch=launch, boot=boot, boot_timeout=settings.boot_timeout,
                                  security=client_security(tls, require_encryption=False),
                                  name=f"ramp-fleet-{cluster_id}")
        except BaseException as exc:
            cleanup.run()
            if isinstance(exc, RampFleetError) or not isinstance(exc, Exception):
                raise
            raise ElasticClusterError(f"the elastic Dask cluster did not start: {exc}") from exc
        cluster = cls(vm, cluster_id=cluster_id, image=image, tls=tls, cleanup=cleanup)
        try:
            if workers is None:
                cluster.adapt(Scaling.of(settings))
            else:
                vm.scale(workers)
        except BaseException:
            cluster.close()
            raise
        return cluster

    def adapt(self, scaling: Scaling) -> None:
        self._vm.adapt(minimum=scaling.minimum, maximum=scaling.maximum,
                       interval=f"{scaling.interval}s", wait_count=scaling.wait_count,
                       target_duration=f"{scaling.target_duration}s")

    def requested_workers(self) -> list[str]:
        """The names of the workers the cluster has asked for (booting or running)."""
        return sorted(str(name) for name in self._vm.worker_spec)

    def close(self) -> None:
        """Retire the workers, stop the scheduler, terminate every host; never raises."""
        if self._closed:
            return
        self._closed = True
        try:
            self._vm.close(timeout=CLOSE_TIMEOUT)
        except Exception as exc:  # the hosts are terminated by tag below all the same
            logger.warning("closing elastic Dask cluster %s: %s", self.cluster_id, exc)
            self._vm._loop_runner.stop()  # SpecCluster.close skips it when _close raises
        finally:
            self._cleanup.run()

    def __enter__(self) -> ElasticCluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class ElasticConnection(DaskConnection):
    """The dispatcher's connection to the cluster it opened: closing it closes the cluster."""

    def __init__(self, cluster: ElasticCluster, connect_timeout: float = 30.0):
        super().__init__(cluster.address, cluster.security, connect_timeout)
        self.cluster = cluster

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.cluster.close()


def open_connection(worker: DaskWorkerSection, event: EventConfig) -> ElasticConnection:
    """For ``DaskWorker.open_shared``: open the event's elastic cluster and a client of it."""
    if worker.dask_cluster is None:
        raise UsageError(f"{event.display}: worker.dask_cluster: is not set")
    cluster = ElasticCluster.open(worker.dask_cluster, event)
    try:
        connection = ElasticConnection(cluster, worker.dask_connect_timeout)
        connection.client()
        return connection
    except BaseException:
        cluster.close()
        raise


def reap(event: EventConfig, *, dry_run: bool = False) -> list[TaggedInstance]:
    """Terminate every host of the event's elastic clusters and delete their keys.

    Only for an event no owner serves (take the dispatcher lock first).
    """
    settings = elastic_section(event)
    if settings is None:
        raise UsageError(f"{event.display}: worker.dask_cluster: is not set; this event has no "
                         "elastic Dask cluster")
    clients = aws_clients(settings, event)
    if dry_run:
        return _reap_hosts(clients.ec2, event.event_name, dry_run=True)
    return _reap(clients, HostKeys(clients.ssm, EventNames.of(event), event_tags(event)), event)


@dataclass
class _Cleanup:
    """What closing (or failing to open) leaves to do, each step on its own."""

    ec2: Any
    keys: HostKeys
    event_name: str
    cluster_id: str
    folder: Path | None

    def run(self) -> None:
        steps = (lambda: _reap_hosts(self.ec2, self.event_name, self.cluster_id),
                 lambda: self.keys.delete(self.cluster_id))
        for step in steps:
            try:
                step()
            except Exception as exc:  # one failure must not keep the others from running
                logger.error("cleaning up elastic Dask cluster %s: %s (`ramp-fleet reap` "
                             "finishes it)", self.cluster_id, exc)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _reap(clients: AwsClients, keys: HostKeys, event: EventConfig) -> list[TaggedInstance]:
    found = _reap_hosts(clients.ec2, event.event_name)
    keys.reap()
    shutil.rmtree(event.event_dir / LOCAL_FOLDER, ignore_errors=True)
    return found


def _reap_hosts(ec2: Any, event_name: str, cluster_id: str | None = None,
                dry_run: bool = False) -> list[TaggedInstance]:
    """Terminate the live hosts of the event's elastic clusters (of one if ``cluster_id``)."""
    return instances.reap_event_instances(
        ec2, event_name, MARKER, None if cluster_id is None else {CLUSTER_TAG: cluster_id},
        dry_run=dry_run, log=logger, notice="terminating %d elastic Dask host(s) of %s: %s")


def _cluster_class() -> Any:
    require("elastic", "worker.dask_cluster (an elastic Dask cluster on EC2)")
    from ramp_fleet.dask.elastic.hosts import ElasticVMCluster

    return ElasticVMCluster
