"""Real Dask clusters on 127.0.0.1 and a copy of the iris kit for the Dask tests."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ramp_fleet.dask.local import LocalDaskCluster

REPO = Path(__file__).resolve().parents[2]
IRIS = REPO / "examples" / "iris"
KIT_READY = Path("/tmp/drafts/KIT_READY")


@pytest.fixture(scope="session")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the iris example: ramp-kits/iris, ramp-data/iris, submissions/."""
    if not (IRIS / "ramp-kits" / "iris" / "problem.py").is_file():
        deadline = time.monotonic() + 120
        while not KIT_READY.exists() and time.monotonic() < deadline:
            time.sleep(1)
    if not (IRIS / "ramp-kits" / "iris" / "problem.py").is_file():
        pytest.skip("the iris example kit is not there yet")
    root = tmp_path_factory.mktemp("iris")
    for part in ("ramp-kits", "ramp-data", "submissions"):
        shutil.copytree(IRIS / part, root / part,
                        ignore=shutil.ignore_patterns("training_output", "__pycache__"))
    return root


@pytest.fixture(scope="session")
def plain_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDaskCluster]:
    with LocalDaskCluster(2, workdir=tmp_path_factory.mktemp("dask-plain")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDaskCluster]:
    with LocalDaskCluster(1, tls=True, workdir=tmp_path_factory.mktemp("dask-tls")) as cluster:
        yield cluster
