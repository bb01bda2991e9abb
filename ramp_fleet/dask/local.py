"""A real Dask cluster on this machine: one scheduler and single-slot workers.

Used by ``ramp-fleet dask local``, the tests and the benchmark. Every part
is a real ``dask scheduler`` / ``dask worker`` process started through
:mod:`ramp_fleet.process`, listening on 127.0.0.1 only, each worker with one
thread (one RAMP slot).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from ramp_fleet.dask import host_settings
from ramp_fleet.dask.certs import TLSFiles, write_tls_files
from ramp_fleet.errors import RampFleetError
from ramp_fleet.process import Child, kill_tree, spawn_group
from ramp_fleet.waiting import Backoff, WaitTimeout

HOST = "127.0.0.1"


def dask_executable() -> str:
    """The ``dask`` console script next to this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / "dask"
    if beside.is_file():
        return str(beside)
    found = shutil.which("dask")
    if found is None:
        raise RampFleetError("no 'dask' command found (install dask[distributed])")
    return found


class LocalDaskCluster:
    """``with LocalDaskCluster(2, tls=True) as cluster: cluster.address``"""

    def __init__(self, n_workers: int = 2, *, tls: bool = False, workdir: Path | None = None,
                 start_timeout: float = 60.0):
        self.n_workers = n_workers
        self.tls_enabled = tls
        self.start_timeout = start_timeout
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="ramp-fleet-dask-")) if workdir is None \
            else workdir
        self.tls: TLSFiles | None = None
        self.address = ""
        self.scheduler: Child | None = None
        self.workers: list[Child] = []
        self._logs: list[IO[bytes]] = []

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> LocalDaskCluster:
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            if self.tls_enabled:
                self.tls = write_tls_files(self.workdir / "tls")
            self._start_scheduler()
            for index in range(self.n_workers):
                self.start_worker(f"ramp-slot-{index}")
            if self.n_workers:
                self.wait_for_workers(self.n_workers)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every worker, then the scheduler; never raises."""
        # Workers first (in parallel: each may take its grace period), then the scheduler.
        stoppers = [threading.Thread(target=_stop, args=(proc,)) for proc in self.workers]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        if self.scheduler is not None:
            _stop(self.scheduler)
        self.workers.clear()
        self.scheduler = None
        for log in self._logs:
            log.close()
        self._logs.clear()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalDaskCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- parts ---------------------------------------------------------------------

    def start_worker(self, name: str, *extra: str) -> Child:
        """One single-slot worker; ``extra`` are more ``dask worker`` options (a preload...)."""
        argv = [dask_executable(), "worker", self.address, "--name", name,
                "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                "--host", HOST, "--local-directory", str(self.workdir / "workers"),
                *self._tls_options(), *extra]
        proc = spawn_group(argv, env=host_settings.with_settings(),
                           output=self._log(f"worker-{name}"))
        self.workers.append(proc)
        return proc

    def worker_config(self) -> dict[str, Any]:
        """The ``dask_scheduler`` / ``dask_tls`` keys of an event config."""
        config: dict[str, Any] = {"dask_scheduler": self.address}
        if self.tls is not None:
            config["dask_tls"] = self.tls.as_config()
        return config

    def wait_for_workers(self, n_workers: int) -> None:
        from distributed import Client

        from ramp_fleet.dask.connection import security_from_tls

        tls = self.tls.as_config() if self.tls else None
        with Client(self.address, security=security_from_tls(tls), timeout=self.start_timeout,
                    set_as_default=False) as client:
            client.wait_for_workers(n_workers, timeout=self.start_timeout)

    def _start_scheduler(self) -> None:
        scheduler_file = self.workdir / "scheduler.json"
        scheduler_file.unlink(missing_ok=True)
        argv = [dask_executable(), "scheduler", "--host", HOST, "--port", "0",
                "--no-dashboard", "--scheduler-file", str(scheduler_file),
                *(["--protocol", "tls"] if self.tls else []), *self._tls_options()]
        self.scheduler = spawn_group(argv, env=host_settings.with_settings(),
                                     output=self._log("scheduler"))
        try:
            for attempt in Backoff(deadline=self.start_timeout, first=0.1, cap=0.5,
                                   what="starting the Dask scheduler"):
                if self.scheduler.poll() is not None:
                    raise RampFleetError(f"dask scheduler exited with {self.scheduler.returncode}"
                                         f"; see {self.workdir / 'scheduler.log'}")
                try:
                    self.address = json.loads(scheduler_file.read_text())["address"]
                    return
                except (OSError, ValueError, KeyError) as exc:
                    attempt.failed(exc)
        except WaitTimeout as exc:
            raise RampFleetError(str(exc)) from exc

    def _tls_options(self) -> list[str]:
        return self.tls.cli_options() if self.tls else []

    def _log(self, name: str) -> IO[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        self._logs.append(log)
        return log


def _stop(proc: Child) -> None:
    if proc.poll() is None:
        kill_tree(proc.pid)
    proc.wait()
