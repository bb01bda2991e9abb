"""The line that says which limit ended a run reads true at its edges."""

from __future__ import annotations

import os

from ramp_fleet.sandbox.verdict import memory_message
from ramp_fleet.sandbox.watchdog import Watchdog


def test_a_sample_just_over_the_limit_never_reads_as_the_limit() -> None:
    watchdog = Watchdog(os.getpid(), 400, on_over=lambda used: None)
    watchdog.over_mb = 400.3
    message = memory_message(400, None, watchdog)
    assert message.endswith("it had reached 401 MB when it was stopped"), message
