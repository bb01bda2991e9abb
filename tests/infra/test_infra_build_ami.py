"""`ramp-fleet build-ami` against botocore's Stubber (requests checked against the API model)."""

from __future__ import annotations

import botocore.session
import pytest
from botocore.stub import ANY, Stubber

from ramp_fleet.cli import image as image_cli
from ramp_fleet.cli import main
from ramp_fleet.config import load_event_config
from ramp_fleet.image.build import (
    ImageBuildError,
    build_ami,
    find_pipeline,
    format_elapsed,
    watch_build,
)
from ramp_fleet.names import EventNames

REGION = "eu-west-1"
PIPELINE_ARN = f"arn:aws:imagebuilder:{REGION}:123456789012:image-pipeline/ramp-iris_aws-pipeline"
IMAGE_ARN = (f"arn:aws:imagebuilder:{REGION}:123456789012:image/ramp-iris_aws-recipe/"
             "1.0.42/1")


@pytest.fixture
def client():
    session = botocore.session.get_session()
    client = session.create_client("imagebuilder", region_name=REGION,
                                   aws_access_key_id="testing", aws_secret_access_key="testing")
    with Stubber(client) as stubber:
        client.stubber = stubber
        yield client
        stubber.assert_no_pending_responses()


@pytest.fixture
def event(write_config):
    return load_event_config(write_config("aws"), runtime_files=False)


def expect_pipeline(client, found: bool = True) -> None:
    listing = [{"arn": PIPELINE_ARN, "name": "ramp-iris_aws-pipeline"}] if found else []
    client.stubber.add_response(
        "list_image_pipelines", {"imagePipelineList": listing},
        {"filters": [{"name": "name", "values": ["ramp-iris_aws-pipeline"]}]})


def expect_start(client) -> None:
    client.stubber.add_response(
        "start_image_pipeline_execution",
        {"imageBuildVersionArn": IMAGE_ARN, "clientToken": "token", "requestId": "r"},
        {"imagePipelineArn": PIPELINE_ARN, "clientToken": ANY})


def expect_state(client, status: str, **image) -> None:
    client.stubber.add_response(
        "get_image",
        {"image": {"arn": IMAGE_ARN, "state": {"status": status, **image.pop("state", {})},
                   **image}},
        {"imageBuildVersionArn": IMAGE_ARN})


def test_success_reports_progress_and_the_ami(client, event):
    expect_pipeline(client)
    expect_start(client)
    for status in ("PENDING", "BUILDING", "BUILDING", "TESTING", "DISTRIBUTING"):
        expect_state(client, status)
    expect_state(client, "AVAILABLE", outputResources={"amis": [
        {"region": "us-east-1", "image": "ami-0other", "name": "elsewhere"},
        {"region": REGION, "image": "ami-0123456789abcdef0",
         "name": "iris-ami 2025-01-01T10-00-00.000Z"},
    ]})
    lines: list[str] = []
    result = build_ami(event, client, echo=lines.append, poll_interval=0)
    assert result is not None and result.succeeded
    assert (result.ami_id, result.ami_name) == ("ami-0123456789abcdef0",
                                                "iris-ami 2025-01-01T10-00-00.000Z")
    assert lines[0] == f"started image build {IMAGE_ARN} (pipeline ramp-iris_aws-pipeline)"
    states = [line.split("] ", 1)[1] for line in lines[1:-1]]
    assert states == ["PENDING", "BUILDING", "TESTING", "DISTRIBUTING", "AVAILABLE"]
    assert all(line.startswith("[") and "s]" in line for line in lines[1:-1])
    assert lines[-1].startswith(
        "AMI ami-0123456789abcdef0 (iris-ami 2025-01-01T10-00-00.000Z) is available in eu-west-1")


def test_failure_gives_the_reason_and_the_logs(client, event):
    expect_pipeline(client)
    expect_start(client)
    expect_state(client, "BUILDING")
    expect_state(
        client, "FAILED", state={"reason": "Step CreateEnvironment failed: exit code 1"},
        imageRecipe={"name": "ramp-iris_aws-recipe"},
        infrastructureConfiguration={"logging": {"s3Logs": {
            "s3BucketName": "iris-aws-build-logs", "s3KeyPrefix": "ramp-iris_aws-pipeline"}}},
    )
    with pytest.raises(ImageBuildError) as error:
        build_ami(event, client, echo=lambda line: None, poll_interval=0)
    message = str(error.value)
    assert message.startswith("image build FAILED after 0s: Step CreateEnvironment failed")
    assert "CloudWatch log group /aws/imagebuilder/ramp-iris_aws-recipe (region eu-west-1)" in message
    assert "logs: s3://iris-aws-build-logs/ramp-iris_aws-pipeline/" in message
    assert error.value.exit_code != 0


def test_cancelled_without_details_still_names_the_log_group(client, event):
    expect_state(client, "CANCELLED")
    result = watch_build(client, IMAGE_ARN, EventNames.of(event), poll_interval=0)
    assert result.status == "CANCELLED" and not result.succeeded
    assert result.reason == "no reason given"
    assert result.logs == ("CloudWatch log group /aws/imagebuilder/ramp-iris_aws-recipe "
                           "(region eu-west-1)",)


def test_pipeline_not_found(client, event):
    expect_pipeline(client, found=False)
    with pytest.raises(ImageBuildError, match="no image pipeline named 'ramp-iris_aws-pipeline' "
                                              "in region eu-west-1; create it with `pulumi up`"):
        build_ami(event, client, echo=lambda line: None, poll_interval=0)


def test_find_pipeline_pages_and_matches_the_exact_name(client):
    client.stubber.add_response(
        "list_image_pipelines",
        {"imagePipelineList": [{"arn": "arn:other", "name": "ramp-iris_aws-pipeline-old"}],
         "nextToken": "page2"},
        {"filters": [{"name": "name", "values": ["ramp-iris_aws-pipeline"]}]})
    client.stubber.add_response(
        "list_image_pipelines", {"imagePipelineList": [
            {"arn": PIPELINE_ARN, "name": "ramp-iris_aws-pipeline"}]},
        {"filters": [{"name": "name", "values": ["ramp-iris_aws-pipeline"]}],
         "nextToken": "page2"})
    assert find_pipeline(client, "ramp-iris_aws-pipeline") == PIPELINE_ARN


def test_no_wait_returns_after_starting(client, event):
    expect_pipeline(client)
    expect_start(client)
    lines: list[str] = []
    assert build_ami(event, client, wait=False, echo=lines.append) is None
    assert len(lines) == 1


def test_watching_gives_up_at_the_timeout(event):
    class AlwaysBuilding:  # the Stubber needs a known number of polls; this does not
        meta = type("Meta", (), {"region_name": REGION})()
        polls = 0

        def get_image(self, imageBuildVersionArn):
            self.polls += 1
            return {"image": {"arn": imageBuildVersionArn, "state": {"status": "BUILDING"}}}

    client = AlwaysBuilding()
    with pytest.raises(ImageBuildError, match="still BUILDING after 0s; it goes on in AWS: arn:"):
        watch_build(client, IMAGE_ARN, EventNames.of(event), poll_interval=0.01, timeout=0.05)
    assert client.polls >= 2


def test_cli_exit_codes(client, write_config, monkeypatch, capsys):
    monkeypatch.setattr(image_cli.build, "imagebuilder_client", lambda event: client)
    config = str(write_config("aws"))
    expect_pipeline(client)
    expect_start(client)
    expect_state(client, "FAILED", state={"reason": "test phase failed"})
    with pytest.raises(SystemExit) as exit_info:
        main(["build-ami", config, "--poll-interval", "0"])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.out
    assert "error: image build FAILED after 0s: test phase failed" in captured.err
    assert "error: logs: CloudWatch log group /aws/imagebuilder/ramp-iris_aws-recipe" in captured.err

    expect_pipeline(client)
    expect_start(client)
    main(["build-ami", config, "--no-wait"])
    assert "started image build" in capsys.readouterr().out


def test_client_uses_the_event_region_and_profile(event, write_config):
    from ramp_fleet.image.build import imagebuilder_client

    client = imagebuilder_client(event)
    assert client.meta.region_name == "eu-west-1"
    assert client.meta.service_model.service_name == "imagebuilder"


@pytest.mark.parametrize(("seconds", "text"), [(5, "5s"), (65, "1m05s"), (3725, "1h02m05s")])
def test_format_elapsed(seconds, text):
    assert format_elapsed(seconds) == text


def test_cli_test_needs_the_build_to_be_watched(write_config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["build-ami", str(write_config("aws")), "--no-wait", "--test"])
    assert exit_info.value.code == 2
    assert "--test needs the build's AMI" in capsys.readouterr().err
