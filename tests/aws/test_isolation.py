"""Isolation on a reused instance: nothing of one run survives into the next.

The "instance" is this machine behind the loopback sshd; its runs go through
the runner shipped as sandbox.pyz, with real bwrap.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import psutil

from ramp_fleet.workers.aws import AWSWorker
from tests.conftest import alive, needs_bwrap, write_submission
from tests.fixtures.aws import AWSEventFactory
from tests.lifecycle import run_one
from tests.processes import unique

#: Forks a daemon that leaves the run's session and keeps trying to write into the
#: folder the next run on this instance gets (and records, outside, each time it did).
pytestmark = needs_bwrap

FORKER = '''
    import os, sys, textwrap
    from sklearn.linear_model import LogisticRegression

    DAEMON = """
    import pathlib, sys, time
    target, record = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    while True:
        try:
            (target / "PWNED").write_text("left by the previous run")
            record.write_text("touched " + str(target))
        except Exception:
            pass
        time.sleep(0.05)
    """


    class Forker(LogisticRegression):
        def fit(self, X, y):
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    code = textwrap.dedent(DAEMON)
                    os.execv(sys.executable, [sys.executable, "-c", code, {target!r}, {record!r},
                                              {marker!r}])
                os._exit(0)
            print("FORKED a daemon", flush=True)
            return super().fit(X, y)


    def get_estimator():
        return Forker(max_iter=500)
'''


def daemons(marker: str) -> list[int]:
    return [proc.pid for proc in psutil.process_iter(["cmdline"])
            if (proc.info["cmdline"] or [])[-1:] == [marker]]


def test_a_double_forked_process_cannot_touch_the_next_run_on_a_reused_instance(
    aws_event: AWSEventFactory, ec2: Any, remote_kit: Path, tmp_path: Path
) -> None:
    marker, record = unique("daemon-"), tmp_path / "touched"
    event = aws_event(("logreg",), reuse_instances=True)
    target = remote_kit / "submissions" / "logreg"  # where the next run lives on the instance
    write_submission(event.dirs.submissions.path, "forker", textwrap.dedent(FORKER.format(
        target=str(target), record=str(record), marker=marker)))
    fleet = AWSWorker.open_shared(event)
    try:
        first, second = (run_one(AWSWorker(event, name), fleet)
                         for name in ("forker", "logreg"))
    finally:
        AWSWorker.close_shared(fleet)
    assert first.result is not None and first.result.returncode == 0, first.error
    assert "FORKED a daemon" in (event.dirs.logs.path / "forker" / "log").read_text()
    assert second.result is not None and second.result.returncode == 0, second.error
    assert first.worker.place.instance_id == second.worker.place.instance_id, "not reused"
    assert alive(daemons(marker)) == [], "the daemon outlived its run"
    assert not record.exists(), record.read_text()
    assert not (event.dirs.predictions.path / "logreg" / "PWNED").exists()
