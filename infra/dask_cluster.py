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
#: What each role's certificate may be used for: the hosts accept and open connections;
#: the dispatcher's only opens them (its key can never serve as a scheduler or a worker).
CERT_USES = {
    "scheduler": ["digital_signature", "key_encipherment", "server_auth", "client_auth"],
    "worker": ["digital_signature", "key_encipherment", "server_auth", "client_auth"],
    "client": ["digital_signature", "key_encipherment", "client_auth"],
}
#: Who gets a certificate, and which of them run on hosts (the client is the dispatcher).
ROLES = ("scheduler", "worker", "client")
HOST_ROLES = ("scheduler", "worker")


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
                 ca_key: tls.PrivateKey, ca_cert: tls.SelfSignedCert, uses: list[str]) -> None:
        child = pulumi.ResourceOptions(parent=parent)
        self.key = tls.PrivateKey(f"{name}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        request = tls.CertRequest(f"{name}-csr", private_key_pem=self.key.private_key_pem,
                                  subject={"common_name": common_name,
                                           "organization": "ramp-fleet"}, opts=child)
        self.cert = tls.LocallySignedCert(
            f"{name}-cert", cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem, ca_cert_pem=ca_cert.cert_pem,
            validity_period_hours=CERT_VALIDITY_HOURS, allowed_uses=uses, opts=child,
        )


class DaskCluster(pulumi.ComponentResource):
    scheduler_address: pulumi.Output[str]
    ca_cert_pem: pulumi.Output[str]
    client_cert_pem: pulumi.Output[str]
    client_key_pem: pulumi.Output[str]

    def __init__(self, name: str, args: DaskClusterArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ramp-fleet:aws:DaskCluster", name, None, opts)
        self._name, self._args = name, args
        self._child = pulumi.ResourceOptions(parent=self)
        ami = aws.ec2.get_ami_output(
            most_recent=True, owners=["self"],
            filters=[{"name": "name", "values": [args.names.ami_name_filter]},
                     {"name": "state", "values": ["available"]}],
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        ca_key, ca_cert = self._certificate_authority()
        identities = {role: _Identity(self, f"{name}-{role}", f"{args.names.base}-dask-{role}",
                                      ca_key, ca_cert, CERT_USES[role]) for role in ROLES}
        profiles = {role: self._host_profile(role, identities[role]) for role in HOST_ROLES}
        cluster = args.cluster
        groups = dask_security_groups(
            self, name, args.names, DaskPorts(cluster.scheduler_port, cluster.dashboard_port,
                                              cluster.worker_port),
            args.allowed_cidrs, args.tags, args.vpc_id, dashboard_cidrs=cluster.dashboard_cidrs)
        scheduler = self._scheduler(ami.id, profiles["scheduler"], groups.scheduler, ca_cert,
                                    identities["scheduler"])
        workers = self._workers(ami.id, profiles["worker"], groups.workers, ca_cert,
                                identities["worker"], scheduler)

        self.scheduler_address = pulumi.Output.all(scheduler.public_ip, scheduler.private_ip).apply(
            lambda ips: f"tls://{ips[0] or ips[1]}:{cluster.scheduler_port}")
        self.ca_cert_pem = ca_cert.cert_pem
        # The client's identity is the dispatcher's: a stack output, never on a host.
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

    # -- TLS -------------------------------------------------------------------------

    def _certificate_authority(self) -> tuple[tls.PrivateKey, tls.SelfSignedCert]:
        ca_key = tls.PrivateKey(f"{self._name}-ca-key", algorithm="ECDSA", ecdsa_curve="P256",
                                opts=self._child)
        ca_cert = tls.SelfSignedCert(
            f"{self._name}-ca", private_key_pem=ca_key.private_key_pem, is_ca_certificate=True,
            subject={"common_name": f"{self._args.names.event} Dask CA", "organization": "ramp-fleet"},
            validity_period_hours=CERT_VALIDITY_HOURS,
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"], opts=self._child,
        )
        return ca_key, ca_cert

    # -- IAM: each host role reads its own TLS key, and nothing else ----------------------

    def _host_profile(self, role: str, identity: _Identity) -> aws.iam.InstanceProfile:
        name, names, tags = self._name, self._args.names, self._args.tags
        parameter = aws.ssm.Parameter(
            f"{name}-{role}-key-parameter", name=names.dask_key_parameter(role),
            type="SecureString", value=_secret(identity.key.private_key_pem),
            description=f"TLS key of the Dask {role}s of {names.event}", tags=tags, opts=self._child,
        )
        iam_role = aws.iam.Role(f"{name}-{role}-role", name=names.dask_role(role),
                                assume_role_policy=pulumi.Output.json_dumps(EC2_TRUST_POLICY),
                                tags=tags, opts=self._child)
        aws.iam.RolePolicyAttachment(f"{name}-{role}-role-ssm", role=iam_role.name,
                                     policy_arn=MANAGED_POLICIES["ssm"], opts=self._child)
        aws.iam.RolePolicy(f"{name}-{role}-read-key", role=iam_role.id,
                           policy=pulumi.Output.json_dumps({
                               "Version": "2012-10-17",
                               "Statement": [{"Effect": "Allow", "Action": ["ssm:GetParameter"],
                                              "Resource": [parameter.arn]}],
                           }), opts=self._child)
        return aws.iam.InstanceProfile(f"{name}-{role}-profile", name=names.dask_role(role),
                                       role=iam_role.name, tags=tags, opts=self._child)

    # -- hosts --------------------------------------------------------------------------

    def _host(self, ami_id: pulumi.Input[str], profile: aws.iam.InstanceProfile) -> dict[str, Any]:
        return {"ami": ami_id, "key_name": self._args.key_name, "subnet_id": self._args.subnet_id,
                "iam_instance_profile": profile.name,
                "metadata_options": {"http_tokens": "required", "http_put_response_hop_limit": 1},
                "user_data_replace_on_change": True}

    def _scheduler(self, ami_id: pulumi.Input[str], profile: aws.iam.InstanceProfile,
                   group: aws.ec2.SecurityGroup, ca_cert: tls.SelfSignedCert,
                   identity: _Identity) -> aws.ec2.Instance:
        args = self._args
        pems = pulumi.Output.all(ca_cert.cert_pem, identity.cert.cert_pem)
        return aws.ec2.Instance(
            f"{self._name}-scheduler", instance_type=args.cluster.scheduler_instance_type,
            vpc_security_group_ids=[group.id, args.ssh_security_group_id],
            user_data=pems.apply(lambda values: self._user_data(
                "scheduler", values[0], values[1], self._scheduler_argv())),
            tags={**args.tags, "Name": f"{args.names.base}-dask-scheduler"},
            **self._host(ami_id, profile), opts=self._child,
        )

    def _workers(self, ami_id: pulumi.Input[str], profile: aws.iam.InstanceProfile,
                 group: aws.ec2.SecurityGroup, ca_cert: tls.SelfSignedCert, identity: _Identity,
                 scheduler: aws.ec2.Instance) -> list[aws.ec2.Instance]:
        args = self._args
        values = pulumi.Output.all(ca_cert.cert_pem, identity.cert.cert_pem, scheduler.private_ip)
        return [
            aws.ec2.Instance(
                f"{self._name}-worker-{index}", instance_type=args.cluster.instance_type,
                vpc_security_group_ids=[group.id, args.ssh_security_group_id],
                user_data=values.apply(lambda found: self._user_data(
                    "worker", found[0], found[1], self._worker_argv(found[2]))),
                tags={**args.tags, "Name": f"{args.names.base}-dask-worker-{index}"},
                **self._host(ami_id, profile), opts=self._child,
            )
            for index in range(args.cluster.n_workers)
        ]

    def _dask(self) -> str:
        return f"{CONDA_PREFIX}/envs/{self._args.env_name}/bin/dask"

    def _tls_args(self) -> list[str]:
        return ["--tls-ca-file", f"{TLS_DIR}/ca.pem", "--tls-cert", f"{TLS_DIR}/cert.pem",
                "--tls-key", f"{TLS_DIR}/key.pem"]

    def _scheduler_argv(self) -> list[str]:
        cluster = self._args.cluster
        # The dashboard is unauthenticated: on the scheduler's loopback (an SSH tunnel
        # reaches it) unless infra.dask_cluster.dashboard_cidrs opens it.
        host = "" if cluster.dashboard_cidrs else "127.0.0.1"
        return [self._dask(), "scheduler", "--protocol", "tls",
                "--port", str(cluster.scheduler_port),
                "--dashboard-address", f"{host}:{cluster.dashboard_port}", *self._tls_args()]

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
            "environment": host_settings.environment(role),
        }
        return render("dask-host.sh.j2", **context)
