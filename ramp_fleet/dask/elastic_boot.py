"""What a host of an elastic Dask cluster runs: its command, its settings, its user-data.

One :class:`HostBoot` per cluster holds what every host shares (the event's
Python on the AMI, the cluster's CA and host certificate, where the host key
is in SSM, the ports); :meth:`HostBoot.user_data` renders
``templates/dask-elastic-host.sh.j2`` for one host. No Docker: the process
is ``python -m distributed.cli.dask_scheduler`` (or ``dask_worker``) from the
event's conda environment, with the quiet settings of
:mod:`ramp_fleet.dask.host_settings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ramp_fleet.dask import host_settings
from ramp_fleet.names import CONDA_PREFIX
from ramp_fleet.templating import render

Role = Literal["scheduler", "worker"]

TEMPLATE = "dask-elastic-host.sh.j2"
TLS_DIR = "/etc/ramp-fleet/dask"
SCHEDULER_MODULE = "distributed.cli.dask_scheduler"
WORKER_MODULE = "distributed.cli.dask_worker"
#: A worker cut off from its scheduler this long exits, and its host powers off.
DEATH_TIMEOUT_SECONDS = 120
#: Adaptive's target duration, and what the scheduler assumes a task lasts before
#: it has seen one end: each waiting submission (all last longer) asks for a worker.
TARGET_DURATION_SECONDS = 1.0


def conda_python(env_name: str) -> str:
    """The event environment's Python on the AMI."""
    return f"{CONDA_PREFIX}/envs/{env_name}/bin/python"


@dataclass(frozen=True)
class HostBoot:
    event_name: str
    cluster_id: str
    region: str
    python: str
    ca_pem: str
    host_cert_pem: str
    key_parameter: str
    user: str = "ubuntu"
    scheduler_port: int = 8786
    dashboard_port: int = 8787
    #: The worker's port; its nanny listens on the next one (0: any free ports).
    worker_port: int = 9000
    tls_dir: str = TLS_DIR
    #: The interface the processes listen on; None: all of them.
    listen_host: str | None = None
    dashboard: bool = True

    def scheduler_argv(self) -> list[str]:
        argv = [self.python, "-m", SCHEDULER_MODULE, "--protocol", "tls",
                "--port", str(self.scheduler_port)]
        if self.listen_host:
            argv += ["--host", self.listen_host]
        if self.dashboard:  # unauthenticated: on the host's loopback only (an SSH tunnel reaches it)
            argv += ["--dashboard-address", f"127.0.0.1:{self.dashboard_port}"]
        else:
            argv += ["--no-dashboard"]
        return argv + self._tls_options()

    def worker_argv(self, scheduler: str, name: str) -> list[str]:
        """A single-thread worker named ``name`` (its name in the cluster's spec)."""
        nanny_port = self.worker_port + 1 if self.worker_port else 0
        argv = [self.python, "-m", WORKER_MODULE, scheduler, "--name", name,
                "--nthreads", "1", "--nworkers", "1",
                "--worker-port", str(self.worker_port), "--nanny-port", str(nanny_port),
                "--no-dashboard", "--death-timeout", str(DEATH_TIMEOUT_SECONDS)]
        if self.listen_host:
            argv += ["--host", self.listen_host]
        return argv + self._tls_options()

    def environment(self, role: Role) -> dict[str, str]:
        env = host_settings.environment(role)
        if role == "scheduler":
            name = host_settings.variable_name("distributed.scheduler.unknown-task-duration")
            env[name] = f"{TARGET_DURATION_SECONDS:g}s"
        return env

    def user_data(self, role: Role, argv: list[str]) -> str:
        return render(TEMPLATE, role=role, cluster_id=self.cluster_id,
                      event_name=self.event_name, user=self.user, tls_dir=self.tls_dir,
                      ca_pem=self.ca_pem, cert_pem=self.host_cert_pem,
                      conda_prefix=CONDA_PREFIX, region=self.region,
                      key_parameter=self.key_parameter, environment=self.environment(role),
                      argv=argv)

    def _tls_options(self) -> list[str]:
        return ["--tls-ca-file", f"{self.tls_dir}/ca.pem", "--tls-cert", f"{self.tls_dir}/cert.pem",
                "--tls-key", f"{self.tls_dir}/key.pem"]
