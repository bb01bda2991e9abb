"""Real parts the suite runs (bubblewrap, sshd, PostgreSQL, Chromium, a cgroup hierarchy,
an unprivileged user): a test that needs a missing one skips, saying which and how to get
it — except under ``make test``.

``make test`` (and so CI) installs them and sets ``RAMP_FLEET_REQUIRE_REAL_PARTS=1``;
under it every skip fails its test (see ``tests/conftest.py``), so a run cannot go green
by not testing what it claims to.
"""

from __future__ import annotations

import os

import pytest

SWITCH = "RAMP_FLEET_REQUIRE_REAL_PARTS"


def required() -> bool:
    return os.environ.get(SWITCH, "") not in ("", "0")


def require(part: str, present: bool, how: str = "") -> None:
    """Skip (a failure under ``make test``) unless ``part`` is ``present``."""
    if not present:
        pytest.skip(f"{part} is missing here" + (f" ({how})" if how else ""))
