"""Fixtures for the AWS worker: moto EC2 on loopback, a real sshd, an event to run.

Every instance moto hands out has a fictional IP address; the ssh_config
written here routes all of them to the loopback sshd, so no test ever sends
a packet outside 127.0.0.0/8.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ramp_fleet.config import EventConfig, load_event_config
from tests.conftest import EXAMPLE, EventFactory
from tests.fixtures.loopback import loopback_only
from tests.fixtures.moto_ec2 import (
    MotoServer,
    aws_environment,
    dump,
    live_instances,
    moto_server,
    register_image,
)
from tests.fixtures.sshd import SSHServer, sshd

__all__ = ["loopback_only", "moto_server", "sshd"]

VENV_BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"
IMAGE_NAME = "ramp-iris"


@pytest.fixture(autouse=True)
def _loopback(loopback_only: list[object]) -> list[object]:
    return loopback_only


@pytest.fixture(autouse=True)
def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """moto for every test here; afterwards no instance may be pending or running."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "HTTP_PROXY",
                 "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in aws_environment(moto_server).items():
        monkeypatch.setenv(name, value)
    moto_server.reset()
    yield moto_server
    ec2 = moto_server.client()
    leaked = live_instances(ec2)
    if leaked:
        ec2.terminate_instances(InstanceIds=[item["InstanceId"] for item in leaked])
    moto_server.reset()
    assert not leaked, f"instances left running: {dump([i['InstanceId'] for i in leaked])}"


@pytest.fixture
def ec2(aws: MotoServer) -> Any:
    return aws.client()


@pytest.fixture
def image_id(ec2: Any) -> str:
    """The event's newest image, among older versions of the same name."""
    register_image(ec2, f"{IMAGE_NAME} 1.9.0")
    newest = register_image(ec2, f"{IMAGE_NAME} 1.10.0")
    register_image(ec2, f"{IMAGE_NAME} 1.2.0")
    return newest


@pytest.fixture
def remote_kit(tmp_path: Path) -> Iterator[Path]:
    """The kit folder as the AMI would hold it: problem.py and data/ side by side.

    Runs still going when the test ends are ended, as the instance's
    termination would end them.
    """
    kit = tmp_path / "instance" / "ramp-kit"
    kit.mkdir(parents=True)
    shutil.copy(EXAMPLE / "ramp-kits" / "iris" / "problem.py", kit)
    shutil.copytree(EXAMPLE / "ramp-data" / "iris" / "data", kit / "data")
    yield kit
    end_remote_runs(kit)


def end_remote_runs(kit: Path) -> None:
    """Kill every run started in ``kit``, as terminating its instance would.

    Every moto "instance" is the one loopback sshd, so a run on an instance
    that EC2 terminated would otherwise go on and write into the folder its
    retry uses.
    """
    for pid_file in kit.glob(".ramp-fleet/*/pid"):
        session = pid_file.read_text().strip()
        if session.isdigit():
            subprocess.run(["pkill", "-KILL", "-s", session], check=False)


AWSEventFactory = Callable[..., EventConfig]


@pytest.fixture
def aws_event(
    make_event: EventFactory, ec2: Any, image_id: str, sshd: SSHServer, remote_kit: Path,
    tmp_path: Path,
) -> AWSEventFactory:
    """An event config with ``worker_type: aws`` wired to moto and the loopback sshd."""
    ec2.create_security_group(GroupName="ramp-workers", Description="ramp-fleet workers")
    ec2.create_key_pair(KeyName="ramp-key")
    ssh_config = sshd.ssh_config(tmp_path / "ssh_config")
    key = tmp_path / "worker_key"
    shutil.copy(sshd.client_key, key)
    key.chmod(0o600)

    def build(submissions: tuple[str, ...] = (), **worker: Any) -> EventConfig:
        keys: dict[str, Any] = {
            "worker_type": "aws",
            "region_name": "us-east-1",
            "ami_image_name": IMAGE_NAME,
            "instance_type": "t3.micro",
            "key_name": "ramp-key",
            "security_group": "ramp-workers",
            "key_path": str(key),
            "ssh_config_file": str(ssh_config),
            "ami_user_name": "nobody-would-log-in-as-this",
            "remote_ramp_kit_folder": str(remote_kit),
            "remote_activate": f"export PATH={VENV_BIN}:$PATH",
            "ssh_connect_timeout": 20,
            "timeout": 120,
            **worker,
        }
        dispatcher = {"time_between_collection": 0.2}
        return load_event_config(make_event(submissions, worker=keys, dispatcher=dispatcher))

    return build
