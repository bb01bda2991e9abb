"""`build-ami --test`: one instance of the new AMI (moto), ramp-test over SSH (loopback sshd)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from ramp_fleet.errors import CommandError
from ramp_fleet.image.quick_test import quick_test
from ramp_fleet.sandbox.runner import REFUSED
from tests.conftest import EXAMPLE, needs_bwrap
from tests.fixtures.aws import VENV_BIN
from tests.fixtures.moto_ec2 import live_instances


@pytest.fixture
def kit_with_sandbox(remote_kit: Path) -> Path:
    """The kit as the AMI build leaves it: with the starting kit."""
    shutil.copytree(EXAMPLE / "ramp-kits" / "iris" / "submissions",
                    remote_kit / "submissions")
    return remote_kit


@needs_bwrap  # the quick test runs isolated (mode required)
def test_quick_test_runs_the_sandbox_and_terminates(aws_event, image_id, kit_with_sandbox,
                                                   ec2: Any):
    event = aws_event()
    lines: list[str] = []
    output = quick_test(event, image_id, echo=lines.append)
    assert "Testing Iris species classification" in output and "\tvalid" in output
    assert lines[0].startswith(f"booting {image_id}")
    assert lines[-1] == f"quick test passed on {image_id}"
    assert live_instances(ec2) == []


def test_a_failing_kit_fails_the_test_and_still_terminates(aws_event, image_id, remote_kit,
                                                            ec2: Any):
    event = aws_event()  # no submissions/starting_kit in the kit
    with pytest.raises(CommandError):
        quick_test(event, image_id, echo=lambda line: None)
    assert live_instances(ec2) == []


def test_an_ami_where_bubblewrap_does_not_work_fails_the_test(aws_event, image_id,
                                                              kit_with_sandbox, ec2: Any):
    # PATH without /usr/bin: the instance's launcher finds no bwrap.
    event = aws_event(remote_activate=f"export PATH={VENV_BIN}")
    with pytest.raises(CommandError) as failed:
        quick_test(event, image_id, echo=lambda line: None)
    assert failed.value.returncode == REFUSED
    assert "worker.isolation.mode is required, but bubblewrap does not work here: no bwrap on " \
           "PATH" in failed.value.stderr
    assert live_instances(ec2) == []
