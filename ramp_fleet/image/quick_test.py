"""``build-ami --test``: boot one instance from the new AMI the way the AWS
worker does, and run ``ramp-test --quick-test`` on the kit baked into it."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ramp_fleet.config import EventConfig
from ramp_fleet.config.sections import AWSWorkerSection
from ramp_fleet.errors import UsageError
from ramp_fleet.isolation import settings as isolation_settings
from ramp_fleet.names import event_region
from ramp_fleet.sandbox.zipapp import sandbox_pyz

#: The "submission" tag of the test instance.
QUICK_TEST_TAG = "ami-quick-test"


def quick_test(event: EventConfig, ami_id: str, echo: Callable[[str], None] = print) -> str:
    """Run the kit's sandbox submission on a fresh instance of ``ami_id``; returns its output.

    The instance is terminated whatever happens. Raises :class:`CommandError`
    when ramp-test fails.
    """
    from ramp_fleet.aws import remote
    from ramp_fleet.aws.fleet import Fleet  # boto3 and fabric: only for this command

    worker = event.worker
    if not isinstance(worker, AWSWorkerSection):
        raise UsageError(f"{event.display}: --test boots the AMI like the AWS worker does and "
                         "needs worker_type: aws")
    settings = worker.model_copy(update={
        "ami_image_id": ami_id, "use_spot_instance": False, "reuse_instances": False,
        "region_name": event_region(event),
    })
    kit = settings.remote_ramp_kit_folder
    isolation = replace(isolation_settings(worker.isolation), mode="required")
    command = remote.quick_test(kit, settings.remote_activate, event.ramp.sandbox_dir, isolation)
    fleet = Fleet(settings, event_name=event.event_name, event_dir=event.event_dir)
    try:
        echo(f"booting {ami_id} ({settings.instance_type}) for a quick test")
        lease = fleet.acquire(QUICK_TEST_TAG)
        try:
            echo(f"running ramp-test --quick-test, isolated, on {lease.instance_id}")
            lease.host.run(remote.quick_test_prepare(kit), "prepare")
            with tempfile.TemporaryDirectory(prefix="ramp-fleet-") as tmp:
                launcher = Path(tmp) / remote.SANDBOX_PYZ
                launcher.write_bytes(sandbox_pyz())
                lease.host.put(launcher, remote.remote_path(
                    kit, ".ramp-fleet", remote.QUICK_TEST_STATE, remote.SANDBOX_PYZ))
            output = lease.host.run(command, "ramp-test --quick-test", timeout=worker.timeout)
        finally:
            fleet.release(lease, reusable=False)
    finally:
        fleet.close(reap=False)  # never reap: a dispatcher of the event may be running
    echo(f"quick test passed on {ami_id}")
    return output
