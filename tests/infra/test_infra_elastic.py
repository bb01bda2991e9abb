"""The Pulumi program for a Dask event with an elastic cluster: its groups and profile, no hosts."""

from __future__ import annotations

import json
from collections import Counter

from ramp_fleet.names import EVENT_TAG
from tests.infra.pulumi_mocks import Deployment
from tests.infra.test_infra_stack import (
    IMAGE_AND_ACCESS,
    INGRESS,
    INSTANCE,
    WORLD,
    ingress_cidrs,
    taggable,
    types,
)

ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
PREFIX = "ramp-iris_elastic-dask-elastic"


def rules(deployment: Deployment) -> dict[str, dict]:
    return {r.name.removeprefix(f"{PREFIX}-"): r.inputs for r in deployment.of_type(INGRESS)
            if r.name.startswith(PREFIX)}


def test_the_elastic_cluster_gets_groups_and_a_profile_but_no_hosts(deploy):
    deployment = deploy("elastic")
    assert types(deployment) == IMAGE_AND_ACCESS + Counter({
        "ramp-fleet:aws:ElasticDaskAccess": 1,
        "aws:ec2/securityGroup:SecurityGroup": 2,
        INGRESS: 4,  # scheduler from the CIDR and the workers, workers, peers (no dashboard)
        "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": 2,
        "aws:iam/role:Role": 1,
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment": 1,
        ROLE_POLICY: 1,
        "aws:iam/instanceProfile:InstanceProfile": 1,
    })
    assert not deployment.of_type(INSTANCE)
    assert not deployment.of_type("tls:index/locallySignedCert:LocallySignedCert")


def test_the_groups_have_the_static_clusters_least_privilege_rules(deploy):
    deployment = deploy("elastic")
    found = rules(deployment)
    assert found["scheduler-198-51-100-0-24"]["fromPort"] == 8786
    assert found["scheduler-group"]["referencedSecurityGroupId"] == f"{PREFIX}-workers-sg-id"
    assert found["workers-group"]["referencedSecurityGroupId"] == f"{PREFIX}-scheduler-sg-id"
    assert (found["workers-group"]["fromPort"], found["workers-group"]["toPort"]) == (9000, 9001)
    assert found["peers-group"]["referencedSecurityGroupId"] == f"{PREFIX}-workers-sg-id"
    assert set(found) == {"scheduler-198-51-100-0-24", "scheduler-group", "workers-group",
                          "peers-group"}
    assert WORLD not in ingress_cidrs(deployment)
    names = {g.inputs["name"] for g in deployment.of_type("aws:ec2/securityGroup:SecurityGroup")}
    assert {"ramp-iris_elastic-dask-scheduler", "ramp-iris_elastic-dask-workers"} <= names


def test_the_ports_come_from_the_cluster_section(deploy):
    cluster = {"provider": "ec2", "max_workers": 2, "scheduler_port": 9786,
               "dashboard_port": 9787, "worker_port": 9100}
    found = rules(deploy("elastic", worker={"dask_cluster": cluster}))
    assert found["scheduler-group"]["fromPort"] == 9786
    assert (found["peers-group"]["fromPort"], found["peers-group"]["toPort"]) == (9100, 9101)


def test_the_hosts_may_read_their_clusters_keys_and_nothing_else(deploy):
    deployment = deploy("elastic")
    assert deployment.named(f"{PREFIX}-role").inputs["name"] == PREFIX
    assert deployment.named(f"{PREFIX}-profile").inputs["name"] == PREFIX
    attached = deployment.named(f"{PREFIX}-role-ssm").inputs["policyArn"]
    assert attached == "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    policy = json.loads(deployment.one(ROLE_POLICY).inputs["policy"])
    assert policy["Statement"] == [{
        "Effect": "Allow", "Action": ["ssm:GetParameter"],
        "Resource": ["arn:aws:ssm:eu-west-1:*:parameter/ramp-fleet/iris_elastic/dask-elastic/*"]}]


def test_the_outputs_name_what_the_cluster_uses(deploy):
    outputs = deploy("elastic").outputs
    assert outputs["daskElasticSchedulerSecurityGroup"] == f"{PREFIX}-scheduler-sg-id"
    assert outputs["daskElasticWorkersSecurityGroup"] == f"{PREFIX}-workers-sg-id"
    assert outputs["daskElasticInstanceProfile"] == PREFIX
    assert outputs["daskElasticKeyParameters"] == "/ramp-fleet/iris_elastic/dask-elastic"
    assert "daskScheduler" not in outputs


def test_the_dispatcher_policy_terminates_only_the_events_instances(deploy):
    policy = json.loads(deploy("elastic").outputs["daskElasticDispatcherPolicy"])
    statements = {s["Sid"]: s for s in policy["Statement"]}
    terminate = statements["TerminateTheEventsHostsOnly"]
    assert terminate["Action"] == ["ec2:TerminateInstances"]
    assert terminate["Condition"] == {"StringEquals": {f"aws:ResourceTag/{EVENT_TAG}": "iris_elastic"}}
    assert statements["PassTheHostsRole"]["Resource"].endswith(f":{PREFIX}-role")
    assert all("/ramp-fleet/iris_elastic/dask-elastic" in resource
               for resource in statements["HostKeys"]["Resource"])


def test_every_resource_is_tagged_with_the_event(deploy):
    deployment = deploy("elastic")
    untagged = [r.name for r in deployment.resources if r.typ.startswith("aws:")
                and taggable(r.typ) and r.inputs.get("tags", {}).get(EVENT_TAG) != "iris_elastic"]
    assert untagged == []


def test_children_are_prefixed_by_their_component(deploy):
    deployment = deploy("elastic")
    children = [r.name for r in deployment.resources if r.name.startswith(PREFIX)
                and r.typ != "ramp-fleet:aws:ElasticDaskAccess"]
    assert len(children) == 12
    assert "ramp-fleet:aws:ElasticDaskAccess" in {r.typ for r in deployment.resources
                                                  if r.name == PREFIX}
