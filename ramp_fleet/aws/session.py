"""Credentials and region: one boto3 session per dispatcher.

Preferred: nothing in the config (the default chain: environment, shared
files, instance role, SSO) or ``profile_name``. Access keys written in the
config are accepted, with a warning. ``AWS_ENDPOINT_URL`` is honoured by
boto3 itself. No key value is ever logged or put in an error.
"""

from __future__ import annotations

import logging
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from ramp_fleet.config.sections import AWSWorkerSection
from ramp_fleet.errors import UsageError

logger = logging.getLogger("ramp_fleet.aws")

#: botocore retries throttling and 5xx itself ("standard" mode), with bounded waits.
CLIENT_CONFIG = botocore.config.Config(
    retries={"mode": "standard", "max_attempts": 6},
    connect_timeout=15,
    read_timeout=60,
)

KEYS_WARNING = (
    "worker.access_key_id/secret_access_key are written in the config: prefer "
    "worker.profile_name or the default AWS credential chain (environment, "
    "~/.aws/credentials, SSO, instance role), which keep secrets out of config files"
)


def make_session(worker: AWSWorkerSection) -> boto3.Session:
    """A session from the config's credentials keys, or the default chain."""
    try:
        if worker.access_key_id is not None and worker.secret_access_key is not None:
            logger.warning(KEYS_WARNING)
            return boto3.Session(
                aws_access_key_id=worker.access_key_id.get_secret_value(),
                aws_secret_access_key=worker.secret_access_key.get_secret_value(),
                region_name=worker.region_name,
            )
        return boto3.Session(profile_name=worker.profile_name, region_name=worker.region_name)
    except botocore.exceptions.ProfileNotFound:
        raise UsageError(
            f"worker.profile_name: no AWS profile named {worker.profile_name!r} "
            "in ~/.aws/config or ~/.aws/credentials"
        ) from None


def ec2_client(session: boto3.Session) -> Any:
    """The EC2 client of ``session``; a missing region is a usage error."""
    if session.region_name is None:
        raise UsageError(
            "worker.region_name: no AWS region given (set it, or AWS_DEFAULT_REGION, "
            "or a region in the profile)"
        )
    return session.client("ec2", config=CLIENT_CONFIG)
