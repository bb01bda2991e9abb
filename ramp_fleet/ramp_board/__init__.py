"""Serving a ramp-board event: its PostgreSQL database, through ramp-database's own functions.

:mod:`.client` runs in ramp-fleet's environment and drives :mod:`.helper`,
a script that runs in the organiser's ramp-board environment.
"""

from ramp_fleet.config.deployment import database_from_deployment, describe_database
from ramp_fleet.ramp_board.client import (
    EventInfo,
    HelperInfo,
    NewSubmission,
    RampBoardClient,
    RampBoardError,
)

__all__ = [
    "EventInfo",
    "HelperInfo",
    "NewSubmission",
    "RampBoardClient",
    "RampBoardError",
    "database_from_deployment",
    "describe_database",
]
