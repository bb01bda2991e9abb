"""The TLS identity of one elastic Dask cluster: its own CA, and the hosts' key in SSM.

Made when the cluster opens. The CA's key is never written anywhere and is
forgotten once both certificates are signed, so nothing joins the cluster
that was not made with it, and a certificate of a cluster that is gone opens
no other. Dask checks the CA, not host names, so the certificates name no host.

The hosts (scheduler and workers) share one identity. Its key reaches them
through SSM Parameter Store (:class:`HostKeys`, one SecureString per
cluster), never through their user-data: a host reads it at boot with its
instance profile (the Pulumi program grants ``ssm:GetParameter`` on the
event's ``/ramp-fleet/<event>/dask-elastic/*`` and nothing else). The key is
deleted when its cluster closes, and a dead dispatcher's keys are reaped
with its instances. The client's identity stays on this machine (mode 600).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions
from cryptography.x509.oid import ExtendedKeyUsageOID

from ramp_fleet.dask.certs import TLSFiles, new_ca, write_private
from ramp_fleet.names import EventNames

logger = logging.getLogger("ramp_fleet.dask.elastic")

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


class HostKeys:
    """The event's elastic clusters' host keys in SSM Parameter Store."""

    def __init__(self, ssm: Any, names: EventNames, tags: dict[str, str]):
        self.ssm = ssm
        self.names = names
        self.tags = tags

    def put(self, cluster_id: str, key_pem: bytes) -> str:
        """Store the hosts' key of ``cluster_id``; returns the parameter's name."""
        name = self.names.dask_elastic_key_parameter(cluster_id)
        self.ssm.put_parameter(
            Name=name, Value=key_pem.decode("ascii"), Type="SecureString",
            Description=f"TLS key of the elastic Dask cluster {cluster_id} of {self.names.event}",
            Tags=[{"Key": key, "Value": value} for key, value in self.tags.items()],
        )
        return name

    def delete(self, cluster_id: str) -> None:
        try:
            self.ssm.delete_parameter(Name=self.names.dask_elastic_key_parameter(cluster_id))
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ParameterNotFound":
                raise

    def clusters(self) -> list[str]:
        """The ids of the clusters that have a key stored."""
        prefix = self.names.dask_elastic_parameters + "/"
        found: set[str] = set()
        pages = self.ssm.get_paginator("get_parameters_by_path").paginate(
            Path=self.names.dask_elastic_parameters, Recursive=True, WithDecryption=False)
        for page in pages:
            for parameter in page["Parameters"]:
                found.add(parameter["Name"].removeprefix(prefix).split("/", 1)[0])
        return sorted(found)

    def reap(self) -> list[str]:
        """Delete the keys of every cluster; returns the clusters reaped."""
        stale = self.clusters()
        for cluster in stale:
            self.delete(cluster)
        if stale:
            logger.warning("deleted the host keys of elastic Dask cluster(s) %s of %s",
                           ", ".join(stale), self.names.event)
        return stale
