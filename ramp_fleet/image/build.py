"""``ramp-fleet build-ami``: run the event's image pipeline and watch the build.

The pipeline is found by the name :class:`~ramp_fleet.names.EventNames`
gives it, so this needs the event config only, never Pulumi outputs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ramp_fleet.config import EventConfig
from ramp_fleet.config.sections import AWSWorkerSection
from ramp_fleet.errors import RampFleetError
from ramp_fleet.names import EventNames, event_region
from ramp_fleet.waiting import Backoff, WaitTimeout

#: Image states, in the order a build goes through them.
PROGRESS_STATES = (
    "PENDING", "CREATING", "BUILDING", "TESTING", "DISTRIBUTING", "INTEGRATING", "AVAILABLE",
)
FAILED_STATES = frozenset({"FAILED", "CANCELLED", "DEPRECATED", "DELETED", "DISABLED"})
DEFAULT_POLL_INTERVAL = 30.0
DEFAULT_TIMEOUT = 4 * 3600.0

StateCallback = Callable[[str, float], None]


class ImageBuildError(RampFleetError):
    """The pipeline is missing, or the build failed, was cancelled or took too long."""


@dataclass(frozen=True)
class BuildResult:
    image_arn: str
    status: str
    elapsed: float
    ami_id: str | None = None
    ami_name: str | None = None
    region: str | None = None
    reason: str | None = None
    logs: tuple[str, ...] = ()

    @property
    def succeeded(self) -> bool:
        return self.status == "AVAILABLE"


def imagebuilder_client(event: EventConfig) -> Any:
    """An Image Builder client with the AWS worker's credentials (default chain if none)."""
    from ramp_fleet.aws.session import CLIENT_CONFIG, make_session  # boto3: slow to import

    worker = event.worker if isinstance(event.worker, AWSWorkerSection) else AWSWorkerSection()
    session = make_session(worker.model_copy(update={"region_name": event_region(event)}))
    return session.client("imagebuilder", config=CLIENT_CONFIG)


def format_elapsed(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def find_pipeline(client: Any, name: str) -> str:
    """The ARN of the image pipeline called ``name``."""
    pages = client.get_paginator("list_image_pipelines").paginate(
        filters=[{"name": "name", "values": [name]}])
    for page in pages:
        for pipeline in page.get("imagePipelineList", []):
            if pipeline.get("name") == name:
                return str(pipeline["arn"])
    raise ImageBuildError(
        f"no image pipeline named {name!r} in region {client.meta.region_name}; "
        "create it with `pulumi up` first (see the README's infrastructure section)"
    )


def start_build(client: Any, pipeline_arn: str, client_token: str | None = None) -> str:
    """Start one execution of the pipeline; returns the image build version ARN."""
    response = client.start_image_pipeline_execution(
        imagePipelineArn=pipeline_arn, clientToken=client_token or str(uuid.uuid4())
    )
    return str(response["imageBuildVersionArn"])


def log_locations(image: Mapping[str, Any], names: EventNames, region: str) -> tuple[str, ...]:
    """Where a build's logs are: its CloudWatch log group, and the S3 prefix if any."""
    recipe = image.get("imageRecipe", {}).get("name") or names.recipe
    group = image.get("loggingConfiguration", {}).get("logGroupName") or f"/aws/imagebuilder/{recipe}"
    locations = [f"CloudWatch log group {group} (region {region})"]
    s3 = image.get("infrastructureConfiguration", {}).get("logging", {}).get("s3Logs", {})
    if s3.get("s3BucketName"):
        prefix = s3.get("s3KeyPrefix", "").strip("/")
        locations.append(f"s3://{s3['s3BucketName']}/{prefix + '/' if prefix else ''}")
    return tuple(locations)


def watch_build(
    client: Any,
    image_arn: str,
    names: EventNames,
    *,
    on_state: StateCallback = lambda state, elapsed: None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    timeout: float = DEFAULT_TIMEOUT,
) -> BuildResult:
    """Poll the build until it ends; ``on_state`` hears every change of state."""
    region = str(client.meta.region_name)
    started = time.monotonic()
    last: str | None = None
    waits = Backoff(deadline=timeout, first=poll_interval, cap=poll_interval, what="the image build")
    try:
        for _attempt in waits:
            image = client.get_image(imageBuildVersionArn=image_arn)["image"]
            status = str(image.get("state", {}).get("status", "PENDING"))
            elapsed = time.monotonic() - started
            if status != last:
                on_state(status, elapsed)
                last = status
            if status == "AVAILABLE":
                amis = image.get("outputResources", {}).get("amis", [])
                ami = next((a for a in amis if a.get("region") == region), amis[0] if amis else {})
                return BuildResult(image_arn, status, elapsed, ami.get("image"), ami.get("name"),
                                   ami.get("region", region))
            if status in FAILED_STATES:
                reason = image.get("state", {}).get("reason") or "no reason given"
                return BuildResult(image_arn, status, elapsed, region=region, reason=reason,
                                   logs=log_locations(image, names, region))
    except WaitTimeout:
        raise ImageBuildError(
            f"the image build is still {last or 'PENDING'} after {format_elapsed(timeout)}; "
            f"it goes on in AWS: {image_arn}"
        ) from None
    raise AssertionError("unreachable: Backoff ends by raising")  # pragma: no cover


def build_ami(
    event: EventConfig,
    client: Any,
    *,
    wait: bool = True,
    echo: Callable[[str], None] = print,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    timeout: float = DEFAULT_TIMEOUT,
) -> BuildResult | None:
    """Start the event's image pipeline; unless ``wait`` is false, follow it to the end.

    Raises :class:`ImageBuildError` when the build does not end with an AMI.
    """
    names = EventNames.of(event)
    pipeline_arn = find_pipeline(client, names.pipeline)
    image_arn = start_build(client, pipeline_arn)
    echo(f"started image build {image_arn} (pipeline {names.pipeline})")
    if not wait:
        return None

    def show(state: str, elapsed: float) -> None:
        echo(f"[{format_elapsed(elapsed):>9}] {state}")

    result = watch_build(client, image_arn, names, on_state=show,
                         poll_interval=poll_interval, timeout=timeout)
    if not result.succeeded:
        lines = [f"image build {result.status} after {format_elapsed(result.elapsed)}: "
                 f"{result.reason}", *(f"logs: {where}" for where in result.logs)]
        raise ImageBuildError("\n".join(lines))
    echo(f"AMI {result.ami_id} ({result.ami_name}) is available in {result.region} "
         f"after {format_elapsed(result.elapsed)}")
    return result
