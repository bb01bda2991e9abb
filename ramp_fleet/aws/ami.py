"""Which image to boot: a pinned id, or the newest version of a base name.

Images are those whose name starts with ``ami_image_name``, owned by this
account unless ``ami_owners`` says otherwise, in state ``available``. Newest
means highest Image Builder version (from the ``Ec2ImageBuilderArn`` tag, else
an ``x.y.z[/build]`` in the name, compared as numbers: 1.10.0 > 1.9.0), then
latest creation date.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from ramp_fleet.errors import RampFleetError

#: ``.../image/<recipe>/1.10.0/3`` at the end of an Image Builder image ARN.
_ARN_VERSION = re.compile(r"/(\d+(?:\.\d+)*)/(\d+)$")
_NAME_VERSION = re.compile(r"(?<![\d.])(\d+)\.(\d+)\.(\d+)(?:/(\d+))?")
BUILDER_TAG = "Ec2ImageBuilderArn"


class ImageNotFound(RampFleetError):
    """No image matches the config; the message says what the look-up saw."""


@dataclass(frozen=True)
class Image:
    image_id: str
    name: str
    owner: str
    state: str
    created: str
    version: tuple[int, ...] | None

    @property
    def version_text(self) -> str:
        if self.version is None:
            return "-"
        *numbers, build = self.version
        return ".".join(map(str, numbers)) + f"/{build}"

    def sort_key(self) -> tuple[tuple[int, ...], str]:
        return (self.version or (), self.created)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Image:
        return cls(
            image_id=data["ImageId"],
            name=data.get("Name") or "",
            owner=data.get("OwnerId") or "",
            state=data.get("State") or "",
            created=data.get("CreationDate") or "",
            version=image_version(data),
        )


def image_version(data: Mapping[str, Any]) -> tuple[int, ...] | None:
    """The image's version as numbers, build last (``1.10.0/2`` → ``(1, 10, 0, 2)``)."""
    tags = {tag["Key"]: tag["Value"] for tag in data.get("Tags") or []}
    match = _ARN_VERSION.search(tags.get(BUILDER_TAG, ""))
    if match:
        return (*map(int, match.group(1).split(".")), int(match.group(2)))
    found = _NAME_VERSION.search(data.get("Name") or "")
    if found:
        major, minor, patch, build = found.groups()
        return (int(major), int(minor), int(patch), int(build or 0))
    return None


def rank(images: Iterable[Image]) -> list[Image]:
    """Newest first."""
    return sorted(images, key=Image.sort_key, reverse=True)


@dataclass(frozen=True)
class ImageChoice:
    chosen: Image
    #: The other candidates, newest first.
    runners_up: tuple[Image, ...]
    description: str


def resolve_image(
    ec2: Any, *, image_id: str | None, name_prefix: str | None, owners: Sequence[str]
) -> ImageChoice:
    """The image the config asks for; raises :class:`ImageNotFound` with what was seen."""
    if image_id is not None:
        return _pinned(ec2, image_id)
    if name_prefix is None:
        raise ImageNotFound("worker.ami_image_name: is required (or pin worker.ami_image_id)")
    filters = [{"Name": "name", "Values": [f"{name_prefix}*"]}]
    seen = [Image.from_api(item) for item in _describe(ec2, Owners=list(owners), Filters=filters)]
    description = f"name={name_prefix}* owners={','.join(owners)} state=available"
    available = rank(image for image in seen if image.state == "available")
    if not available:
        raise ImageNotFound(_nothing_found(description, seen))
    return ImageChoice(available[0], tuple(available[1:]), description)


def _pinned(ec2: Any, image_id: str) -> ImageChoice:
    try:
        found = [Image.from_api(item) for item in _describe(ec2, ImageIds=[image_id])]
    except ImageNotFound:
        found = []
    if not found:
        raise ImageNotFound(f"worker.ami_image_id: no image {image_id} is visible to this account")
    if found[0].state != "available":
        raise ImageNotFound(f"worker.ami_image_id: image {image_id} is {found[0].state}, "
                            "not available")
    return ImageChoice(found[0], (), f"pinned {image_id}")


def _describe(ec2: Any, **query: Any) -> list[dict[str, Any]]:
    try:
        images: list[dict[str, Any]] = ec2.describe_images(**query)["Images"]
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code.startswith("InvalidAMIID"):
            raise ImageNotFound(str(exc)) from None
        raise
    return images


def _nothing_found(description: str, seen: Sequence[Image]) -> str:
    message = f"no available AMI matches {description}"
    if not seen:
        return message + "; the look-up saw no image of that name (check the name, the " \
            "region and worker.ami_owners, or build one with `ramp-fleet build-ami`)"
    listed = "; ".join(f"{image.image_id} {image.name!r} is {image.state}" for image in rank(seen))
    return f"{message}; the look-up saw: {listed}"
