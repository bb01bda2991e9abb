"""A compromised Dask worker answers with a pickled object or a crafted archive: the
dispatcher never unpickles the one nor lets the other write outside its destination."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from ramp_fleet.dask.local import LocalDaskCluster
from ramp_fleet.workers.dask import DaskWorker
from tests.dask.helpers import worker_config
from tests.hostile_archives import dot_dot, link_chain, million_tiny_files, path_max_chain
from tests.lifecycle import Outcome, run_one

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]


def run_on_a_compromised_worker(iris: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                submission: str = "logreg") -> Outcome:
    monkeypatch.setenv("PYTHONPATH", f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    with LocalDaskCluster(0, workdir=tmp_path / "cluster") as cluster:
        cluster.start_worker("compromised", "--preload", "tests.dask.compromised_worker")
        cluster.wait_for_workers(1)
        config = worker_config(cluster, iris, tmp_path)
        shared = DaskWorker.open_shared(config)
        try:
            return run_one(DaskWorker(config, submission), shared)
        finally:
            DaskWorker.close_shared(shared)


def test_a_pickled_reply_is_refused_and_never_unpickled(
    iris: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned"
    monkeypatch.setenv("RAMP_FLEET_TEST_PWNED", str(marker))
    outcome = run_on_a_compromised_worker(iris, tmp_path, monkeypatch)
    assert outcome.error is not None and outcome.error.startswith(
        "the Dask worker's reply is not plain data (refused")
    pids = marker.read_text().split() if marker.exists() else []
    assert str(os.getpid()) not in pids, "the dispatcher unpickled what the cluster sent"
    assert not (tmp_path / "predictions" / "logreg").exists()


@pytest.mark.parametrize(("craft", "reason"), [
    (link_chain, "'s' is a symbolic link (to '.')"),
    (dot_dot, "has an empty, '.' or '..' component"),
    (path_max_chain, "is a symbolic link (to 'bbbb"),
    (million_tiny_files, "more than 10000 files and folders (at '0010000'"),
])
def test_a_crafted_archive_in_a_reply_writes_nothing_outside(
    iris: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    craft: Callable[[str], bytes], reason: str,
) -> None:
    escape = f"escape-{uuid.uuid4().hex}.txt"
    archives = tmp_path / "archives"
    archives.mkdir()
    (archives / "logreg.tar.gz").write_bytes(craft(escape))
    monkeypatch.setenv("RAMP_FLEET_TEST_ARCHIVES", str(archives))
    outcome = run_on_a_compromised_worker(iris, tmp_path, monkeypatch)
    assert outcome.error is not None and reason in outcome.error
    assert not (tmp_path / "predictions" / "logreg").exists()
    assert not list(tmp_path.rglob(escape)) and not Path("/tmp", escape).exists()
    assert not [p for p in (tmp_path / "predictions").rglob("*") if p.is_symlink()]


class _Payload:
    """Unpickling this runs code: it records the pid of the process that unpickled it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        code = (f"import os; open({self.marker!r}, 'a').write(str(os.getpid()) + ' ')")
        return exec, (code,)


def _send_to_client(client_id: str, marker: str, dask_scheduler: object = None) -> str:
    """Run on the scheduler (as any holder of a cluster certificate may have it run): push
    a pickled object down the dispatcher client's own stream."""
    from distributed.protocol.serialize import ToPickle

    comm = dask_scheduler.client_comms[client_id]  # type: ignore[attr-defined]
    comm.send({"op": "ramp-fleet-probe", "payload": ToPickle(_Payload(marker))})
    return "sent"


def test_a_pickle_pushed_by_the_scheduler_never_runs_in_the_dispatcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack of the review: a certificate holder has the scheduler send ``ToPickle``
    frames, which distributed unpickles whatever a client's deserializers say."""
    from distributed import Client

    from ramp_fleet.dask.connection import DaskConnection

    monkeypatch.setenv("PYTHONPATH", f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    marker = tmp_path / "unpickled-by"
    with LocalDaskCluster(0, workdir=tmp_path / "cluster") as cluster:
        connection = DaskConnection(cluster.address)
        dispatcher_client = connection.client()
        try:
            with Client(cluster.address, set_as_default=False) as attacker:
                assert attacker.run_on_scheduler(_send_to_client, dispatcher_client.id,
                                                 str(marker)) == "sent"
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and not marker.exists():
                    time.sleep(0.1)
        finally:
            connection.close()
    pids = marker.read_text().split() if marker.exists() else []
    assert str(os.getpid()) not in pids, "the dispatcher unpickled what the scheduler sent"
