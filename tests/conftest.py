"""Fixtures shared by every test: a private copy of the iris event, ready to run.

Tests run real ``ramp-test`` on the example kit; each gets its own copy so
runs, logs and stores never meet.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "iris"

#: A quick, correct submission (a couple of seconds in ramp-test).
QUICK_ESTIMATOR = (EXAMPLE / "submissions" / "logreg" / "estimator.py").read_text()


def write_submission(submissions_dir: Path, name: str, source: str = QUICK_ESTIMATOR) -> Path:
    folder = submissions_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "estimator.py").write_text(textwrap.dedent(source))
    return folder


def hanging_estimator(child_ignores_sigterm: bool = True, pid_file: str = "pids") -> str:
    """An estimator whose fit starts a child that ignores SIGTERM, then hangs.

    Both pids are written to ``pid_file`` (an absolute path) so a test can
    check that the timeout took the whole tree down. (rampwf refuses
    submissions that mention its blacklisted words, hence ``posix_spawn``.)
    """
    ignore = "signal.signal(signal.SIGTERM, signal.SIG_IGN); " if child_ignores_sigterm else ""
    return f'''
        import os, pathlib, sys, time
        from sklearn.linear_model import LogisticRegression

        class Hang(LogisticRegression):
            def fit(self, X, y):
                code = "import signal, time; {ignore}time.sleep(600)"
                child = os.posix_spawn(sys.executable, [sys.executable, "-c", code], os.environ)
                pathlib.Path({pid_file!r}).write_text(f"{{os.getpid()}}\\n{{child}}\\n")
                time.sleep(600)

        def get_estimator():
            return Hang()
    '''


EventFactory = Callable[..., Path]


@pytest.fixture
def make_event(tmp_path: Path) -> EventFactory:
    """Build an event folder from the iris example and return its config path.

    ``submissions`` names the example submissions to copy (default: none);
    keyword sections update the config (``worker={...}``, ``dispatcher={...}``).
    """

    def build(
        submissions: tuple[str, ...] = (),
        *,
        worker: dict[str, Any] | None = None,
        dispatcher: dict[str, Any] | None = None,
        ramp: dict[str, Any] | None = None,
        **sections: Any,
    ) -> Path:
        root = tmp_path / "event"
        if not root.exists():
            shutil.copytree(EXAMPLE / "ramp-kits", root / "ramp-kits")
            shutil.copytree(EXAMPLE / "ramp-data", root / "ramp-data")
            (root / "submissions").mkdir()
        for name in submissions:
            shutil.copytree(EXAMPLE / "submissions" / name, root / "submissions" / name,
                            dirs_exist_ok=True)
        config = {
            "ramp": {"problem_name": "iris", "event_name": "iris_test",
                     "event_title": "Iris test", "event_is_public": True,
                     "submissions_dir": "submissions", **(ramp or {})},
            "worker": {"worker_type": "conda", "timeout": 120, **(worker or {})},
            "dispatcher": {"hunger_policy": "exit", "n_workers": 2, "n_threads": 1,
                           "retry_backoff": 0.1, **(dispatcher or {})},
            **sections,
        }
        path = root / "config.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return build


# Real parts shared by several suites (one instance each per session).
from tests.fixtures.aws import (  # noqa: E402
    aws,
    aws_event,
    aws_worker_keys,
    ec2,
    image_id,
    loopback_only,
    moto_server,
    remote_kit,
    sshd,
)
from tests.fixtures.dask import iris, plain_cluster, tls_cluster  # noqa: E402
from tests.fixtures.reference import reference_event  # noqa: E402

__all__ = ["aws", "aws_event", "aws_worker_keys", "ec2", "image_id", "iris", "loopback_only",
           "moto_server", "plain_cluster", "reference_event", "remote_kit", "sshd", "tls_cluster"]
