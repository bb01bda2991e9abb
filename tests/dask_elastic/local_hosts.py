"""TEST ONLY: instance classes whose "boot" is a real Dask process on 127.0.0.1.

Everything up to the boot is the production code: the instance is launched
in moto (image, tags, security groups, instance profile and the rendered
user-data all go through the real EC2 API calls), and the cluster waits for
the scheduler's port and talks TLS to it. Where an EC2 host would run its
user-data, :mod:`tests.dask_elastic.instance_shim` runs the same command
(the event's Python replaced by this one, listening on 127.0.0.1, any free
worker ports) with the certificate files and the host key read from moto's
SSM. moto's fictional IP addresses are never contacted: the hosts' address
is 127.0.0.1.

``use_local_hosts()`` puts these classes in the production cluster class;
the ``local_hosts`` fixture does it for a test, and
``python -m tests.dask_elastic.with_local_hosts ARGS`` for a ``ramp-fleet``
command in a process of its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ramp_fleet.dask.elastic.hosts import ElasticVMCluster, SchedulerHost, WorkerHost
from ramp_fleet.dask.elastic.plan import HostBoot

REPO = Path(__file__).resolve().parents[2]
SHIM_MODULE = "tests.dask_elastic.instance_shim"
#: Where the stand-in hosts keep their files; one folder per instance.
HOSTS_DIR_VARIABLE = "RAMP_FLEET_TEST_HOSTS_DIR"


class LocalHost:
    """Mixed in before the production host class: boots a local process, not EC2's."""

    shim: subprocess.Popen[bytes] | None = None

    async def create_vm(self) -> tuple[str, str | None]:
        await super().create_vm()  # type: ignore[misc]  # moto: launch, tags, user-data, running
        self.shim = await self.call_async(self._start_shim)  # type: ignore[attr-defined]
        return "127.0.0.1", None

    async def destroy_vm(self) -> None:
        await super().destroy_vm()  # type: ignore[misc]  # moto terminates; the shim sees it
        shim, self.shim = self.shim, None
        if shim is not None:
            await self.call_async(_wait_or_kill, shim)  # type: ignore[attr-defined]

    def local_argv(self, boot: HostBoot) -> list[str]:
        raise NotImplementedError

    def _start_shim(self) -> subprocess.Popen[bytes]:
        host: Any = self
        home = Path(tempfile.mkdtemp(prefix=f"{host.instance_id}-", dir=hosts_dir()))
        boot = dataclasses.replace(host.cluster.boot, python=sys.executable,
                                   tls_dir=str(home / "tls"), listen_host="127.0.0.1",
                                   dashboard=False, worker_port=0)
        plan = {
            "instance_id": host.instance_id,
            "region": host.cluster.boot.region,
            "argv": self.local_argv(boot),
            # The stand-in "AMI" is this venv, with the tests' task functions importable.
            "env": {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
                    "PYTHONPATH": str(REPO), **boot.environment(host.role)},
            "home": str(home),
            "log": str(home / "dask.log"),
            "tls_dir": boot.tls_dir,
            "files": {"ca.pem": boot.ca_pem, "cert.pem": boot.host_cert_pem},
            "key_parameter": boot.key_parameter,
        }
        (home / "plan.json").write_text(json.dumps(plan))
        with (home / "shim.log").open("ab") as log:
            return subprocess.Popen([sys.executable, "-m", SHIM_MODULE, str(home / "plan.json")],
                                    cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)


class LocalScheduler(LocalHost, SchedulerHost):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.port = free_port()

    def local_argv(self, boot: HostBoot) -> list[str]:
        return dataclasses.replace(boot, scheduler_port=self.port).scheduler_argv()


class LocalWorker(LocalHost, WorkerHost):
    def local_argv(self, boot: HostBoot) -> list[str]:
        return boot.worker_argv(self.scheduler, self.name)


def use_local_hosts() -> None:
    """Boot local processes instead of EC2 hosts, in this process, from now on."""
    ElasticVMCluster.scheduler_class = LocalScheduler
    ElasticVMCluster.worker_class = LocalWorker


@contextlib.contextmanager
def local_hosts() -> Iterator[None]:
    saved = ElasticVMCluster.scheduler_class, ElasticVMCluster.worker_class
    use_local_hosts()
    try:
        yield
    finally:
        ElasticVMCluster.scheduler_class, ElasticVMCluster.worker_class = saved


def hosts_dir() -> str:
    folder = os.environ.get(HOSTS_DIR_VARIABLE) or tempfile.gettempdir()
    Path(folder).mkdir(parents=True, exist_ok=True)
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_or_kill(shim: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    try:
        shim.wait(timeout)
    except subprocess.TimeoutExpired:
        shim.kill()  # the shim stops its Dask process tree on the way out
        shim.wait()
