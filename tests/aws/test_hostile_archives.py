"""An instance that sends back a crafted archive (the runner's archive replaced before the
download, as a compromised host would) gets a refusal: nothing lands outside the
destination, no link is kept."""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ramp_fleet.aws import remote
from tests.aws.runs import run
from tests.fixtures.aws import AWSEventFactory
from tests.fixtures.moto_ec2 import live_instances
from tests.hostile_archives import dot_dot, link_chain, million_tiny_files, path_max_chain


def in_run_folder(kit: str, submission: str, name: str) -> str:
    """A file of the run's folder on the instance, for a shell line (the test's paths are plain)."""
    return shlex.quote(f"{kit.rstrip('/')}/.ramp-fleet/{submission}/{name}")


@pytest.mark.parametrize(("craft", "reason"), [
    (link_chain, "'s' is a symbolic link (to '.')"),
    (dot_dot, "has an empty, '.' or '..' component"),
    (path_max_chain, "is a symbolic link (to 'bbbb"),
    (million_tiny_files, "more than 10000 files and folders (at '0010000'"),
])
def test_a_crafted_archive_from_an_instance_writes_nothing_outside(
    aws_event: AWSEventFactory, ec2: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    craft: Callable[[str], bytes], reason: str,
) -> None:
    escape = f"escape-{uuid.uuid4().hex}.txt"
    crafted = tmp_path / "crafted.tar.gz"
    crafted.write_bytes(craft(escape))
    real_report = remote.report

    def report_on_a_compromised_host(kit: str, submission: str) -> str:
        archive = in_run_folder(kit, submission, "results.tar.gz")
        return f"cp {shlex.quote(str(crafted))} {archive}; {real_report(kit, submission)}"

    monkeypatch.setattr(remote, "report", report_on_a_compromised_host)
    event = aws_event(("logreg",))
    outcome = run(event, "logreg")
    assert outcome.error is not None and reason in outcome.error
    predictions = event.dirs.predictions.path
    assert not (predictions / "logreg").exists()
    assert [p.name for p in tmp_path.rglob(escape)] == [] and not Path("/tmp", escape).exists()
    assert not [p for p in predictions.rglob("*") if p.is_symlink()]
    assert not live_instances(ec2)


def test_a_log_replaced_by_a_link_on_the_instance_is_not_followed(
    aws_event: AWSEventFactory, ec2: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = tmp_path / "SECRET"
    secret.write_text("DB_PASSWORD=hunter2\n")
    real_poll = remote.poll

    def poll_on_a_compromised_host(kit: str, submission: str) -> str:
        log = in_run_folder(kit, submission, "log")
        return f"ln -sfn {shlex.quote(str(secret))} {log}; {real_poll(kit, submission)}"

    monkeypatch.setattr(remote, "poll", poll_on_a_compromised_host)
    event = aws_event(("logreg",))
    outcome = run(event, "logreg")
    assert outcome.error is None and outcome.result is not None
    log = event.dirs.logs.path / "logreg" / "log"
    assert not log.is_symlink()
    assert "the run's log is not a regular file (a link?); not read" in log.read_text()
    assert "hunter2" not in log.read_text() + outcome.result.error
    assert not live_instances(ec2)
