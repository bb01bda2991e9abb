"""dask-cloudprovider's ``VMCluster`` with EC2 hosts launched by ramp-fleet's own code.

``VMCluster`` is the provider-neutral part of dask-cloudprovider: the
scheduler and each worker is a VM, the cluster a ``SpecCluster``, so
Dask's adaptive scaling drives it. Its ``EC2Cluster`` is not used: it needs
aiobotocore, whose pin on botocore cannot live with ours, and it always runs
Docker. The hosts here are launched, watched and terminated through
:mod:`ramp_fleet.aws.instances` (tagged at creation, spot with an on-demand
fallback) and booted from our user-data (:mod:`ramp_fleet.dask.elastic.plan`).

Changes from dask-cloudprovider's behaviour, each for a reason:

* a worker's Dask name is its name in the cluster's spec, so that Adaptive's
  ``retire_workers(names=...)`` finds it and retires it gracefully (with the
  stock random names it retires nothing and the VM is killed under its tasks);
* waiting for the scheduler has a deadline and notices a host that died;
* the cluster's log lines go to logging, not to stdout;
* a cluster that fails to start stops its event-loop thread.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import socket
import time
from typing import Any, ClassVar
from urllib.parse import urlsplit

from dask_cloudprovider.generic.vmcluster import SchedulerMixin, VMCluster, VMInterface, WorkerMixin

from ramp_fleet.aws import instances
from ramp_fleet.dask.elastic.plan import HostBoot, HostLaunch, Role
from ramp_fleet.errors import RampFleetError

logger = logging.getLogger("ramp_fleet.dask.elastic")

#: While waiting for the scheduler, how often to check that its host still runs.
ALIVE_CHECK_SECONDS = 15.0


class SchedulerBootError(RampFleetError):
    """The scheduler's host did not come up (in time, or at all)."""


class EC2Host(VMInterface):
    """One EC2 instance of the cluster; the scheduler and the workers add their role."""

    role: ClassVar[Role]

    def __init__(self, *args: Any, cluster: ElasticVMCluster, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.cluster = cluster
        self.instance_id: str | None = None
        self.instance: dict[str, Any] | None = None

    @property
    def launch(self) -> HostLaunch:
        return self.cluster.launch

    def argv(self) -> list[str]:
        raise NotImplementedError

    async def create_vm(self) -> tuple[str, str | None]:
        """Launch the instance; returns its (internal, external) address once it runs."""
        boot = self.cluster.boot
        spec = self.launch.spec(self.role, self.name, boot.user_data(self.role, self.argv()))
        launched = await self.call_async(instances.launch, self.launch.ec2, spec)
        self.instance_id = launched.instance_id
        try:
            self.instance = await self.call_async(
                instances.wait_running, self.launch.ec2, launched.instance_id,
                self.cluster.boot_timeout)
            return self.addresses(self.instance)
        except BaseException:
            await self.destroy_vm()
            raise

    def addresses(self, instance: dict[str, Any]) -> tuple[str, str | None]:
        return str(instance["PrivateIpAddress"]), None

    async def destroy_vm(self) -> None:
        if self.instance_id is None:
            return
        await self.call_async(instances.terminate, self.launch.ec2, [self.instance_id])
        self.cluster._log(f"terminated {self.name} ({self.instance_id})")


class SchedulerHost(SchedulerMixin, EC2Host):
    role: ClassVar[Role] = "scheduler"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.port = self.cluster.boot.scheduler_port

    def argv(self) -> list[str]:
        return self.cluster.boot.scheduler_argv()

    def addresses(self, instance: dict[str, Any]) -> tuple[str, str | None]:
        """Workers reach the scheduler inside the VPC; the dispatcher at its public IP."""
        private = str(instance["PrivateIpAddress"])
        public = instance.get("PublicIpAddress")
        return private, (None if self.launch.private_only or not public else str(public))

    async def wait_for_scheduler(self) -> None:
        """Until the scheduler's port answers; fails past ``boot_timeout`` or if the host dies."""
        parts = urlsplit(self.external_address or self.address)
        host, port = str(parts.hostname), int(parts.port or self.port)
        started = time.monotonic()
        next_check = started + ALIVE_CHECK_SECONDS
        while not await self.call_async(_port_open, host, port):
            now = time.monotonic()
            if now - started > self.cluster.boot_timeout:
                raise SchedulerBootError(
                    f"the Dask scheduler on {self.instance_id} did not listen on {host}:{port} "
                    f"within {self.cluster.boot_timeout:g} s (see the instance's console output)")
            if now >= next_check and self.instance_id is not None:
                next_check = now + ALIVE_CHECK_SECONDS
                try:
                    await self.call_async(instances.check_alive, self.launch.ec2, self.instance_id)
                except instances.InstanceLost as lost:
                    raise SchedulerBootError(f"the Dask scheduler's host died at boot: {lost}") \
                        from lost
            await asyncio.sleep(1.0)
        self.cluster._log(f"scheduler listening on {host}:{port}")


class WorkerHost(WorkerMixin, EC2Host):
    role: ClassVar[Role] = "worker"

    def __init__(self, scheduler: str, *args: Any, name: str, **kwargs: Any):
        super().__init__(scheduler, *args, **kwargs)
        self.name = str(name)  # the spec's name: Adaptive retires workers by it

    def argv(self) -> list[str]:
        return self.cluster.boot.worker_argv(self.scheduler, self.name)


class ElasticVMCluster(VMCluster):
    """The cluster object: one scheduler host, worker hosts added and retired by Adaptive."""

    scheduler_class = SchedulerHost
    worker_class = WorkerHost

    def __init__(self, *, launch: HostLaunch, boot: HostBoot, security: Any, boot_timeout: float,
                 **kwargs: Any):
        self.launch = launch
        self.boot = boot
        self.boot_timeout = boot_timeout
        # Our own dicts: VMCluster writes into these, and its class-level ones are shared.
        self.options: dict[str, Any] = {}
        self.scheduler_options = {"cluster": self}
        self.worker_options = {"cluster": self}
        try:
            super().__init__(n_workers=0, security=security, protocol="tls", **kwargs)
        except BaseException:
            runner = getattr(self, "_loop_runner", None)
            if runner is not None:  # SpecCluster leaves it running when _start fails
                runner.stop()
            raise

    async def _start(self) -> None:
        self.uuid = self.launch.cluster_id  # names, tags and the SSM key share one id
        await super()._start()

    def _new_worker_name(self, worker_number: int) -> str:
        return f"dask-{self.launch.cluster_id}-worker-{worker_number}"

    def _log(self, log: str) -> None:
        self._cluster_manager_logs.append((datetime.datetime.now(), log))
        logger.info("%s: %s", self.launch.cluster_id, log)


def _port_open(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
