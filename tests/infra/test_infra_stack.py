"""The Pulumi program under Pulumi's unit-test mocks, for a conda, an AWS and a Dask event."""

from __future__ import annotations

import inspect
import json
import runpy
from collections import Counter
from pathlib import Path

import pulumi
import pulumi_aws
import pytest
from event_stack import StackSettings

from ramp_fleet.errors import UsageError
from ramp_fleet.names import EVENT_TAG
from tests.infra.pulumi_mocks import MOCK_AMI_ID, Deployment, run_program

ROOT = Path(__file__).resolve().parents[2]

WORLD = "0.0.0.0/0"
PIPELINE = "aws:imagebuilder/imagePipeline:ImagePipeline"
COMPONENT = "aws:imagebuilder/component:Component"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
INSTANCE = "aws:ec2/instance:Instance"
PARAMETER = "aws:ssm/parameter:Parameter"

IMAGE_AND_ACCESS = Counter({
    "pulumi:providers:aws": 1,
    "ramp-fleet:aws:WorkerAccess": 1,
    "ramp-fleet:aws:ImagePipeline": 1,
    "aws:ec2/securityGroup:SecurityGroup": 1,
    INGRESS: 1,
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": 1,
    "tls:index/privateKey:PrivateKey": 1,
    "aws:ec2/keyPair:KeyPair": 1,
    "aws:iam/role:Role": 1,
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": 2,
    "aws:iam/instanceProfile:InstanceProfile": 1,
    COMPONENT: 1,
    "aws:imagebuilder/imageRecipe:ImageRecipe": 1,
    "aws:imagebuilder/infrastructureConfiguration:InfrastructureConfiguration": 1,
    "aws:imagebuilder/distributionConfiguration:DistributionConfiguration": 1,
    PIPELINE: 1,
})


def types(deployment: Deployment) -> Counter[str]:
    return Counter(r.typ for r in deployment.resources)


def walk(value: object) -> str:
    return json.dumps(value, default=str)


# -- the set of resources -------------------------------------------------------


def test_conda_event_gets_the_image_pipeline_and_worker_access(deploy):
    deployment = deploy("conda")
    assert types(deployment) == IMAGE_AND_ACCESS


def test_aws_event_adds_secrets_and_the_log_bucket(deploy, tmp_path):
    deployment = deploy("aws", osf=True)
    expected = IMAGE_AND_ACCESS + Counter({
        INGRESS: 1,  # a second allowed CIDR
        PARAMETER: 2,  # OSF username and password
        "aws:iam/rolePolicy:RolePolicy": 1,
        "aws:s3/bucket:Bucket": 1,
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": 1,
    })
    assert types(deployment) == expected


def test_dask_event_adds_the_cluster(deploy):
    deployment = deploy("dask")
    counts = types(deployment)
    assert counts["ramp-fleet:aws:DaskCluster"] == 1
    assert counts[INSTANCE] == 1 + 3
    assert counts["tls:index/locallySignedCert:LocallySignedCert"] == 3
    assert counts["tls:index/selfSignedCert:SelfSignedCert"] == 1
    assert counts[PARAMETER] == 2  # the hosts' TLS keys
    assert counts["aws:ec2/securityGroup:SecurityGroup"] == 3


def test_dask_cluster_can_wait_for_the_first_ami(deploy):
    deployment = deploy("dask", settings={"dask_cluster": False})
    assert not deployment.of_type(INSTANCE)
    assert "daskScheduler" not in deployment.outputs


# -- names from the config --------------------------------------------------------


def test_names_come_from_the_config(deploy):
    deployment = deploy("aws")
    assert deployment.one(PIPELINE).inputs["name"] == "ramp-iris_aws-pipeline"
    assert deployment.one(COMPONENT).inputs["name"] == "ramp-iris_aws-component"
    recipe = deployment.one("aws:imagebuilder/imageRecipe:ImageRecipe").inputs
    assert recipe["name"] == "ramp-iris_aws-recipe"
    assert deployment.one("aws:iam/role:Role").inputs["name"] == "ramp-iris_aws-imagebuilder"
    group = deployment.one("aws:ec2/securityGroup:SecurityGroup").inputs
    assert group["name"] == "iris-workers"
    assert deployment.one("aws:ec2/keyPair:KeyPair").inputs["keyName"] == "iris-key"
    distribution = deployment.one(
        "aws:imagebuilder/distributionConfiguration:DistributionConfiguration").inputs
    ami = distribution["distributions"][0]["amiDistributionConfiguration"]
    assert ami["name"] == "iris-ami {{ imagebuilder:buildDate }}"
    assert ami["amiTags"][EVENT_TAG] == "iris_aws"
    assert distribution["distributions"][0]["region"] == "eu-west-1"
    assert deployment.outputs["pipelineName"] == "ramp-iris_aws-pipeline"
    assert deployment.outputs["buildLogGroup"] == "/aws/imagebuilder/ramp-iris_aws-recipe"


def test_children_are_prefixed_by_their_component(deploy):
    deployment = deploy("dask")
    components = {r.name for r in deployment.resources if r.typ.startswith("ramp-fleet:")}
    assert components == {"ramp-iris_dask-access", "ramp-iris_dask-image", "ramp-iris_dask-dask"}
    for resource in deployment.resources:
        if resource.typ.startswith(("ramp-fleet:", "pulumi:providers:")):
            continue
        assert any(resource.name.startswith(f"{name}-") for name in components), resource.name


def test_recipe_settings(deploy):
    recipe = deploy("conda", infra={"volume_size": 80}).one(
        "aws:imagebuilder/imageRecipe:ImageRecipe").inputs
    assert recipe["workingDirectory"] == "/tmp"
    assert recipe["blockDeviceMappings"][0]["ebs"]["volumeSize"] == 80
    assert recipe["parentImage"] == (
        "arn:aws:imagebuilder:eu-west-1:aws:image/ubuntu-server-22-lts-x86/x.x.x")
    custom = deploy("conda", infra={"parent_image": "ami-0aaaabbbbccccdddd"}).one(
        "aws:imagebuilder/imageRecipe:ImageRecipe").inputs
    assert custom["parentImage"] == "ami-0aaaabbbbccccdddd"


def test_component_version_follows_the_document(deploy):
    first = deploy("conda").one(COMPONENT).inputs
    again = deploy("conda").one(COMPONENT).inputs
    changed = deploy("conda", infra={"kit_repository": "https://example.org/kit.git"}).one(
        COMPONENT).inputs
    assert first["version"] == again["version"] != changed["version"]


def test_infrastructure_configuration(deploy):
    infrastructure = deploy("aws", infra={"build_instance_types": ["c5.xlarge", "m5.xlarge"],
                                          "subnet_id": "subnet-1", "vpc_id": "vpc-1"}).one(
        "aws:imagebuilder/infrastructureConfiguration:InfrastructureConfiguration").inputs
    assert infrastructure["instanceTypes"] == ["c5.xlarge", "m5.xlarge"]
    assert infrastructure["subnetId"] == "subnet-1"
    assert infrastructure["terminateInstanceOnFailure"] is True
    assert infrastructure["securityGroupIds"] == ["ramp-iris_aws-access-sg-id"]
    assert infrastructure["logging"]["s3Logs"] == {
        "s3BucketName": "iris-aws-build-logs", "s3KeyPrefix": "ramp-iris_aws-pipeline"}
    assert infrastructure["resourceTags"][EVENT_TAG] == "iris_aws"


def test_pipeline_has_no_schedule_and_enhanced_metadata(deploy):
    pipeline = deploy("aws").one(PIPELINE).inputs
    assert "schedule" not in pipeline
    assert pipeline["enhancedImageMetadataEnabled"] is True
    assert pipeline["imageTestsConfiguration"]["imageTestsEnabled"] is True


# -- policy: tags, ingress, secrets -------------------------------------------------


def taggable(token: str) -> bool:
    """Whether the pulumi-aws resource behind ``token`` takes ``tags``."""
    module, _, cls_name = token.removeprefix("aws:").partition(":")
    cls = getattr(getattr(pulumi_aws, module.split("/")[0]), cls_name)
    return "tags" in inspect.signature(cls._internal_init).parameters


@pytest.mark.parametrize("kind", ["conda", "aws", "dask"])
def test_every_resource_is_tagged_with_the_event(deploy, kind):
    deployment = deploy(kind)
    aws_resources = [r for r in deployment.resources if r.typ.startswith("aws:")]
    assert aws_resources
    untagged = [r.name for r in aws_resources
                if taggable(r.typ) and r.inputs.get("tags", {}).get(EVENT_TAG) != f"iris_{kind}"]
    assert untagged == []


def test_organiser_tags_are_kept(deploy):
    pipeline = deploy("aws").one(PIPELINE).inputs
    assert pipeline["tags"] == {"team": "ramp", EVENT_TAG: "iris_aws"}


def ingress_cidrs(deployment: Deployment) -> set[str]:
    return {r.inputs.get("cidrIpv4") or r.inputs.get("cidrIpv6")
            for r in deployment.of_type(INGRESS) if "referencedSecurityGroupId" not in r.inputs}


@pytest.mark.parametrize("kind", ["conda", "aws", "dask"])
def test_no_ingress_from_the_world_by_default(deploy, kind):
    deployment = deploy(kind)
    cidrs = ingress_cidrs(deployment)
    assert cidrs and WORLD not in cidrs
    assert cidrs <= {"198.51.100.0/24", "203.0.113.7/32"}
    for group in deployment.of_type("aws:ec2/securityGroup:SecurityGroup"):
        assert "ingress" not in group.inputs  # only the separate rules above


def test_no_allowed_cidrs_means_no_cidr_ingress(deploy):
    deployment = deploy("dask", infra={"allowed_cidrs": []})
    assert ingress_cidrs(deployment) == set()
    # the cluster still talks to itself
    assert len(deployment.of_type(INGRESS)) == 3


def test_world_ingress_only_when_the_config_says_so(deploy):
    deployment = deploy("conda", infra={"allowed_cidrs": [WORLD]})
    assert ingress_cidrs(deployment) == {WORLD}
    ssh = deployment.one(INGRESS).inputs
    assert (ssh["fromPort"], ssh["toPort"], ssh["ipProtocol"]) == (22, 22, "tcp")


def test_dask_ports(deploy):
    deployment = deploy("dask")
    rules = {r.name.removeprefix("ramp-iris_dask-dask-"): r.inputs
             for r in deployment.of_type(INGRESS)}
    assert rules["scheduler-198-51-100-0-24"]["fromPort"] == 8786
    assert rules["scheduler-group"]["referencedSecurityGroupId"] == (
        "ramp-iris_dask-dask-workers-sg-id")
    assert rules["workers-group"]["referencedSecurityGroupId"] == (
        "ramp-iris_dask-dask-scheduler-sg-id")
    assert (rules["workers-group"]["fromPort"], rules["workers-group"]["toPort"]) == (9000, 9001)
    assert not [name for name in rules if name.startswith("dashboard")], "closed by default"


def test_the_dask_dashboard_opens_only_to_the_cidrs_asked(deploy):
    deployment = deploy("dask", infra={"dask_cluster": {"n_workers": 3,
                                                         "dashboard_cidrs": ["192.0.2.0/28"]}})
    rules = {r.name.removeprefix("ramp-iris_dask-dask-"): r.inputs
             for r in deployment.of_type(INGRESS)}
    assert [name for name in rules if name.startswith("dashboard")] == ["dashboard-192-0-2-0-28"]
    assert rules["dashboard-192-0-2-0-28"]["fromPort"] == 8787
    scheduler = deployment.named("ramp-iris_dask-dask-scheduler").inputs["userData"]
    assert "--dashboard-address :8787" in scheduler


def test_the_data_password_is_only_in_its_ssm_parameter(deploy, osf_credentials):
    OSF_USERNAME, OSF_PASSWORD = osf_credentials
    deployment = deploy("aws", osf=True)
    holders = [r for r in deployment.resources if OSF_PASSWORD in walk(r.inputs)]
    assert [r.typ for r in holders] == [PARAMETER]
    parameter = holders[0].inputs
    assert parameter["type"] == "SecureString"
    assert parameter["name"] == "/ramp-fleet/iris_aws/osf-password"
    document = deployment.one(COMPONENT).inputs["data"]
    assert "/ramp-fleet/iris_aws/osf-password" in document
    assert "--with-decryption" in document
    assert OSF_USERNAME not in document
    policy = json.loads(deployment.one("aws:iam/rolePolicy:RolePolicy").inputs["policy"])
    ssm = next(s for s in policy["Statement"] if s["Action"] == ["ssm:GetParameter"])
    assert len(ssm["Resource"]) == 2


def test_private_keys_stay_out_of_instance_inputs(deploy):
    deployment = deploy("dask")
    for instance in deployment.of_type(INSTANCE):
        assert "PRIVATE KEY" not in walk(instance.inputs)
        assert "BEGIN CERTIFICATE" in instance.inputs["userData"]
    keys = [r for r in deployment.resources
            if r.typ.startswith("aws:") and "PRIVATE KEY" in walk(r.inputs)]
    assert {r.typ for r in keys} == {PARAMETER}


def test_only_one_credential_is_an_error(write_config):
    path = write_config("aws")
    settings = StackSettings(event_config=path, osf_password=pulumi.Output.secret("x"))
    with pytest.raises(UsageError, match="osfUsername"):
        run_program(settings)


def test_stack_region_must_agree_with_the_config(write_config):
    path = write_config("aws")
    with pytest.raises(UsageError, match="aws:region"):
        run_program(StackSettings(event_config=path, region="us-east-1"))
    assert run_program(StackSettings(event_config=path, region="eu-west-1")).outputs


def test_region_is_required(write_config):
    path = write_config("conda", infra={"region": None})
    with pytest.raises(UsageError, match=r"infra\.region"):
        run_program(StackSettings(event_config=path))
    assert run_program(StackSettings(event_config=path, region="ca-central-1")).outputs[
        "region"] == "ca-central-1"


# -- worker access ------------------------------------------------------------------


def test_generated_key_is_a_secret_output_with_a_write_command(deploy):
    deployment = deploy("conda")
    assert deployment.one("tls:index/privateKey:PrivateKey").inputs["algorithm"] == "ED25519"
    key_pair = deployment.one("aws:ec2/keyPair:KeyPair").inputs
    assert key_pair["publicKey"].startswith("ssh-ed25519 ")
    assert "OPENSSH PRIVATE KEY" in deployment.outputs["sshPrivateKey"]
    command = deployment.outputs["writeSshKeyCommand"]
    assert "pulumi stack output --show-secrets sshPrivateKey >" in command
    assert command.endswith("/.ssh/ramp-iris_conda)")


def test_organiser_public_key_is_imported(deploy, tmp_path):
    public = tmp_path / "organiser.pub"
    public.write_text("ssh-ed25519 AAAAORGANISER organiser@laptop\n")
    deployment = deploy("conda", infra={"public_key_path": str(public)})
    assert not deployment.of_type("tls:index/privateKey:PrivateKey")
    assert deployment.one("aws:ec2/keyPair:KeyPair").inputs["publicKey"] == (
        "ssh-ed25519 AAAAORGANISER organiser@laptop")
    assert "sshPrivateKey" not in deployment.outputs


def test_key_path_pub_is_used_for_aws_workers(deploy, tmp_path):
    key = tmp_path / "iris-key.pem"
    key.write_text("private")
    key.chmod(0o600)
    (tmp_path / "iris-key.pem.pub").write_text("ssh-rsa AAAAFROMKEYPATH\n")
    deployment = deploy("aws", worker={"key_path": str(key)})
    assert deployment.one("aws:ec2/keyPair:KeyPair").inputs["publicKey"] == "ssh-rsa AAAAFROMKEYPATH"


# -- dask cluster ---------------------------------------------------------------------


def test_dask_hosts_boot_the_newest_event_ami(deploy, mocks):
    deployment = deploy("dask")
    ami_calls = [c for c in mocks.calls if c.token == "aws:ec2/getAmi:getAmi"]
    assert len(ami_calls) == 1
    args = ami_calls[0].args
    assert args["mostRecent"] is True and args["owners"] == ["self"]
    assert {"name": "name", "values": ["ramp-iris_dask *"]} in args["filters"]
    assert {i.inputs["ami"] for i in deployment.of_type(INSTANCE)} == {MOCK_AMI_ID}


def test_dask_user_data_starts_tls_scheduler_and_workers(deploy):
    deployment = deploy("dask")
    scheduler = deployment.named("ramp-iris_dask-dask-scheduler").inputs["userData"]
    assert ("ExecStart=/opt/conda/envs/ramp-iris/bin/dask scheduler --protocol tls --port 8786 "
            "--dashboard-address 127.0.0.1:8787") in scheduler
    assert "--name /ramp-fleet/iris_dask/dask/scheduler-key --with-decryption" in scheduler
    worker = deployment.named("ramp-iris_dask-dask-worker-2").inputs["userData"]
    assert "/opt/conda/envs/ramp-iris/bin/dask worker tls://10.0.0.10:8786" in worker
    assert "--tls-key /etc/ramp-fleet/dask/key.pem" in worker
    assert "/ramp-fleet/iris_dask/dask/worker-key" in worker
    for user_data in (scheduler, worker):
        assert '\nEnvironment="DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False"\n' in user_data
    # Only the scheduler refuses to run a client's code (run_on_scheduler, client.run...).
    blocked = ('\nEnvironment="DASK_DISTRIBUTED__SCHEDULER__BLOCKED_HANDLERS=[\\"run_function\\", '
               '\\"feed\\", \\"broadcast\\"')
    assert blocked in scheduler and "BLOCKED_HANDLERS" not in worker


def test_each_dask_certificate_serves_its_role_only(deploy):
    deployment = deploy("dask")
    uses = {r.name.rsplit("-", 2)[-2]: r.inputs["allowedUses"]
            for r in deployment.of_type("tls:index/locallySignedCert:LocallySignedCert")}
    assert uses["client"] == ["digital_signature", "key_encipherment", "client_auth"], \
        "the dispatcher's key can never serve as a scheduler or a worker"
    for host in ("scheduler", "worker"):
        assert set(uses[host]) >= {"server_auth", "client_auth"}


def test_each_dask_host_role_reads_only_its_own_key(deploy):
    deployment = deploy("dask")
    prefix = "ramp-iris_dask-dask"
    for role in ("scheduler", "worker"):
        policy = json.loads(deployment.named(f"{prefix}-{role}-read-key").inputs["policy"])
        assert policy["Statement"] == [{
            "Effect": "Allow", "Action": ["ssm:GetParameter"],
            "Resource": [f"arn:aws:mock:eu-west-1:123456789012:{prefix}-{role}-key-parameter"]}]
        assert deployment.named(f"{prefix}-{role}-key-parameter").inputs["name"] == (
            f"/ramp-fleet/iris_dask/dask/{role}-key")
        profile = deployment.named(f"{prefix}-{role}-profile").inputs
        assert profile["name"] == f"ramp-iris_dask-dask-{role}s"
    hosts = {r.name: r.inputs["iamInstanceProfile"] for r in deployment.of_type(INSTANCE)}
    assert hosts[f"{prefix}-scheduler"] == "ramp-iris_dask-dask-schedulers"
    assert {hosts[f"{prefix}-worker-{i}"] for i in range(3)} == {"ramp-iris_dask-dask-workers"}
    assert "client" not in " ".join(str(r.inputs) for r in deployment.of_type(INSTANCE))


def test_dask_outputs(deploy):
    outputs = deploy("dask").outputs
    assert outputs["daskScheduler"] == "tls://203.0.113.10:8786"
    assert "BEGIN CERTIFICATE" in outputs["daskCaCert"]
    assert "MOCKramp-iris_dask-dask-client-cert" in outputs["daskClientCert"]
    assert "MOCKramp-iris_dask-dask-client-key" in outputs["daskClientKey"]


# -- __main__.py, as `pulumi up` runs it -------------------------------------------------


def test_main_reads_the_stack_config_and_exports(write_config, pulumi_config, mocks,
                                                 osf_credentials):
    OSF_USERNAME, OSF_PASSWORD = osf_credentials
    path = write_config("aws")
    pulumi_config({"ramp-fleet:eventConfig": str(path),
                   "ramp-fleet:osfUsername": OSF_USERNAME,
                   "ramp-fleet:osfPassword": OSF_PASSWORD},
                  ["ramp-fleet:osfUsername", "ramp-fleet:osfPassword"])
    mocks.reset()

    @pulumi.runtime.test
    def program() -> None:
        runpy.run_path(str(ROOT / "infra" / "__main__.py"), run_name="__main__")

    program()
    parameters = {r.inputs["name"] for r in mocks.resources if r.typ == PARAMETER}
    assert parameters == {"/ramp-fleet/iris_aws/osf-username", "/ramp-fleet/iris_aws/osf-password"}
    assert any(r.typ == PIPELINE for r in mocks.resources)


def test_main_turns_config_errors_into_one_message(tmp_path, pulumi_config):
    bad = tmp_path / "bad.yml"
    bad.write_text("ramp: {problem_name: iris}\nworker: {worker_type: conda}\n")
    pulumi_config({"ramp-fleet:eventConfig": str(bad)}, [])
    with pytest.raises(pulumi.RunError, match=r"ramp\.event_name: is required"):
        runpy.run_path(str(ROOT / "infra" / "__main__.py"), run_name="__main__")
