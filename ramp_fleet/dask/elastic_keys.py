"""The elastic clusters' host keys in SSM Parameter Store, one SecureString per cluster.

A host reads its cluster's key at boot with its instance profile (the
Pulumi program grants ``ssm:GetParameter`` on the event's
``/ramp-fleet/<event>/dask-elastic/*`` and nothing else). The key is
deleted when its cluster closes, and a dead dispatcher's keys are reaped
with its instances.
"""

from __future__ import annotations

import logging
from typing import Any

import botocore.exceptions

from ramp_fleet.names import EventNames

logger = logging.getLogger("ramp_fleet.dask.elastic")


class HostKeys:
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

    def reap(self, keep: tuple[str, ...] = ()) -> list[str]:
        """Delete the keys of every cluster but ``keep``; returns the clusters reaped."""
        stale = [cluster for cluster in self.clusters() if cluster not in keep]
        for cluster in stale:
            self.delete(cluster)
        if stale:
            logger.warning("deleted the host keys of elastic Dask cluster(s) %s of %s",
                           ", ".join(stale), self.names.event)
        return stale
