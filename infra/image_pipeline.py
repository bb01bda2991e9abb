"""The EC2 Image Builder pipeline that bakes the event's AMI.

IAM role and instance profile for the build instance, the private data's
credentials in SSM Parameter Store, an optional S3 bucket for build logs,
the component (its document rendered by ramp_fleet.image.document), the
recipe, the infrastructure and distribution configurations and the pipeline
itself (no schedule: ``ramp-fleet build-ami`` starts it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from ramp_fleet.names import EventNames

MANAGED_POLICIES = {
    "imagebuilder": "arn:aws:iam::aws:policy/EC2InstanceProfileForImageBuilder",
    "ssm": "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
}
EC2_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                   "Principal": {"Service": "ec2.amazonaws.com"}}],
}
#: Root device of Ubuntu AMIs.
ROOT_DEVICE = "/dev/sda1"


def content_version(*parts: str) -> str:
    """A semantic version that changes with the content.

    Components and recipes are immutable: a changed document needs a new
    version, and deriving it from the content lets Pulumi replace them
    without a name/version clash.
    """
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
    return f"1.0.{int(digest[:7], 16)}"


def s3_read_statements(location: str) -> list[dict[str, Any]]:
    """Read access to ``s3://bucket/prefix`` and nothing else."""
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    objects = f"arn:aws:s3:::{bucket}/{prefix + '/' if prefix else ''}*"
    listing: dict[str, Any] = {"Effect": "Allow", "Action": "s3:ListBucket",
                               "Resource": f"arn:aws:s3:::{bucket}"}
    if prefix:
        listing["Condition"] = {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}
    return [listing, {"Effect": "Allow", "Action": "s3:GetObject", "Resource": objects}]


@dataclass
class ImagePipelineArgs:
    names: EventNames
    region: str
    #: The AWSTOE component document (no secret in it).
    document: str
    parent_image: str
    volume_size: int
    instance_types: Sequence[str]
    security_group_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    tags: dict[str, str]
    subnet_id: str | None = None
    #: Create this bucket and send the build logs to it.
    log_bucket: str | None = None
    #: ``s3://bucket/prefix`` the build reads the data from.
    data_s3_location: str | None = None
    #: SSM parameter name -> secret value, read by the build step (OSF credentials).
    build_secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)


class ImagePipeline(pulumi.ComponentResource):
    pipeline_arn: pulumi.Output[str]
    pipeline_name: pulumi.Output[str]

    def __init__(self, name: str, args: ImagePipelineArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ramp-fleet:aws:ImagePipeline", name, None, opts)
        self._name, self._args = name, args
        self._child = pulumi.ResourceOptions(parent=self)
        role = self._build_role()
        statements: list[Any] = [*self._secret_statements(), *self._data_statements()]
        logging = self._log_bucket(statements)
        if statements:
            aws.iam.RolePolicy(
                f"{name}-read", role=role.id,
                policy=pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": statements}),
                opts=self._child,
            )
        profile = aws.iam.InstanceProfile(f"{name}-profile", name=args.names.build_role,
                                          role=role.name, tags=args.tags, opts=self._child)
        pipeline = aws.imagebuilder.ImagePipeline(
            f"{name}-pipeline", name=args.names.pipeline,
            description=f"AMI of the RAMP event {args.names.event}; run by `ramp-fleet build-ami`",
            image_recipe_arn=self._recipe().arn,
            infrastructure_configuration_arn=self._infrastructure(profile, logging).arn,
            distribution_configuration_arn=self._distribution().arn,
            enhanced_image_metadata_enabled=True,
            image_tests_configuration={"image_tests_enabled": True, "timeout_minutes": 120},
            status="ENABLED", tags=args.tags, opts=self._child,
        )
        self.pipeline_arn = pipeline.arn
        self.pipeline_name = pipeline.name
        self.register_outputs({
            "pipeline_arn": self.pipeline_arn,
            "pipeline_name": self.pipeline_name,
            "role_arn": role.arn,
            "log_bucket": self.log_bucket,
        })

    # -- the build instance's identity ---------------------------------------------------

    def _build_role(self) -> aws.iam.Role:
        name, names = self._name, self._args.names
        role = aws.iam.Role(
            f"{name}-role", name=names.build_role,
            description=f"Image Builder instances of the RAMP event {names.event}",
            assume_role_policy=pulumi.Output.json_dumps(EC2_TRUST_POLICY), tags=self._args.tags,
            opts=self._child,
        )
        for label, arn in MANAGED_POLICIES.items():
            aws.iam.RolePolicyAttachment(f"{name}-role-{label}", role=role.name, policy_arn=arn,
                                         opts=self._child)
        return role

    def _secret_statements(self) -> list[dict[str, Any]]:
        """The private data's credentials in SSM, readable by the build (never in the document)."""
        names, tags = self._args.names, self._args.tags
        parameter_arns = [
            aws.ssm.Parameter(
                f"{self._name}-secret-{parameter.rsplit('/', 1)[-1]}", name=parameter,
                type="SecureString", value=pulumi.Output.secret(value),
                description=f"read by the AMI build of {names.event}", tags=tags, opts=self._child,
            ).arn
            for parameter, value in self._args.build_secrets.items()
        ]
        if not parameter_arns:
            return []
        return [{"Effect": "Allow", "Action": ["ssm:GetParameter"], "Resource": parameter_arns}]

    def _data_statements(self) -> list[dict[str, Any]]:
        location = self._args.data_s3_location
        return s3_read_statements(location) if location else []

    def _log_bucket(self, statements: list[Any]) -> Any:
        """A private bucket for the build logs when asked (and the right to write there)."""
        self.log_bucket: pulumi.Output[str] | None = None
        args = self._args
        if not args.log_bucket:
            return None
        bucket = aws.s3.Bucket(f"{self._name}-logs", bucket=args.log_bucket, force_destroy=True,
                               tags=args.tags, opts=self._child)
        aws.s3.BucketPublicAccessBlock(
            f"{self._name}-logs-private", bucket=bucket.id, block_public_acls=True,
            block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True,
            opts=self._child,
        )
        pipeline = args.names.pipeline
        statements.append({"Effect": "Allow", "Action": "s3:PutObject",
                           "Resource": bucket.arn.apply(lambda arn: f"{arn}/{pipeline}/*")})
        self.log_bucket = bucket.bucket
        return {"s3_logs": {"s3_bucket_name": bucket.bucket, "s3_key_prefix": pipeline}}

    # -- what the pipeline builds, on what, and where it sends it -----------------------

    def _recipe(self) -> aws.imagebuilder.ImageRecipe:
        args, names = self._args, self._args.names
        component = aws.imagebuilder.Component(
            f"{self._name}-component", name=names.component, platform="Linux",
            version=content_version(args.document), data=args.document,
            description=f"AMI build steps of the RAMP event {names.event}", tags=args.tags,
            opts=self._child,
        )
        return aws.imagebuilder.ImageRecipe(
            f"{self._name}-recipe", name=names.recipe,
            version=content_version(args.document, args.parent_image, str(args.volume_size)),
            parent_image=args.parent_image,
            components=[{"component_arn": component.arn}],
            working_directory="/tmp",  # noqa: S108 - on the build instance
            block_device_mappings=[{
                "device_name": ROOT_DEVICE,
                "ebs": {"volume_size": args.volume_size, "volume_type": "gp3",
                        "delete_on_termination": "true"},
            }],
            tags=args.tags, opts=self._child,
        )

    def _infrastructure(self, profile: aws.iam.InstanceProfile,
                        logging: Any) -> aws.imagebuilder.InfrastructureConfiguration:
        args = self._args
        return aws.imagebuilder.InfrastructureConfiguration(
            f"{self._name}-infrastructure", name=args.names.infrastructure,
            instance_profile_name=profile.name, instance_types=list(args.instance_types),
            security_group_ids=args.security_group_ids, subnet_id=args.subnet_id,
            terminate_instance_on_failure=True, logging=logging,
            instance_metadata_options={"http_tokens": "required", "http_put_response_hop_limit": 2},
            resource_tags=args.tags, tags=args.tags, opts=self._child,
        )

    def _distribution(self) -> aws.imagebuilder.DistributionConfiguration:
        args, names = self._args, self._args.names
        return aws.imagebuilder.DistributionConfiguration(
            f"{self._name}-distribution", name=names.distribution,
            distributions=[{
                "region": args.region,
                "ami_distribution_configuration": {
                    "name": names.ami_name,
                    "description": f"RAMP event {names.event}",
                    "ami_tags": {**args.tags, "Name": names.ami_base},
                },
            }],
            tags=args.tags, opts=self._child,
        )
