"""A Dask cluster for the event: a scheduler and worker hosts booted from the
newest event AMI, their security groups, and mutual TLS from pulumi-tls.

The hosts' TLS private keys go to SSM Parameter Store and are read by the
user-data at boot: they are never part of an instance's inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls
from dask_network import DaskPorts, dask_security_groups
from image_pipeline import EC2_TRUST_POLICY, MANAGED_POLICIES

from ramp_fleet.config.sections import DaskClusterSection
from ramp_fleet.dask import host_settings
from ramp_fleet.names import CONDA_PREFIX, EventNames
from ramp_fleet.templating import render

TLS_DIR = "/etc/ramp-fleet/dask"
CERT_VALIDITY_HOURS = 24 * 365
CERT_USES = ["digital_signature", "key_encipherment", "server_auth", "client_auth"]


@dataclass
class DaskClusterArgs:
    names: EventNames
    region: str
    cluster: DaskClusterSection
    env_name: str
    user: str
    #: Who may reach the scheduler and its dashboard (the dispatcher's machine).
    allowed_cidrs: Sequence[str]
    key_name: pulumi.Input[str]
    ssh_security_group_id: pulumi.Input[str]
    tags: dict[str, str]
    vpc_id: str | None = None
    subnet_id: str | None = None


def _secret(value: pulumi.Output[str]) -> pulumi.Output[str]:
    secret: pulumi.Output[str] = pulumi.Output.secret(value)
    return secret


class _Identity:
    """A private key and a certificate signed by the cluster's CA."""

    def __init__(self, parent: pulumi.Resource, name: str, common_name: str,
                 ca_key: tls.PrivateKey, ca_cert: tls.SelfSignedCert) -> None:
        child = pulumi.ResourceOptions(parent=parent)
        self.key = tls.PrivateKey(f"{name}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        request = tls.CertRequest(f"{name}-csr", private_key_pem=self.key.private_key_pem,
                                  subject={"common_name": common_name,
                                           "organization": "ramp-fleet"}, opts=child)
        self.cert = tls.LocallySignedCert(
            f"{name}-cert", cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem, ca_cert_pem=ca_cert.cert_pem,
            validity_period_hours=CERT_VALIDITY_HOURS, allowed_uses=CERT_USES, opts=child,
        )


class DaskCluster(pulumi.ComponentResource):
    scheduler_address: pulumi.Output[str]
    ca_cert_pem: pulumi.Output[str]
    client_cert_pem: pulumi.Output[str]
    client_key_pem: pulumi.Output[str]

    def __init__(self, name: str, args: DaskClusterArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ramp-fleet:aws:DaskCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        names, tags, cluster = args.names, args.tags, args.cluster
        self._args = args

        ami = aws.ec2.get_ami_output(
            most_recent=True, owners=["self"],
            filters=[{"name": "name", "values": [names.ami_name_filter]},
                     {"name": "state", "values": ["available"]}],
            opts=pulumi.InvokeOutputOptions(parent=self),
        )

        # -- TLS ---------------------------------------------------------------
        ca_key = tls.PrivateKey(f"{name}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        ca_cert = tls.SelfSignedCert(
            f"{name}-ca", private_key_pem=ca_key.private_key_pem, is_ca_certificate=True,
            subject={"common_name": f"{names.event} Dask CA", "organization": "ramp-fleet"},
            validity_period_hours=CERT_VALIDITY_HOURS,
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"], opts=child,
        )
        identities = {role: _Identity(self, f"{name}-{role}", f"{names.base}-dask-{role}",
                                      ca_key, ca_cert)
                      for role in ("scheduler", "worker", "client")}
        key_parameters = [
            aws.ssm.Parameter(
                f"{name}-{role}-key-parameter", name=names.dask_key_parameter(role),
                type="SecureString", value=_secret(identities[role].key.private_key_pem),
                description=f"TLS key of the Dask {role}s of {names.event}", tags=tags, opts=child,
            )
            for role in ("scheduler", "worker")
        ]

        # -- IAM: the hosts read their TLS key ------------------------------------
        role = aws.iam.Role(f"{name}-role", name=names.dask_role,
                            assume_role_policy=pulumi.Output.json_dumps(EC2_TRUST_POLICY),
                            tags=tags, opts=child)
        aws.iam.RolePolicyAttachment(f"{name}-role-ssm", role=role.name,
                                     policy_arn=MANAGED_POLICIES["ssm"], opts=child)
        aws.iam.RolePolicy(f"{name}-read-keys", role=role.id, policy=pulumi.Output.json_dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["ssm:GetParameter"],
                           "Resource": [p.arn for p in key_parameters]}],
        }), opts=child)
        profile = aws.iam.InstanceProfile(f"{name}-profile", name=names.dask_role, role=role.name,
                                          tags=tags, opts=child)

        # -- security groups ----------------------------------------------------------
        port = cluster.scheduler_port
        groups = dask_security_groups(
            self, name, names, DaskPorts(port, cluster.dashboard_port, cluster.worker_port),
            args.allowed_cidrs, tags, args.vpc_id)
        scheduler_sg, workers_sg = groups.scheduler, groups.workers

        # -- hosts ------------------------------------------------------------------
        host: dict[str, Any] = {
            "ami": ami.id, "key_name": args.key_name, "subnet_id": args.subnet_id,
            "iam_instance_profile": profile.name,
            "metadata_options": {"http_tokens": "required"},
            "user_data_replace_on_change": True,
        }
        scheduler_data = pulumi.Output.all(ca_cert.cert_pem, identities["scheduler"].cert.cert_pem)
        scheduler = aws.ec2.Instance(
            f"{name}-scheduler", instance_type=cluster.scheduler_instance_type,
            vpc_security_group_ids=[scheduler_sg.id, args.ssh_security_group_id],
            user_data=scheduler_data.apply(lambda pems: self._user_data(
                "scheduler", pems[0], pems[1], self._scheduler_argv())),
            tags={**tags, "Name": f"{names.base}-dask-scheduler"}, **host, opts=child,
        )
        worker_data = pulumi.Output.all(ca_cert.cert_pem, identities["worker"].cert.cert_pem,
                                        scheduler.private_ip)
        workers = [
            aws.ec2.Instance(
                f"{name}-worker-{index}", instance_type=cluster.instance_type,
                vpc_security_group_ids=[workers_sg.id, args.ssh_security_group_id],
                user_data=worker_data.apply(lambda values: self._user_data(
                    "worker", values[0], values[1], self._worker_argv(values[2]))),
                tags={**tags, "Name": f"{names.base}-dask-worker-{index}"}, **host, opts=child,
            )
            for index in range(cluster.n_workers)
        ]

        self.scheduler_address = pulumi.Output.all(scheduler.public_ip, scheduler.private_ip).apply(
            lambda ips: f"tls://{ips[0] or ips[1]}:{port}")
        self.ca_cert_pem = ca_cert.cert_pem
        self.client_cert_pem = _secret(identities["client"].cert.cert_pem)
        self.client_key_pem = _secret(identities["client"].key.private_key_pem)
        self.register_outputs({
            "scheduler_address": self.scheduler_address,
            "ami_id": ami.id,
            "worker_ids": [worker.id for worker in workers],
            "ca_cert_pem": self.ca_cert_pem,
            "client_cert_pem": self.client_cert_pem,
            "client_key_pem": self.client_key_pem,
        })

    def _dask(self) -> str:
        return f"{CONDA_PREFIX}/envs/{self._args.env_name}/bin/dask"

    def _tls_args(self) -> list[str]:
        return ["--tls-ca-file", f"{TLS_DIR}/ca.pem", "--tls-cert", f"{TLS_DIR}/cert.pem",
                "--tls-key", f"{TLS_DIR}/key.pem"]

    def _scheduler_argv(self) -> list[str]:
        cluster = self._args.cluster
        return [self._dask(), "scheduler", "--protocol", "tls",
                "--port", str(cluster.scheduler_port),
                "--dashboard-address", f":{cluster.dashboard_port}", *self._tls_args()]

    def _worker_argv(self, scheduler_ip: str) -> list[str]:
        cluster = self._args.cluster
        return [self._dask(), "worker", f"tls://{scheduler_ip}:{cluster.scheduler_port}",
                "--nworkers", "1", "--nthreads", str(cluster.threads_per_worker),
                "--worker-port", str(cluster.worker_port),
                "--nanny-port", str(cluster.worker_port + 1),
                "--name", "%H", *self._tls_args()]

    def _user_data(self, role: str, ca_cert_pem: str, cert_pem: str, argv: list[str]) -> str:
        args = self._args
        context: dict[str, Any] = {
            "role": role, "event_name": args.names.event, "user": args.user,
            "conda_prefix": CONDA_PREFIX, "region": args.region,
            "key_parameter": args.names.dask_key_parameter(role),
            "ca_cert_pem": ca_cert_pem, "cert_pem": cert_pem, "argv": argv,
            "environment": host_settings.environment(),
        }
        return render("dask-host.sh.j2", **context)
