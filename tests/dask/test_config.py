"""The dask keys of an event config: addresses, TLS files, plaintext only on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ramp_fleet.config import load_event_config
from ramp_fleet.config.sections import DaskWorkerSection
from ramp_fleet.dask.certs import write_tls_files
from ramp_fleet.errors import ConfigError
from ramp_fleet.workers.guide import GuideConfig
from tests.ramp_board import make_layout


def _load(tmp_path: Path, **worker: Any) -> Any:
    config = {
        "ramp": {"problem_name": "iris", "event_name": "iris_dask"},
        "worker": {"worker_type": "dask", **worker},
        "dispatcher": {"n_workers": 2},
    }
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    make_layout(tmp_path, "iris", "iris_dask")  # a loopback scheduler's workers read them here
    return load_event_config(path)


def _problems(tmp_path: Path, **worker: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, **worker)
    return info.value.problems


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:8786", "tcp://localhost:8786",
                                     "127.0.0.1:8786", "tcp://[::1]:8786"])
def test_plaintext_on_loopback_is_accepted(tmp_path: Path, address: str) -> None:
    event = _load(tmp_path, dask_scheduler=address)
    assert isinstance(event.worker, DaskWorkerSection)
    assert GuideConfig(event)["dask_scheduler"] == address


def test_an_insecure_remote_address_is_refused(tmp_path: Path) -> None:
    problems = _problems(tmp_path, dask_scheduler="tcp://10.0.0.5:8786")
    assert len(problems) == 1
    assert "worker.dask_scheduler" in problems[0] and "allow_insecure_dask" in problems[0]


def test_allow_insecure_dask_lets_a_remote_plaintext_address_through(tmp_path: Path) -> None:
    event = _load(tmp_path, dask_scheduler="tcp://10.0.0.5:8786", allow_insecure_dask=True)
    assert event.worker.allow_insecure_dask is True


@pytest.mark.parametrize("address", ["tcp://", "tcp://:8786", "udp://host:1", "tls://host:99999"])
def test_a_malformed_address_names_dask_scheduler(tmp_path: Path, address: str) -> None:
    problems = _problems(tmp_path, dask_scheduler=address)
    assert any("worker.dask_scheduler" in p and repr(address) in p for p in problems)


def test_tls_needs_its_files(tmp_path: Path) -> None:
    problems = _problems(tmp_path, dask_scheduler="tls://scheduler.example:8786")
    assert any("worker.dask_tls: is required" in p for p in problems)


def test_tls_files_are_checked_and_resolved(tmp_path: Path) -> None:
    files = write_tls_files(tmp_path / "tls")
    event = _load(tmp_path, dask_scheduler="tls://scheduler.example:8786",
                  dask_tls={"ca_file": "tls/ca.pem", "cert": "tls/cert.pem", "key": "tls/key.pem"})
    assert GuideConfig(event)["dask_tls"] == files.as_config()

    files.key.chmod(0o644)
    problems = _problems(tmp_path, dask_scheduler="tls://scheduler.example:8786",
                         dask_tls=files.as_config() | {"ca_file": "missing.pem"})
    assert any("worker.dask_tls.ca_file: no such file" in p for p in problems)
    assert any("worker.dask_tls.key" in p and "chmod 600" in p for p in problems)


def test_tls_files_with_a_tcp_address_are_refused(tmp_path: Path) -> None:
    files = write_tls_files(tmp_path / "tls")
    problems = _problems(tmp_path, dask_scheduler="tcp://127.0.0.1:8786",
                         dask_tls=files.as_config())
    assert any("must start with tls://" in p for p in problems)
