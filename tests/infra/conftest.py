"""Fixtures for the Pulumi program (under Pulumi's unit-test mocks) and build-ami.

The mocks are set here, at import, before any module of infra/ is imported.
Nothing in these tests reaches the network: resources and invokes go to the
mocks, Image Builder calls to botocore's Stubber.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from tests.infra.pulumi_mocks import Deployment, install, run_program

ROOT = Path(__file__).resolve().parents[2]

MOCKS = install()

from event_stack import StackSettings  # noqa: E402

OSF_PASSWORD = "pa55-w0rd-never-shown"
OSF_USERNAME = "organiser@example.org"

BASE_CONFIGS: dict[str, dict[str, Any]] = {
    "conda": {
        "ramp": {"problem_name": "iris", "event_name": "iris_conda"},
        "worker": {"worker_type": "conda", "conda_env": "ramp-iris"},
        "infra": {"region": "eu-west-1", "allowed_cidrs": ["198.51.100.0/24"]},
    },
    "aws": {
        "ramp": {"problem_name": "iris", "event_name": "iris_aws"},
        "worker": {"worker_type": "aws", "ami_image_name": "iris-ami", "key_name": "iris-key",
                   "security_group": "iris-workers", "region_name": "eu-west-1",
                   "ami_user_name": "ubuntu"},
        "infra": {"allowed_cidrs": ["198.51.100.0/24", "203.0.113.7/32"],
                  "data_source": {"kind": "osf", "location": "abc12"},
                  "log_bucket": "iris-aws-build-logs", "tags": {"team": "ramp"}},
    },
    "dask": {
        "ramp": {"problem_name": "iris", "event_name": "iris_dask"},
        "worker": {"worker_type": "dask", "conda_env": "ramp-iris",
                   "dask_scheduler": "tcp://127.0.0.1:8786"},
        "infra": {"region": "eu-west-1", "allowed_cidrs": ["198.51.100.0/24"],
                  "data_source": {"kind": "s3", "location": "s3://ramp-data/iris"},
                  "dask_cluster": {"n_workers": 3}},
    },
    "elastic": {
        "ramp": {"problem_name": "iris", "event_name": "iris_elastic"},
        "worker": {"worker_type": "dask", "conda_env": "ramp-iris",
                   "dask_cluster": {"provider": "ec2", "max_workers": 8}},
        "infra": {"region": "eu-west-1", "allowed_cidrs": ["198.51.100.0/24"],
                  "tags": {"team": "ramp"}},
    },
}


@pytest.fixture(autouse=True)
def _offline_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """No credential or region look-up may reach out (IMDS, SSO...)."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """``write_config("aws", infra={...})``: a config file for one kind of event."""

    def write(kind: str, name: str = "config.yml", **sections: dict[str, Any]) -> Path:
        data = {key: dict(value) for key, value in BASE_CONFIGS[kind].items()}
        for section, values in sections.items():
            data[section] = {**data.get(section, {}), **values}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    return write


@pytest.fixture
def mocks():
    return MOCKS


@pytest.fixture
def osf_credentials() -> tuple[str, str]:
    return OSF_USERNAME, OSF_PASSWORD


@pytest.fixture
def deploy(write_config: Callable[..., Path]) -> Callable[..., Deployment]:
    """``deploy("dask", infra={...}, osf=True)``: run the program for such an event."""

    def run(kind: str, osf: bool = False, settings: dict[str, Any] | None = None,
            **sections: dict[str, Any]) -> Deployment:
        path = write_config(kind, **sections)
        extra: dict[str, Any] = dict(settings or {})
        if osf:
            extra["osf_username"] = pulumi.Output.secret(OSF_USERNAME)
            extra["osf_password"] = pulumi.Output.secret(OSF_PASSWORD)
        return run_program(StackSettings(event_config=path, **extra))

    return run


@pytest.fixture
def pulumi_config() -> Iterator[Callable[[dict[str, str], list[str]], None]]:
    """Set the stack's config as `pulumi config set` would; restored afterwards."""
    from pulumi.runtime import config as runtime_config

    saved = dict(runtime_config.CONFIG.get())

    def set_config(values: dict[str, str], secret_keys: list[str]) -> None:
        runtime_config.set_all_config(values, secret_keys)

    yield set_config
    runtime_config.set_all_config(saved, [])


def pytest_configure(config: pytest.Config) -> None:
    # pulumi-aws warns about its own deprecated s3 classes when the module loads.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_aws.*")
