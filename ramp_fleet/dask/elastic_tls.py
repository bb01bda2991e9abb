"""The certificates of one elastic Dask cluster: its own CA, a host and a client identity.

Made when the cluster opens. The CA's key is never written anywhere and is
forgotten once both certificates are signed, so nothing joins the cluster
that was not made with it, and a certificate of a cluster that is gone opens
no other. The hosts (scheduler and workers) share one identity, whose key
reaches them through SSM Parameter Store (:mod:`ramp_fleet.dask.elastic_keys`),
never through their user-data; the client's stays on this machine (mode 600).
Dask checks the CA, not host names, so the certificates name no host.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.x509.oid import ExtendedKeyUsageOID

from ramp_fleet.dask.certs import TLSFiles, new_ca, write_private

#: A cluster lives as long as its dispatcher; its CA dies with it.
VALIDITY_DAYS = 365


@dataclass(frozen=True)
class ClusterCertificates:
    ca_pem: bytes
    host_cert_pem: bytes
    host_key_pem: bytes
    client_cert_pem: bytes
    client_key_pem: bytes

    @classmethod
    def generate(cls, cluster_name: str, days: int = VALIDITY_DAYS) -> ClusterCertificates:
        ca = new_ca(f"{cluster_name} CA", days)
        both = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)
        host_key, host_cert = ca.issue(f"{cluster_name} host", (), days, both)
        client_key, client_cert = ca.issue(f"{cluster_name} client", (), days,
                                           (ExtendedKeyUsageOID.CLIENT_AUTH,))
        return cls(ca.cert_pem, host_cert, host_key, client_cert, client_key)

    def write_client_files(self, folder: Path) -> TLSFiles:
        """``ca.pem``, ``client.pem`` and ``client-key.pem`` (mode 600) in a private ``folder``."""
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        files = TLSFiles(folder / "ca.pem", folder / "client.pem", folder / "client-key.pem")
        files.ca_file.write_bytes(self.ca_pem)
        files.cert.write_bytes(self.client_cert_pem)
        write_private(files.key, self.client_key_pem)
        return files


def client_security(files: TLSFiles, *, require_encryption: bool = True) -> Any:
    """``distributed.security.Security`` of the client identity.

    ``require_encryption=False`` only for the cluster object itself:
    dask-cloudprovider turns a Security that requires encryption into a
    process-wide ``dask.config.set`` that it never reverts. Its connections
    are TLS all the same: the scheduler's address is ``tls://``.
    """
    from distributed.security import Security

    return Security(tls_ca_file=str(files.ca_file), tls_client_cert=str(files.cert),
                    tls_client_key=str(files.key), require_encryption=require_encryption)
