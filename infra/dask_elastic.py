"""What an event's elastic Dask cluster needs from the stack — and no hosts.

The dispatcher starts and stops the hosts itself (``ramp_fleet.dask.elastic``);
this component gives them their security groups (the static cluster's
least-privilege rules, :mod:`dask_network`) and an instance profile whose only
permission beyond SSM's agent is reading the event's cluster keys
(``/ramp-fleet/<event>/dask-elastic/*``). It also writes down, as an output,
the policy the dispatcher's own credentials need to run such a cluster.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
from dask_network import DaskPorts, dask_security_groups
from image_pipeline import EC2_TRUST_POLICY, MANAGED_POLICIES

from ramp_fleet.names import EVENT_TAG, EventNames


@dataclass
class ElasticDaskAccessArgs:
    names: EventNames
    region: str
    ports: DaskPorts
    #: Who may reach the scheduler and its dashboard (the dispatcher's machine).
    allowed_cidrs: Sequence[str]
    tags: dict[str, str]
    vpc_id: str | None = None


def key_parameters_arn(region: str, names: EventNames) -> str:
    return f"arn:aws:ssm:{region}:*:parameter{names.dask_elastic_parameters}/*"


def dispatcher_policy(region: str, names: EventNames, role_arn: str) -> dict[str, Any]:
    """What the credentials of the cluster's owner (the dispatcher) need, and only that."""
    event_only = {"StringEquals": {f"aws:ResourceTag/{EVENT_TAG}": names.event}}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Look", "Effect": "Allow", "Resource": "*",
             "Action": ["ec2:DescribeImages", "ec2:DescribeInstances",
                        "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets"]},
            {"Sid": "Launch", "Effect": "Allow", "Resource": "*",
             "Action": ["ec2:RunInstances", "ec2:CreateTags"]},
            {"Sid": "TerminateTheEventsHostsOnly", "Effect": "Allow", "Resource": "*",
             "Action": ["ec2:TerminateInstances"], "Condition": event_only},
            {"Sid": "PassTheHostsRole", "Effect": "Allow", "Resource": role_arn,
             "Action": ["iam:PassRole"]},
            {"Sid": "HostKeys", "Effect": "Allow",
             "Resource": [key_parameters_arn(region, names),
                          key_parameters_arn(region, names).removesuffix("/*")],
             "Action": ["ssm:PutParameter", "ssm:DeleteParameter", "ssm:GetParametersByPath",
                        "ssm:AddTagsToResource"]},
        ],
    }


class ElasticDaskAccess(pulumi.ComponentResource):
    scheduler_security_group_id: pulumi.Output[str]
    workers_security_group_id: pulumi.Output[str]
    instance_profile: pulumi.Output[str]
    dispatcher_policy: pulumi.Output[str]

    def __init__(self, name: str, args: ElasticDaskAccessArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ramp-fleet:aws:ElasticDaskAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        names, tags = args.names, args.tags

        groups = dask_security_groups(self, name, names, args.ports, args.allowed_cidrs, tags,
                                      args.vpc_id)

        role = aws.iam.Role(f"{name}-role", name=names.dask_elastic_role,
                            assume_role_policy=pulumi.Output.json_dumps(EC2_TRUST_POLICY),
                            tags=tags, opts=child)
        aws.iam.RolePolicyAttachment(f"{name}-role-ssm", role=role.name,
                                     policy_arn=MANAGED_POLICIES["ssm"], opts=child)
        aws.iam.RolePolicy(f"{name}-read-keys", role=role.id, policy=pulumi.Output.json_dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["ssm:GetParameter"],
                           "Resource": [key_parameters_arn(args.region, names)]}],
        }), opts=child)
        profile = aws.iam.InstanceProfile(f"{name}-profile", name=names.dask_elastic_role,
                                          role=role.name, tags=tags, opts=child)

        self.scheduler_security_group_id = groups.scheduler.id
        self.workers_security_group_id = groups.workers.id
        self.instance_profile = profile.name
        self.dispatcher_policy = role.arn.apply(
            lambda arn: json.dumps(dispatcher_policy(args.region, names, arn), indent=1))
        self.register_outputs({
            "scheduler_security_group_id": self.scheduler_security_group_id,
            "workers_security_group_id": self.workers_security_group_id,
            "instance_profile": self.instance_profile,
            "key_parameters": names.dask_elastic_parameters,
            "dispatcher_policy": self.dispatcher_policy,
        })
