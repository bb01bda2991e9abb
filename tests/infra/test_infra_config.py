"""The infra keys of the event config and their checks."""

from __future__ import annotations

import pytest

from ramp_fleet.config import load_event_config
from ramp_fleet.errors import ConfigError
from ramp_fleet.names import EventNames, event_tags, slug


def problems(write_config, kind: str, **sections) -> list[str]:
    with pytest.raises(ConfigError) as error:
        load_event_config(write_config(kind, **sections), runtime_files=False)
    return error.value.problems


def test_subnet_needs_its_vpc(write_config):
    (problem,) = problems(write_config, "conda", infra={"subnet_id": "subnet-1"})
    assert problem.endswith("infra.vpc_id: is required with infra.subnet_id "
                            "(the security groups go in that VPC)")


def test_gpu_images_are_built_on_gpu_instances(write_config):
    (problem,) = problems(write_config, "conda", infra={"gpu": True})
    assert "infra.build_instance_types: a gpu image is built and tested on GPU instances" in problem
    assert "got t3.large" in problem
    load_event_config(write_config("conda", infra={"gpu": True,
                                                   "build_instance_types": ["g5.xlarge"]}),
                      runtime_files=False)


def test_data_source_location(write_config):
    (problem,) = problems(write_config, "conda", infra={"data_source": {"kind": "osf"}})
    assert "infra.data_source.location: is required for kind osf (the OSF project id)" in problem
    (problem,) = problems(write_config, "conda",
                          infra={"data_source": {"kind": "s3", "location": "ramp-data/iris"}})
    assert "must be an s3://bucket/prefix URL, got 'ramp-data/iris'" in problem


def test_region_must_match_the_aws_worker(write_config):
    (problem,) = problems(write_config, "aws", infra={"region": "us-east-1"})
    assert "infra.region: the AMI is built in 'us-east-1' but the AWS worker looks for it in " \
           "worker.region_name 'eu-west-1'" in problem


def test_public_key_path_must_exist(write_config, tmp_path):
    (problem,) = problems(write_config, "conda", infra={"public_key_path": "missing.pub"})
    assert f"infra.public_key_path: no such file, got '{tmp_path / 'missing.pub'}'" in problem


def test_dask_cluster_worker_port(write_config):
    event = load_event_config(write_config("dask", infra={"dask_cluster": {"worker_port": 9100}}),
                              runtime_files=False)
    assert event.infra.dask_cluster is not None
    assert event.infra.dask_cluster.worker_port == 9100


def test_names_default_without_aws_worker_keys(write_config):
    names = EventNames.of(load_event_config(write_config("conda"), runtime_files=False))
    assert names.ami_base == "ramp-iris_conda"
    assert names.security_group == "ramp-iris_conda-workers"
    assert names.key_name == "ramp-iris_conda"
    assert names.pipeline == "ramp-iris_conda-pipeline"


def test_names_and_tags_from_an_aws_event(write_config):
    event = load_event_config(write_config("aws"), runtime_files=False)
    names = EventNames.of(event)
    assert (names.ami_base, names.security_group, names.key_name) == (
        "iris-ami", "iris-workers", "iris-key")
    assert names.ami_name == "iris-ami {{ imagebuilder:buildDate }}"
    assert event_tags(event) == {"team": "ramp", "ramp-fleet:event": "iris_aws"}


def test_slug_keeps_names_valid_for_aws():
    assert slug("Iris challenge (2025)!") == "Iris-challenge-2025"
    assert slug("é") == "event"
    assert len(slug("x" * 200)) == 40
