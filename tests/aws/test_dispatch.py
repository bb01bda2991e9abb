"""The dispatcher with ``worker_type: aws``: moto EC2, real sshd, real ramp-test."""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from ramp_fleet.dispatcher import Dispatcher
from ramp_fleet.progress import Reporter
from ramp_fleet.store import State, Store
from tests.aws.runs import all_instances
from tests.fixtures.aws import AWSEventFactory, end_remote_runs
from tests.fixtures.moto_ec2 import live_instances


class Quiet(Reporter):
    def line(self, text: str) -> None:
        pass


def states(store: Store) -> dict[str, State]:
    return {s.name: s.state for s in store.all()}


def test_an_aws_event_is_trained_scored_and_leaves_no_instance(
    aws_event: AWSEventFactory, ec2: Any
) -> None:
    event = aws_event(("logreg", "knn", "broken"))
    Dispatcher(event, Quiet()).run()
    store = Store(event.store_path)
    assert states(store) == {"logreg": State.SCORED, "knn": State.SCORED,
                             "broken": State.TRAINING_ERROR}
    broken = store.get("broken")
    assert broken is not None and "broken on purpose" in (broken.error or "")
    assert not live_instances(ec2)


def test_a_sigkilled_dispatcher_leaves_instances_that_the_next_one_reaps(
    aws_event: AWSEventFactory, ec2: Any, remote_kit: Path
) -> None:
    event = aws_event(("logreg", "knn"))
    first = subprocess.Popen([sys.executable, "-m", "ramp_fleet", "dispatch", str(event.path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(list(remote_kit.glob(".ramp-fleet/*/pid"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # both submissions running on their instances
        leaked = {item["InstanceId"] for item in live_instances(ec2)}
        assert len(leaked) == 2
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert {item["InstanceId"] for item in live_instances(ec2)} == leaked
    end_remote_runs(remote_kit)  # on EC2 the reaping below would end them

    Dispatcher(event, Quiet()).run()
    store = Store(event.store_path)
    assert states(store) == {"logreg": State.SCORED, "knn": State.SCORED}
    assert not live_instances(ec2)
    for instance_id in leaked:
        reply = ec2.describe_instances(InstanceIds=[instance_id])
        assert reply["Reservations"][0]["Instances"][0]["State"]["Name"] == "terminated"


def test_instance_host_keys_never_reach_the_output_even_at_debug(
    aws_event: AWSEventFactory, ec2: Any
) -> None:
    event = aws_event(("logreg",))
    done = subprocess.run([sys.executable, "-m", "ramp_fleet", "-vv", "dispatch", str(event.path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "DEBUG" in done.stderr  # debug output was on
    [instance_id] = all_instances(ec2)
    user_data = ec2.describe_instance_attribute(
        InstanceId=instance_id, Attribute="userData")["UserData"]["Value"]
    private_key = yaml.safe_load(base64.b64decode(user_data))["ssh_keys"]["ed25519_private"]
    secret_lines = [line for line in private_key.splitlines() if "PRIVATE KEY" not in line]
    output = done.stdout + done.stderr + event.event_dir.joinpath("ssh_known_hosts").read_text()
    assert secret_lines and not any(line in output for line in secret_lines)
    assert user_data not in output and user_data[:40] not in output
