"""Every AWS test runs against moto on loopback, and fails on a connection outside it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.moto_ec2 import MotoServer


@pytest.fixture(autouse=True)
def _on_moto_and_loopback_only(aws: MotoServer, loopback_only: list[object]) -> Iterator[None]:
    yield
