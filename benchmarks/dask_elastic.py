"""Elastic vs static Dask cluster on a bursty queue: worker-seconds and makespans.

3 bursts of 8 quick "submissions", each burst after the previous one has
finished and an idle gap, on the same EC2 cluster code run twice: once with
a fixed ``max_workers`` workers (the static cluster, booted before the first
burst), once elastic (0 workers between bursts, Dask's adaptive scaling
between ``min_workers: 0`` and ``max_workers``). The test setup of
tests/dask_elastic: EC2 calls to moto on 127.0.0.1, each "instance" booted
as real ``dask worker`` processes on 127.0.0.1 with TLS (nothing leaves the
machine). A submission is a Dask task that sleeps TASK_SECONDS: it stands in
for a quick ``ramp-test`` run so that only the cluster's behaviour is
measured.

    .venv/bin/python benchmarks/dask_elastic.py

Worker-seconds are what EC2 would bill: the seconds each worker instance
exists (launched, not yet terminated, sampled from moto), summed, over the
same window for both runs (first submission → last burst done + one idle
gap). Targets: the elastic cluster uses >= 50 % fewer worker-seconds, and
each burst's makespan is within 1.2 x the static one plus the boot time
(here: submission to the first worker joining; on EC2, minutes).
The saving grows with the idle share of an event: days-long quiet spells
cost a static cluster everything and an elastic one nothing.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from distributed import Client  # noqa: E402

from ramp_fleet.aws.instances import find_event_instances  # noqa: E402
from ramp_fleet.config import EventConfig, load_event_config  # noqa: E402
from ramp_fleet.config.sections import ElasticDaskSection  # noqa: E402
from ramp_fleet.dask.elastic import ElasticCluster  # noqa: E402
from ramp_fleet.dask.elastic.plan import CLUSTER_TAG, MARKER, ROLE_TAG  # noqa: E402
from tests.dask_elastic.local_hosts import HOSTS_DIR_VARIABLE, use_local_hosts  # noqa: E402
from tests.fixtures.moto_ec2 import (  # noqa: E402
    MotoServer,
    register_image,
    running_moto_server,
    use_in_this_process,
)

BURSTS = 3
TASKS_PER_BURST = 8
TASK_SECONDS = 3.0
IDLE_GAP_SECONDS = 30.0
MAX_WORKERS = 4
IDLE_TIMEOUT_SECONDS = 3.0
SAMPLE_SECONDS = 0.25
EVENT = "bench_elastic"


def quick_submission(number: int, seconds: float) -> int:
    time.sleep(seconds)
    return number


@dataclass
class Run:
    label: str
    makespans: list[float] = field(default_factory=list)
    boots: list[float] = field(default_factory=list)
    worker_seconds: float = 0.0
    peak_workers: int = 0
    worker_instances: int = 0


class Sampler:
    """Counts the cluster's live worker instances in moto, as EC2 would bill them."""

    def __init__(self, ec2: Any, cluster_id: str):
        self.ec2, self.cluster_id = ec2, cluster_id
        self.samples: list[tuple[float, int]] = []
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            hosts = find_event_instances(self.ec2, EVENT, MARKER,
                                         {CLUSTER_TAG: self.cluster_id, ROLE_TAG: "worker"})
            self.seen.update(h.instance_id for h in hosts)
            self.samples.append((time.monotonic(), len(hosts)))
            self._stop.wait(SAMPLE_SECONDS)

    def worker_seconds(self, start: float, end: float) -> float:
        total = 0.0
        for (t0, count), (t1, _) in zip(self.samples, self.samples[1:], strict=False):
            low, high = max(t0, start), min(t1, end)
            if high > low:
                total += count * (high - low)
        return total


def run_bursts(cluster: ElasticCluster, ec2: Any, label: str) -> Run:
    run = Run(label)
    with Client(cluster.address, security=cluster.security, set_as_default=False) as client, \
            Sampler(ec2, cluster.cluster_id) as sampler:
        if label == "static":
            client.wait_for_workers(MAX_WORKERS, timeout=120)
        start = time.monotonic()
        for burst in range(BURSTS):
            submitted = time.monotonic()
            futures = [client.submit(quick_submission, index, TASK_SECONDS, pure=False,
                                     key=f"ramp-fleet-{EVENT}-b{burst}s{index}-{uuid.uuid4().hex[:12]}")
                       for index in range(TASKS_PER_BURST)]
            first_worker: float | None = None
            while not all(future.done() for future in futures):
                workers = len(client.scheduler_info(n_workers=-1)["workers"])
                run.peak_workers = max(run.peak_workers, workers)
                if first_worker is None and workers:
                    first_worker = time.monotonic()
                time.sleep(0.1)
            done = time.monotonic()
            assert client.gather(futures) == list(range(TASKS_PER_BURST))
            del futures
            run.makespans.append(done - submitted)
            run.boots.append((first_worker or submitted) - submitted)
            time.sleep(IDLE_GAP_SECONDS)
        end = time.monotonic()
    run.worker_seconds = sampler.worker_seconds(start, end)
    run.worker_instances = len(sampler.seen)
    return run


def prepare_moto(moto: MotoServer) -> None:
    """What `pulumi up` would have made for the elastic cluster: its groups, profile, AMI."""
    use_in_this_process(moto)
    ec2 = moto.client()
    base = f"ramp-{EVENT}"
    ec2.create_security_group(GroupName=f"{base}-dask-scheduler", Description="bench")
    ec2.create_security_group(GroupName=f"{base}-dask-workers", Description="bench")
    moto.client("iam").create_instance_profile(InstanceProfileName=f"{base}-dask-elastic")
    register_image(ec2, f"{base} 1.0.0")


def event_config(root: Path) -> EventConfig:
    config = {
        "ramp": {"problem_name": "iris", "event_name": EVENT},
        "worker": {"worker_type": "dask", "dask_cluster": {
            "provider": "ec2", "max_workers": MAX_WORKERS, "min_workers": 0,
            "idle_timeout": IDLE_TIMEOUT_SECONDS, "region_name": "us-east-1",
            "instance_type": "t3.micro", "scheduler_instance_type": "t3.micro"}},
        "dispatcher": {"n_workers": MAX_WORKERS},
    }
    path = root / "config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return load_event_config(path, runtime_files=False)


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    results: list[Run] = []
    with running_moto_server() as moto, \
            tempfile.TemporaryDirectory(prefix="ramp-fleet-bench-") as tmp:
        prepare_moto(moto)
        use_local_hosts()
        os.environ[HOSTS_DIR_VARIABLE] = str(Path(tmp) / "hosts")
        event = event_config(Path(tmp))
        settings = event.worker.dask_cluster  # type: ignore[attr-defined]
        assert isinstance(settings, ElasticDaskSection)
        ec2 = moto.client()
        for label in ("static", "elastic"):
            workers = MAX_WORKERS if label == "static" else None
            with ElasticCluster.open(settings, event, workers=workers) as cluster:
                results.append(run_bursts(cluster, ec2, label))
    report(*results)


def report(static: Run, elastic: Run) -> None:
    print(f"{BURSTS} bursts of {TASKS_PER_BURST} tasks of {TASK_SECONDS:g} s (sleep, standing in "
          f"for quick submissions), {IDLE_GAP_SECONDS:g} s idle after each; max_workers "
          f"{MAX_WORKERS}, elastic min_workers 0, idle_timeout {IDLE_TIMEOUT_SECONDS:g} s; "
          "moto EC2 + local Dask processes, TLS")
    print(f"{'cluster':10}{'worker-s':>10}{'peak':>6}{'instances':>11}  makespan per burst (s)"
          "   boot (s)")
    for run in (static, elastic):
        spans = " ".join(f"{span:5.1f}" for span in run.makespans)
        boots = " ".join(f"{boot:4.1f}" for boot in run.boots)
        print(f"{run.label:10}{run.worker_seconds:>10.1f}{run.peak_workers:>6}"
              f"{run.worker_instances:>11}  {spans}        {boots}")
    saving = 1 - elastic.worker_seconds / static.worker_seconds
    print(f"worker-seconds elastic/static: {elastic.worker_seconds / static.worker_seconds:.2f} "
          f"({saving:.0%} fewer; target >= 50 %): {'met' if saving >= 0.5 else 'NOT met'}")
    for burst, (fixed, grown, boot) in enumerate(zip(static.makespans, elastic.makespans,
                                                     elastic.boots, strict=True)):
        bound = 1.2 * fixed + boot
        print(f"burst {burst + 1}: elastic {grown:.1f} s vs bound 1.2 x {fixed:.1f} + boot "
              f"{boot:.1f} = {bound:.1f} s: {'met' if grown <= bound else 'NOT met'}")


if __name__ == "__main__":
    main()
