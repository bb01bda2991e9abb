"""``worker.dask_cluster``: an elastic cluster instead of ``dask_scheduler``, one line per problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ramp_fleet.config import load_event_config
from ramp_fleet.config.sections import DaskWorkerSection
from ramp_fleet.errors import ConfigError
from ramp_fleet.names import EventNames, event_region
from ramp_fleet.workers.guide import GuideConfig
from tests.ramp_board import make_layout

ELASTIC = {"provider": "ec2", "max_workers": 4}


def _write(tmp_path: Path, infra: dict[str, Any] | None = None, **worker: Any) -> Path:
    config: dict[str, Any] = {
        "ramp": {"problem_name": "iris", "event_name": "iris_elastic"},
        "worker": {"worker_type": "dask", **worker},
        "dispatcher": {"n_workers": 4},
    }
    if infra is not None:
        config["infra"] = infra
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    make_layout(tmp_path, "iris", "iris_elastic")
    return path


def _problems(tmp_path: Path, **worker: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_event_config(_write(tmp_path, **worker))
    return info.value.problems


def test_an_elastic_cluster_takes_the_place_of_a_scheduler_address(tmp_path: Path) -> None:
    event = load_event_config(_write(tmp_path, dask_cluster=ELASTIC))
    assert isinstance(event.worker, DaskWorkerSection)
    cluster = event.worker.dask_cluster
    assert cluster is not None and event.worker.dask_scheduler is None
    assert (cluster.max_workers, cluster.min_workers, cluster.idle_timeout) == (4, 0, 300.0)
    assert cluster.ami_owners == ["self"]
    assert GuideConfig(event)["dask_cluster"]["max_workers"] == 4


def test_neither_address_nor_cluster_is_one_problem(tmp_path: Path) -> None:
    problems = _problems(tmp_path)
    assert len(problems) == 1
    assert "worker.dask_scheduler: is required" in problems[0]
    assert "worker.dask_cluster" in problems[0]


def test_both_address_and_cluster_is_one_problem(tmp_path: Path) -> None:
    problems = _problems(tmp_path, dask_scheduler="tcp://127.0.0.1:8786", dask_cluster=ELASTIC)
    assert len(problems) == 1
    assert problems[0].endswith("worker.dask_cluster: give dask_scheduler (a running cluster) "
                                "or dask_cluster (an elastic one), not both")


def test_tls_files_are_for_a_running_cluster_only(tmp_path: Path) -> None:
    tls = {"ca_file": "ca.pem", "cert": "cert.pem", "key": "key.pem"}
    problems = _problems(tmp_path, dask_cluster=ELASTIC, dask_tls=tls)
    assert len(problems) == 1 and "worker.dask_tls: the elastic cluster makes its own" in problems[0]


@pytest.mark.parametrize(("keys", "expected"), [
    ({"provider": "gcp", "max_workers": 2}, "worker.dask_cluster.provider: must be one of 'ec2'"),
    ({"provider": "ec2"}, "worker.dask_cluster.max_workers: is required"),
    ({**ELASTIC, "max_workers": 0}, "worker.dask_cluster.max_workers: must be a whole number of "
                                    "at least 1"),
    ({**ELASTIC, "min_workers": -1}, "worker.dask_cluster.min_workers: must be a whole number of "
                                     "at least 0"),
    ({**ELASTIC, "min_workers": 5}, "worker.dask_cluster.min_workers: must not exceed "
                                    "max_workers (4), got 5"),
    ({**ELASTIC, "idle_timeout": "soon"}, "worker.dask_cluster.idle_timeout: must be a positive "
                                          "number of seconds"),
    ({**ELASTIC, "use_spot_instance": "maybe"}, "worker.dask_cluster.use_spot_instance: must be "
                                                "true or false"),
])
def test_each_bad_key_is_one_line_naming_it(tmp_path: Path, keys: dict[str, Any],
                                            expected: str) -> None:
    problems = _problems(tmp_path, dask_cluster=keys)
    assert len(problems) == 1, problems
    assert expected in problems[0]
    assert problems[0].startswith(str(tmp_path / "config.yml"))


def test_a_misspelt_key_of_the_cluster_gets_a_suggestion_from_the_cluster_keys(
    tmp_path: Path,
) -> None:
    problems = _problems(tmp_path, dask_cluster={**ELASTIC, "max_worker": 3})
    assert any("worker.dask_cluster.max_worker: unknown key; did you mean 'max_workers'?" in p
               for p in problems)


def test_the_static_cluster_and_the_elastic_one_exclude_each_other(tmp_path: Path) -> None:
    path = _write(tmp_path, dask_cluster=ELASTIC, infra={"dask_cluster": {"n_workers": 2}})
    with pytest.raises(ConfigError) as info:
        load_event_config(path)
    assert len(info.value.problems) == 1
    assert "infra.dask_cluster: a static Dask cluster and worker.dask_cluster" in \
        info.value.problems[0]


def test_the_regions_must_agree(tmp_path: Path) -> None:
    path = _write(tmp_path, dask_cluster={**ELASTIC, "region_name": "eu-west-3"},
                  infra={"region": "eu-west-1"})
    with pytest.raises(ConfigError) as info:
        load_event_config(path)
    assert "worker.dask_cluster.region_name 'eu-west-3'" in info.value.problems[0]


def test_a_subnet_needs_the_vpc_of_the_clusters_groups(tmp_path: Path) -> None:
    problems = _problems(tmp_path, dask_cluster={**ELASTIC, "subnet_id": "subnet-1"})
    assert len(problems) == 1 and "worker.dask_cluster.subnet_id: needs infra.vpc_id" in problems[0]
    path = _write(tmp_path, dask_cluster={**ELASTIC, "subnet_id": "subnet-1"},
                  infra={"vpc_id": "vpc-1", "subnet_id": "subnet-1"})
    assert load_event_config(path).infra.vpc_id == "vpc-1"


def test_names_and_region_come_from_the_cluster_section(tmp_path: Path) -> None:
    path = _write(tmp_path, dask_cluster={**ELASTIC, "ami_image_name": "iris-dask",
                                          "region_name": "eu-west-3"})
    event = load_event_config(path)
    names = EventNames.of(event)
    assert names.ami_base == "iris-dask"  # what the image pipeline names the AMIs, too
    assert event_region(event) == "eu-west-3"
    assert names.dask_elastic_key_parameter("c0ffee00") == \
        "/ramp-fleet/iris_elastic/dask-elastic/c0ffee00/host-key"


def test_validate_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    path = _write(tmp_path, dask_cluster={**ELASTIC, "min_workers": 9})
    done = subprocess.run([sys.executable, "-m", "ramp_fleet", "validate", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "worker.dask_cluster.min_workers" in lines[0]
    assert "Traceback" not in done.stderr
