"""Worker access: the workers' security group (SSH from the allowed CIDRs only)
and the SSH key pair (the organiser's public key, or one generated here)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls

from ramp_fleet.names import EGRESS_ANYWHERE_IPV4

SSH_PORT = 22


def _cidr_label(cidr: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "-", cidr).strip("-")


def allow_ingress(
    parent: pulumi.Resource,
    name: str,
    security_group_id: pulumi.Input[str],
    ports: tuple[int, int],
    description: str,
    tags: dict[str, str],
    cidrs: Sequence[str] = (),
    source_group_id: pulumi.Input[str] | None = None,
) -> list[aws.vpc.SecurityGroupIngressRule]:
    """One TCP ingress rule per CIDR (and one for ``source_group_id``), nothing else."""
    opts = pulumi.ResourceOptions(parent=parent)
    common: dict[str, Any] = {"security_group_id": security_group_id, "ip_protocol": "tcp",
              "from_port": ports[0], "to_port": ports[1], "description": description,
              "tags": tags}
    rules = []
    for cidr in cidrs:
        family = "cidr_ipv6" if ":" in cidr else "cidr_ipv4"
        rules.append(aws.vpc.SecurityGroupIngressRule(
            f"{name}-{_cidr_label(cidr)}", **{**common, family: cidr}, opts=opts))
    if source_group_id is not None:
        rules.append(aws.vpc.SecurityGroupIngressRule(
            f"{name}-group", **common, referenced_security_group_id=source_group_id, opts=opts))
    return rules


def allow_all_egress(
    parent: pulumi.Resource, name: str, security_group_id: pulumi.Input[str], tags: dict[str, str]
) -> aws.vpc.SecurityGroupEgressRule:
    """Outbound traffic: package mirrors, the kit repository, the data, AWS APIs."""
    return aws.vpc.SecurityGroupEgressRule(
        name, security_group_id=security_group_id, ip_protocol="-1",
        cidr_ipv4=EGRESS_ANYWHERE_IPV4, description="all outbound traffic", tags=tags,
        opts=pulumi.ResourceOptions(parent=parent),
    )


@dataclass
class WorkerAccessArgs:
    security_group_name: str
    key_name: str
    #: Who may reach SSH; empty means nobody from outside the VPC.
    allowed_cidrs: Sequence[str]
    tags: dict[str, str]
    #: The organiser's OpenSSH public key; None: generate a key pair here.
    public_key: str | None = None
    vpc_id: str | None = None


class WorkerAccess(pulumi.ComponentResource):
    security_group_id: pulumi.Output[str]
    key_name: pulumi.Output[str]
    #: Only when the key was generated here; a secret.
    private_key_openssh: pulumi.Output[str] | None

    def __init__(self, name: str, args: WorkerAccessArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ramp-fleet:aws:WorkerAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            name=args.security_group_name,
            description="RAMP workers: SSH from the event's allowed CIDRs",
            vpc_id=args.vpc_id,
            tags={**args.tags, "Name": args.security_group_name},
            opts=child,
        )
        allow_ingress(self, f"{name}-ssh", group.id, (SSH_PORT, SSH_PORT), "SSH",
                      args.tags, cidrs=args.allowed_cidrs)
        allow_all_egress(self, f"{name}-egress", group.id, args.tags)

        public_key: pulumi.Input[str]
        if args.public_key is not None:
            public_key = args.public_key
            self.private_key_openssh = None
        else:
            generated = tls.PrivateKey(f"{name}-ssh-key", algorithm="ED25519", opts=child)
            public_key = generated.public_key_openssh
            self.private_key_openssh = pulumi.Output.secret(generated.private_key_openssh)
        key_pair = aws.ec2.KeyPair(
            f"{name}-key-pair", key_name=args.key_name, public_key=public_key,
            tags={**args.tags, "Name": args.key_name}, opts=child,
        )

        self.security_group_id = group.id
        self.key_name = key_pair.key_name
        self.register_outputs({
            "security_group_id": self.security_group_id,
            "key_name": self.key_name,
            "private_key_openssh": self.private_key_openssh,
        })
