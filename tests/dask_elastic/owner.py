"""TEST ONLY: a process that owns an elastic cluster until it is killed.

    python -m tests.dask_elastic.owner CONFIG

Opens the event's elastic cluster (stand-in hosts, EC2 calls to
``AWS_ENDPOINT_URL``), waits for ``min_workers`` workers, prints
``READY <cluster id>`` and sleeps: the test kills it with SIGKILL.
"""

from __future__ import annotations

import sys
import time

from distributed import Client

from ramp_fleet.config import load_event_config
from ramp_fleet.config.sections import DaskWorkerSection
from ramp_fleet.dask.elastic import ElasticCluster
from tests.dask_elastic.local_hosts import use_local_hosts


def main(config: str) -> None:
    use_local_hosts()
    event = load_event_config(config, runtime_files=False)
    assert isinstance(event.worker, DaskWorkerSection) and event.worker.dask_cluster is not None
    settings = event.worker.dask_cluster
    cluster = ElasticCluster.open(settings, event)
    with Client(cluster.address, security=cluster.security, set_as_default=False) as client:
        client.wait_for_workers(settings.min_workers, timeout=120)
    print("READY", cluster.cluster_id, flush=True)
    time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1])
