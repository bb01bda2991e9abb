"""Which image the AWS worker boots: newest version, own account, numeric order."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from ramp_fleet.aws.ami import Image, ImageNotFound, image_version, rank, resolve_image
from ramp_fleet.cli import cli
from tests.fixtures.aws import AWSEventFactory
from tests.fixtures.moto_ec2 import MotoServer, publish_foreign_images, register_image

ARN = "arn:aws:imagebuilder:us-east-1:123456789012:image/ramp-iris/{}/{}"


def image(name: str, created: str = "2024-01-01T00:00:00.000Z", **tags: str) -> Image:
    return Image.from_api({
        "ImageId": f"ami-{abs(hash((name, created))) % 10**8:08d}", "Name": name,
        "OwnerId": "123456789012", "State": "available", "CreationDate": created,
        "Tags": [{"Key": key, "Value": value} for key, value in tags.items()],
    })


def test_versions_compare_as_numbers_builder_tag_first() -> None:
    assert image_version({"Name": "ramp-iris 1.10.0"}) == (1, 10, 0, 0)
    assert image_version({"Name": "ramp-iris 1.9.0/3"}) == (1, 9, 0, 3)
    assert image_version({"Name": "ramp-iris 2024-01-31T12-00-00Z",
                          "Tags": [{"Key": "Ec2ImageBuilderArn", "Value": ARN.format("1.2.10", 4)}]}
                         ) == (1, 2, 10, 4)
    assert image_version({"Name": "ramp-iris"}) is None
    ordered = rank([image("ramp-iris 1.9.0"), image("ramp-iris 1.10.0"),
                    image("ramp-iris 1.10.0/2"), image("ramp-iris 1.2.0")])
    assert [i.name for i in ordered] == ["ramp-iris 1.10.0/2", "ramp-iris 1.10.0",
                                         "ramp-iris 1.9.0", "ramp-iris 1.2.0"]


def test_same_version_newest_creation_date_wins_and_unversioned_lose() -> None:
    older = image("ramp-iris 2024 build", "2024-01-01T00:00:00.000Z",
                  Ec2ImageBuilderArn=ARN.format("1.0.0", 1))
    newer = image("ramp-iris 2024 rebuild", "2024-03-01T00:00:00.000Z",
                  Ec2ImageBuilderArn=ARN.format("1.0.0", 1))
    bare = image("ramp-iris", "2025-01-01T00:00:00.000Z")
    assert [i.name for i in rank([older, bare, newer])] == [newer.name, older.name, bare.name]
    assert newer.version_text == "1.0.0/1"


def test_the_newest_own_image_is_chosen_not_a_newer_foreign_one(
    aws: MotoServer, ec2: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_foreign_images(monkeypatch, aws, [
        {"ami_id": "ami-0f0e0d0c0b0a09080", "name": "ramp-iris 7.0.0", "owner_id": "111122223333",
         "creation_date": "2030-01-01T00:00:00.000Z"},
    ])
    foreign = "ami-0f0e0d0c0b0a09080"
    register_image(ec2, "ramp-iris 1.9.0")
    mine = register_image(ec2, "ramp-iris 1.10.0")
    register_image(ec2, "ramp-iris 1.2.0")
    register_image(ec2, "other-event 9.0.0")
    tagged = register_image(ec2, "ramp-iris nightly",
                            {"Ec2ImageBuilderArn": ARN.format("1.9.5", 1)})

    choice = resolve_image(ec2, image_id=None, name_prefix="ramp-iris", owners=["self"])
    assert choice.chosen.image_id == mine
    # the Image Builder tag says 1.9.5/1: above 1.9.0 although the name has no version
    assert [i.name for i in choice.runners_up] == ["ramp-iris nightly", "ramp-iris 1.9.0",
                                                   "ramp-iris 1.2.0"]
    assert choice.runners_up[0].image_id == tagged

    trusted = resolve_image(ec2, image_id=None, name_prefix="ramp-iris",
                            owners=["self", "111122223333"])
    assert trusted.chosen.image_id == foreign
    assert trusted.chosen.owner == "111122223333"


def test_nothing_found_says_what_the_look_up_saw(ec2: Any) -> None:
    register_image(ec2, "other-event 1.0.0")
    with pytest.raises(ImageNotFound) as error:
        resolve_image(ec2, image_id=None, name_prefix="ramp-iris", owners=["self"])
    message = str(error.value)
    assert "name=ramp-iris*" in message and "owners=self" in message
    assert "state=available" in message and "saw no image" in message


def test_a_pinned_image_is_used_as_is(ec2: Any) -> None:
    pinned = register_image(ec2, "ramp-iris 1.0.0")
    register_image(ec2, "ramp-iris 2.0.0")
    assert resolve_image(ec2, image_id=pinned, name_prefix="ramp-iris",
                         owners=["self"]).chosen.image_id == pinned
    with pytest.raises(ImageNotFound, match="ami-12345678"):
        resolve_image(ec2, image_id="ami-12345678", name_prefix=None, owners=["self"])


def test_ami_command_prints_the_choice_and_runners_up(
    aws_event: AWSEventFactory, image_id: str
) -> None:
    event = aws_event()
    result = CliRunner().invoke(cli, ["ami", str(event.path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    chosen = next(line for line in lines if line.startswith("chosen"))
    assert image_id in chosen and "1.10.0/0" in chosen and "ramp-iris 1.10.0" in chosen
    assert "ramp-iris 1.9.0" in result.output and "ramp-iris 1.2.0" in result.output
    assert result.output.index("1.9.0") < result.output.index("1.2.0")


def test_same_version_the_latest_build_date_wins_in_ec2(
    aws: MotoServer, ec2: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = ec2.describe_security_groups()["SecurityGroups"][0]["OwnerId"]
    publish_foreign_images(monkeypatch, aws, [
        {"ami_id": "ami-00000000000000001", "name": "ramp-iris 1.0.0 a", "owner_id": account,
         "creation_date": "2024-05-01T00:00:00.000Z"},
        {"ami_id": "ami-00000000000000002", "name": "ramp-iris 1.0.0 b", "owner_id": account,
         "creation_date": "2024-06-01T00:00:00.000Z"},
        {"ami_id": "ami-00000000000000003", "name": "ramp-iris 1.0.0 c", "owner_id": account,
         "creation_date": "2024-04-01T00:00:00.000Z"},
    ])
    choice = resolve_image(ec2, image_id=None, name_prefix="ramp-iris", owners=["self"])
    assert choice.chosen.image_id == "ami-00000000000000002"
    assert [i.image_id for i in choice.runners_up] == ["ami-00000000000000001",
                                                       "ami-00000000000000003"]
