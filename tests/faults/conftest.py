"""The real parts the fault matrix breaks: those of the AWS, Dask and ramp-board suites."""

from __future__ import annotations

from tests.fixtures.postgres import postgres
from tests.fixtures.ramp_board_event import ramp_board, ramp_board_env, ramp_board_template

__all__ = ["postgres", "ramp_board", "ramp_board_env", "ramp_board_template"]
