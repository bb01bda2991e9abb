"""TLS: submissions run over an encrypted cluster; clients without its certificates are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from ramp_fleet.dask.certs import write_tls_files
from ramp_fleet.dask.connection import DaskConnection, DaskUnavailable, security_from_tls
from ramp_fleet.dask.local import LocalDaskCluster
from tests.dask.helpers import worker_config
from tests.dask.lifecycle import run_many

pytestmark = pytest.mark.timeout(180)


def test_submissions_run_over_tls(tls_cluster: LocalDaskCluster, iris: Path, tmp_path: Path) -> None:
    assert tls_cluster.address.startswith("tls://127.0.0.1:")
    config = worker_config(tls_cluster, iris, tmp_path)
    outcomes = run_many(config, ["dummy", "broken"], slots=1)
    assert (outcomes["dummy"].status, outcomes["dummy"].returncode) == ("finished", 0)
    assert (tmp_path / "predictions" / "dummy" / "bagged_scores.csv").is_file()
    assert outcomes["broken"].returncode == 1


def test_the_tls_client_requires_encryption(tls_cluster: LocalDaskCluster) -> None:
    assert tls_cluster.tls is not None
    security = security_from_tls(tls_cluster.tls.as_config())
    assert security.require_encryption
    assert security.tls_client_cert == str(tls_cluster.tls.cert)


def test_a_client_without_certificates_is_refused(tls_cluster: LocalDaskCluster) -> None:
    connection = DaskConnection(tls_cluster.address, security=None, connect_timeout=3)
    with pytest.raises(DaskUnavailable, match="Dask scheduler"):
        connection.client()


def test_plaintext_to_the_tls_port_is_refused(tls_cluster: LocalDaskCluster) -> None:
    address = tls_cluster.address.replace("tls://", "tcp://")
    with pytest.raises(DaskUnavailable):
        DaskConnection(address, security=None, connect_timeout=3).client()


def test_a_certificate_from_another_ca_is_refused(
    tls_cluster: LocalDaskCluster, tmp_path: Path
) -> None:
    stranger = write_tls_files(tmp_path / "stranger")
    connection = DaskConnection(tls_cluster.address, security_from_tls(stranger.as_config()),
                                connect_timeout=3)
    with pytest.raises(DaskUnavailable):
        connection.client()
