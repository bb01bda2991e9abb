"""TLS: submissions run over an encrypted cluster; clients without its certificates are refused."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ramp_fleet.dask.certs import write_tls_files
from ramp_fleet.dask.connection import DaskConnection, DaskUnavailable, security_from_tls
from ramp_fleet.dask.local import LocalDaskCluster
from ramp_fleet.workers.dask import DaskWorker
from tests.dask.helpers import worker_config
from tests.lifecycle import run_one

pytestmark = pytest.mark.timeout(180)


def test_submissions_run_over_tls(tls_cluster: LocalDaskCluster, iris: Path, tmp_path: Path) -> None:
    assert tls_cluster.address.startswith("tls://127.0.0.1:")
    config = worker_config(tls_cluster, iris, tmp_path)
    shared = DaskWorker.open_shared(config)
    try:
        dummy, broken = (run_one(DaskWorker(config, name), shared) for name in ("dummy", "broken"))
    finally:
        DaskWorker.close_shared(shared)
    assert dummy.result is not None and dummy.result.returncode == 0
    assert (tmp_path / "predictions" / "dummy" / "bagged_scores.csv").is_file()
    assert broken.result is not None and broken.result.returncode == 1


def test_the_tls_client_requires_encryption(tls_cluster: LocalDaskCluster) -> None:
    assert tls_cluster.tls is not None
    security = security_from_tls(tls_cluster.tls.as_config())
    assert security.require_encryption
    assert security.tls_client_cert == str(tls_cluster.tls.cert)


def io_loop_threads() -> int:
    return sum(thread.name == "IO loop" for thread in threading.enumerate())


def assert_refused(connection: DaskConnection, match: str | None = None) -> None:
    """Refused with DaskUnavailable, and no half-started client left running."""
    before = io_loop_threads()
    with pytest.raises(DaskUnavailable, match=match):
        connection.client()
    assert io_loop_threads() == before


def test_a_client_without_certificates_is_refused(tls_cluster: LocalDaskCluster) -> None:
    assert_refused(DaskConnection(tls_cluster.address, security=None, connect_timeout=3),
                   match="Dask scheduler")


def test_plaintext_to_the_tls_port_is_refused(tls_cluster: LocalDaskCluster) -> None:
    address = tls_cluster.address.replace("tls://", "tcp://")
    assert_refused(DaskConnection(address, security=None, connect_timeout=3))


def test_a_certificate_from_another_ca_is_refused(
    tls_cluster: LocalDaskCluster, tmp_path: Path
) -> None:
    stranger = write_tls_files(tmp_path / "stranger")
    assert_refused(DaskConnection(tls_cluster.address, security_from_tls(stranger.as_config()),
                                  connect_timeout=3))
