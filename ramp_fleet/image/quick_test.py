"""``build-ami --test``: boot one instance from the new AMI the way the AWS worker does, and
run ``ramp-test --quick-test`` of the kit's starting kit there, through the runner, isolated."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ramp_fleet.config import EventConfig
from ramp_fleet.config.sections import AWSWorkerSection
from ramp_fleet.errors import UsageError
from ramp_fleet.names import event_region

#: The "submission" tag of the test instance.
QUICK_TEST_TAG = "ami-quick-test"


def quick_test(event: EventConfig, ami_id: str, echo: Callable[[str], None] = print) -> str:
    """Run the kit's sandbox submission on a fresh instance of ``ami_id``; returns its output.

    The instance is terminated whatever happens. Raises :class:`CommandError`
    when ramp-test fails.
    """
    from ramp_fleet.aws import remote
    from ramp_fleet.aws.fleet import Fleet  # boto3 and fabric: only for this command
    from ramp_fleet.sandbox.spec import SPEC
    from ramp_fleet.workers.aws import instance_layout, upload_run
    from ramp_fleet.workers.inputs import run_spec

    worker = event.worker
    if not isinstance(worker, AWSWorkerSection):
        raise UsageError(f"{event.display}: --test boots the AMI like the AWS worker does and "
                         "needs worker_type: aws")
    settings = worker.model_copy(update={
        "ami_image_id": ami_id, "use_spot_instance": False, "reuse_instances": False,
        "region_name": event_region(event),
    })
    kit, name = settings.remote_ramp_kit_folder, remote.QUICK_TEST_FOLDER
    sandbox = event.ramp.sandbox_dir
    spec = run_spec(event, sandbox, quick_test=True, **instance_layout(event))
    # Isolated whatever the config says; the AMI's own starting kit (staged on the
    # instance) run by the AMI's own ramp-test on the AMI's data (labels visible: what is
    # tested is that environment), and the log as the command's output: a failure's
    # lines come back in its error.
    spec = replace(spec, isolation=replace(spec.isolation, mode="required", labels="visible"),
                   log_in_folder=False)
    fleet = Fleet(settings, event_name=event.event_name, event_dir=event.event_dir)
    try:
        echo(f"booting {ami_id} ({settings.instance_type}) for a quick test")
        lease = fleet.acquire(QUICK_TEST_TAG)
        try:
            echo(f"running ramp-test --quick-test, isolated, on {lease.instance_id}")
            upload_run(lease, kit, name, {SPEC: spec.to_json().encode()})
            lease.host.run(remote.stage_kit_submission(kit, name, sandbox),
                           f"the AMI's {sandbox}")
            output = lease.host.run(remote.run_now(kit, name, activate=settings.remote_activate),
                                    "ramp-test --quick-test", timeout=worker.timeout)
        finally:
            fleet.release(lease, reusable=False)
    finally:
        fleet.close(reap=False)  # never reap: a dispatcher of the event may be running
    echo(f"quick test passed on {ami_id}")
    return output
