"""What one dispatcher's AWS runs share: reuse, idle timeout, reaping, host keys."""

from __future__ import annotations

import base64
import io
import logging
import shlex
import time
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml
from click.testing import CliRunner
from pydantic import SecretStr

from ramp_fleet.aws import instances, remote
from ramp_fleet.aws.host_keys import InstanceHostKey
from ramp_fleet.aws.session import make_session
from ramp_fleet.aws.ssh import HostKeyChanged, KnownHosts
from ramp_fleet.cli import cli
from ramp_fleet.config.sections import AWSWorkerSection
from ramp_fleet.names import EVENT_TAG
from ramp_fleet.workers.aws import AWSWorker
from tests.aws.runs import all_instances, instance_of, run, state_of
from tests.fixtures.aws import AWSEventFactory
from tests.fixtures.instance_hosts import InstanceHosts
from tests.fixtures.moto_ec2 import live_instances, register_image


def launch_leftover(ec2: Any, image_id: str, event: str, submission: str = "old",
                    tags: dict[str, str] | None = None) -> str:
    """An instance as a dead dispatcher leaves it: tagged, running, owned by nobody."""
    tags = tags or instances.event_tags(event, submission, 0)
    reply = ec2.run_instances(ImageId=image_id, InstanceType="t3.micro", MinCount=1, MaxCount=1,
                              TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                  {"Key": k, "Value": v} for k, v in tags.items()]}])
    instance_id: str = reply["Instances"][0]["InstanceId"]
    return instance_id


def test_reuse_runs_submissions_one_after_another_on_one_instance(
    aws_event: AWSEventFactory, ec2: Any, remote_kit: Path
) -> None:
    event = aws_event(("logreg", "knn", "broken"), reuse_instances=True)
    fleet = AWSWorker.open_shared(event)
    try:
        outcomes = [run(event, name, shared=fleet) for name in ("logreg", "broken", "knn")]
        assert [o.result.returncode if o.result else None for o in outcomes] == [0, 1, 0]
        assert len({o.worker.place.instance_id for o in outcomes}) == 1
        assert fleet.stats.instances_launched == 1
        assert fleet.stats.ssh_connections == 1
        instance_id = outcomes[0].worker.place.instance_id
        assert instance_id is not None and state_of(ec2, instance_id) == "running"
        assert fleet.idle_instances() == [instance_id]
        # the last submission's folder was cleaned before the instance went idle
        assert not (remote_kit / "submissions" / "knn").exists()
        tags = {t["Key"]: t["Value"] for t in ec2.describe_instances(InstanceIds=[instance_id])[
            "Reservations"][0]["Instances"][0]["Tags"]}
        assert tags[instances.SUBMISSION_TAG] == "knn"
    finally:
        AWSWorker.close_shared(fleet)
    assert state_of(ec2, instance_id) == "terminated"


def test_an_idle_instance_is_terminated_after_the_idle_timeout(
    aws_event: AWSEventFactory, ec2: Any
) -> None:
    event = aws_event(("logreg",), reuse_instances=True, instance_idle_timeout=3)
    fleet = AWSWorker.open_shared(event)
    try:
        outcome = run(event, "logreg", shared=fleet)
        instance_id = outcome.worker.place.instance_id
        assert instance_id is not None
        assert fleet.idle_instances() == [instance_id]
        # The janitor drops the lease, then terminates it outside its lock:
        # wait for what EC2 says, not for the list alone.
        deadline = time.monotonic() + 20
        while (fleet.idle_instances() or state_of(ec2, instance_id) != "terminated") \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        assert fleet.idle_instances() == []
        assert state_of(ec2, instance_id) == "terminated"
    finally:
        AWSWorker.close_shared(fleet)


def test_failed_runs_do_not_give_their_instance_back(
    aws_event: AWSEventFactory, ec2: Any
) -> None:
    event = aws_event(("logreg",), reuse_instances=True)
    fleet = AWSWorker.open_shared(event)
    try:
        outcome = run(event, "logreg", shared=fleet, during_wait=lambda w: ec2.terminate_instances(
            InstanceIds=[w.instance_id]))
        assert outcome.retry is not None
        assert fleet.idle_instances() == []
    finally:
        AWSWorker.close_shared(fleet)


def test_reconcile_reaps_what_a_dead_dispatcher_left_and_only_that(
    aws_event: AWSEventFactory, ec2: Any, image_id: str
) -> None:
    event = aws_event()
    leftover = launch_leftover(ec2, image_id, "iris_test")
    other_event = launch_leftover(ec2, image_id, "another_event")
    untagged = ec2.run_instances(ImageId=image_id, InstanceType="t3.micro", MinCount=1,
                                 MaxCount=1)["Instances"][0]["InstanceId"]
    fleet = AWSWorker.open_shared(event)
    try:
        assert state_of(ec2, leftover) == "running"  # opening reaps nothing by itself
        AWSWorker.reconcile(fleet, event, [])
        assert state_of(ec2, leftover) == "terminated"
        assert state_of(ec2, other_event) == "running"
        assert state_of(ec2, untagged) == "running"
        assert fleet.stats.instances_reaped == 1
    finally:
        AWSWorker.close_shared(fleet)
        ec2.terminate_instances(InstanceIds=[other_event, untagged])


def test_reaping_by_tag_takes_the_kind_and_narrowing_asked_for_and_nothing_else(
    ec2: Any, image_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    worker = launch_leftover(ec2, image_id, "iris_test")
    elastic = {name: launch_leftover(ec2, image_id, "iris_test", tags={
        EVENT_TAG: "iris_test", instances.MARKER_TAG: "dask-elastic",
        "ramp-fleet:cluster": name}) for name in ("c1", "c2")}
    one_cluster = {"ramp-fleet:cluster": "c1"}
    listed = instances.reap_event_instances(ec2, "iris_test", "dask-elastic", one_cluster,
                                            dry_run=True)
    assert [item.instance_id for item in listed] == [elastic["c1"]]
    assert listed[0].tag("ramp-fleet:cluster") == "c1" and listed[0].tag("no-such-tag") == "?"
    assert state_of(ec2, elastic["c1"]) == "running"
    with caplog.at_level(logging.WARNING, logger="ramp_fleet.aws"):
        spared = instances.reap_event_instances(ec2, "iris_test", instances.WORKER_MARKER,
                                                spare={worker})
        reaped = instances.reap_event_instances(ec2, "iris_test", "dask-elastic", one_cluster)
    assert spared == [] and [item.instance_id for item in reaped] == [elastic["c1"]]
    assert f"reaping 1 instance(s) left behind for event iris_test: {elastic['c1']}" \
        in caplog.text
    assert state_of(ec2, elastic["c1"]) == "terminated"
    assert state_of(ec2, elastic["c2"]) == state_of(ec2, worker) == "running"
    ec2.terminate_instances(InstanceIds=[worker, elastic["c2"]])


def test_reap_command_lists_then_terminates(
    aws_event: AWSEventFactory, ec2: Any, image_id: str
) -> None:
    event = aws_event()
    leftover = launch_leftover(ec2, image_id, "iris_test", submission="knn")
    runner = CliRunner()
    dry = runner.invoke(cli, ["reap", str(event.path), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"would terminate {leftover}" in dry.output and "submission knn" in dry.output
    assert state_of(ec2, leftover) == "running"
    done = runner.invoke(cli, ["reap", str(event.path)])
    assert done.exit_code == 0, done.output
    assert f"terminated {leftover}" in done.output
    assert state_of(ec2, leftover) == "terminated"
    again = runner.invoke(cli, ["reap", str(event.path)])
    assert "no instance of event 'iris_test' is left" in again.output


def test_known_hosts_accept_only_the_key_recorded_for_an_instance(tmp_path: Path) -> None:
    known = KnownHosts(tmp_path / "event" / "ssh_known_hosts")
    given, other = (InstanceHostKey.generate().public_key for _ in range(2))
    with pytest.raises(HostKeyChanged, match="no SSH host key is recorded for i-0001"):
        known.check("i-0001", given)  # never trusted on first use
    known.record("i-0001", given)
    known.check("i-0001", given)
    with pytest.raises(HostKeyChanged, match="i-0001 presented an SSH host key"):
        known.check("i-0001", other)
    with pytest.raises(HostKeyChanged):
        known.check("i-0001", paramiko.RSAKey.generate(1024))  # another type is no better
    with pytest.raises(HostKeyChanged):
        known.check("i-0002", given)  # a key belongs to one instance id
    assert (known.path.stat().st_mode & 0o777) == 0o600
    known.forget("i-0001")
    with pytest.raises(HostKeyChanged):
        known.check("i-0001", given)


def test_the_user_data_installs_one_ed25519_host_key_and_is_never_shown() -> None:
    host_key = InstanceHostKey.generate()
    document = yaml.safe_load(host_key.user_data)
    assert host_key.user_data.startswith("#cloud-config\n")
    assert document["ssh_deletekeys"] is True and document["ssh_genkeytypes"] == []
    assert document["ssh_keys"]["ed25519_public"].split()[1] == host_key.public_key.get_base64()
    private = paramiko.Ed25519Key.from_private_key(io.StringIO(
        document["ssh_keys"]["ed25519_private"]))
    assert private.get_base64() == host_key.public_key.get_base64()
    assert "PRIVATE" not in repr(host_key)


def test_instances_are_launched_with_their_host_key_and_connected_to_only_with_it(
    aws_event: AWSEventFactory, ec2: Any, instance_hosts: InstanceHosts
) -> None:
    event = aws_event(("logreg",))
    fleet = AWSWorker.open_shared(event)
    try:
        lease = fleet.acquire("logreg")
        user_data = ec2.describe_instance_attribute(
            InstanceId=lease.instance_id, Attribute="userData")["UserData"]["Value"]
        given = yaml.safe_load(base64.b64decode(user_data))["ssh_keys"]["ed25519_public"]
        served = instance_hosts.hosts[lease.instance_id].server.host_public_key
        assert given.split()[:2] == served.split()[:2]
        recorded = paramiko.HostKeys(str(fleet.known_hosts.path)).lookup(lease.instance_id)
        assert recorded is not None and list(recorded.keys()) == ["ssh-ed25519"]
        assert recorded["ssh-ed25519"].get_base64() == given.split()[1]
        assert lease.host.connected
        fleet.release(lease, reusable=False)
        assert paramiko.HostKeys(str(fleet.known_hosts.path)).lookup(lease.instance_id) is None
    finally:
        AWSWorker.close_shared(fleet)


def test_an_instance_with_another_host_key_gets_nothing_and_is_terminated(
    aws_event: AWSEventFactory, ec2: Any, instance_hosts: InstanceHosts, remote_kit: Path
) -> None:
    event = aws_event(("logreg",))
    instance_hosts.impostor = True
    outcome = run(event, "logreg")
    assert outcome.retry is not None and "presented an SSH host key" in outcome.retry
    assert list(all_instances(ec2).values()) == ["terminated"]
    assert not (remote_kit / ".ramp-fleet").exists()  # no upload, not even a folder
    assert not (remote_kit / "submissions").exists()


def test_a_host_key_changed_mid_run_means_retry_on_another_instance(
    aws_event: AWSEventFactory, ec2: Any, instance_hosts: InstanceHosts
) -> None:
    event = aws_event(("logreg",))

    def swap_key(worker: AWSWorker) -> None:
        assert worker.instance_id is not None and worker.poll() == "running"
        instance_hosts.replace_key(worker.instance_id)

    outcome = run(event, "logreg", during_wait=swap_key)
    assert outcome.retry is not None and "presented an SSH host key" in outcome.retry
    assert state_of(ec2, instance_of(outcome)) == "terminated"
    assert not live_instances(ec2)


def test_remote_commands_quote_every_value() -> None:
    command = remote.start("~/ramp kit", "sub'1", activate=". ~/.profile")
    assert command.startswith("cd \"$HOME\"/'ramp kit'/.ramp-fleet/'sub'\"'\"'1' || exit 1; "
                              "setsid sh -c ")
    assert command.endswith(" > /dev/null 2>&1 < /dev/null &")
    # Unquoted as the shells on the instance unquote it: the runner on its own folder.
    script = shlex.split(command.split("; ", 1)[1])[3]  # setsid sh -c SCRIPT
    assert script.splitlines() == ["echo $$ > pid", ". ~/.profile",
                                   'py=/usr/bin/python3; [ -x "$py" ] || py=python3',
                                   '"$py" -I -S runner.pyz .',
                                   "echo $? > rc.part && mv rc.part rc"]
    assert remote.poll("/srv/kit", "a b") == "cat /srv/kit/.ramp-fleet/'a b'/rc 2>/dev/null || true"
    assert remote.clean("/srv/kit", "x;rm -rf /").endswith(
        "rm -rf \"$S\" && [ ! -e \"$S\" ]")
    assert remote.clean("/srv/kit", "x;rm -rf /").startswith(
        "S=/srv/kit/.ramp-fleet/'x;rm -rf /'; ")
    assert remote.remote_path("~/ramp-kit", ".ramp-fleet", "s") == "ramp-kit/.ramp-fleet/s"
    assert remote.home_kit("ramp-kit") == "~/ramp-kit" and remote.home_kit("/srv/k") == "/srv/k"


def test_two_runs_of_one_name_never_share_a_folder_on_an_instance(
        aws_event: AWSEventFactory) -> None:
    """Two events' ``logreg`` on one fleet, or instances that are one host behind an
    ssh_config rule: the second run's ``prepare`` must not empty the first's folder."""
    event = aws_event(("logreg",))
    first, second = AWSWorker(event, "logreg"), AWSWorker(event, "logreg")
    assert first.folder != second.folder
    assert {first.folder.split(".")[0], second.folder.split(".")[0]} == {"logreg"}
    assert remote.poll("/k", first.folder) != remote.poll("/k", second.folder)


def test_a_newer_image_is_picked_up_after_the_refresh_interval(
    aws_event: AWSEventFactory, ec2: Any, image_id: str
) -> None:
    event = aws_event(ami_refresh_interval=0.5)
    fleet = AWSWorker.open_shared(event)
    try:
        assert fleet.image().chosen.image_id == image_id
        newer = register_image(ec2, "ramp-iris 1.11.0")
        assert fleet.image().chosen.image_id == image_id  # cached
        time.sleep(0.6)
        assert fleet.image().chosen.image_id == newer
    finally:
        AWSWorker.close_shared(fleet)


def test_access_keys_in_the_config_warn_and_are_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"
    section = AWSWorkerSection(access_key_id=SecretStr("AKIAIOSFODNN7SECRET0"),
                               secret_access_key=SecretStr(secret),
                               region_name="us-east-1", ami_image_name="x")
    with caplog.at_level(logging.DEBUG, logger="ramp_fleet"):
        session = make_session(section)
    assert session.get_credentials().secret_key == secret
    assert "prefer worker.profile_name" in caplog.text
    assert secret not in caplog.text and "AKIAIOSFODNN7SECRET0" not in caplog.text
    assert secret not in repr(section)
