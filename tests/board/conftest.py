"""Fixtures for the ramp-board tests: PostgreSQL, a deployed event, predictions, a client.

No test here sends traffic outside 127.0.0.0/8: the database is a private
cluster on 127.0.0.1 and ramp-board's packages come from the local venv.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ramp_fleet.ramp_board import RampBoardClient
from tests.fixtures.postgres import postgres
from tests.fixtures.ramp_board_event import (
    Deployment,
    ramp_board,
    ramp_board_env,
    ramp_board_template,
)

__all__ = ["postgres", "ramp_board", "ramp_board_env", "ramp_board_template"]

RAMP_TEST = Path(sys.executable).parent / "ramp-test"


@pytest.fixture(scope="session")
def iris_predictions(reference_event: Path) -> Path:
    """A real ``training_output`` of the logreg submission, by ramp-test itself."""
    return reference_event / "submissions" / "logreg" / "training_output"


@pytest.fixture
def client(ramp_board: Deployment, ramp_board_env: Path) -> Iterator[RampBoardClient]:
    """A client on this test's database, quick to retry."""
    board = RampBoardClient(ramp_board_env, ramp_board.database, timeout=120, retry_for=120,
                            first_backoff=0.1, max_backoff=1)
    try:
        yield board
    finally:
        board.close()

