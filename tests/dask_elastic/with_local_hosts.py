"""TEST ONLY: ``ramp-fleet ARGS`` in a process of its own, with stand-in hosts.

    python -m tests.dask_elastic.with_local_hosts dispatch CONFIG
    python -m tests.dask_elastic.with_local_hosts dask ec2 CONFIG --workers 2

The elastic cluster's instances are launched in moto (``AWS_ENDPOINT_URL``)
and booted as local Dask processes (see :mod:`tests.dask_elastic.local_hosts`).
"""

from __future__ import annotations

import sys

from ramp_fleet.cli import main
from tests.dask_elastic.local_hosts import use_local_hosts

if __name__ == "__main__":
    use_local_hosts()
    main(sys.argv[1:])
