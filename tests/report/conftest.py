"""Fixtures of the report's tests: Debian's chromium, and a synthetic event in a real store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.report.browser import CHROMIUM


@pytest.fixture(scope="session")
def chromium() -> Path:
    """The browser of the page tests; missing, it is a failure wherever it could be installed."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    if os.geteuid() == 0:
        pytest.fail(f"{CHROMIUM} is missing: `make chromium` installs Debian's chromium (`make test` does)")
    pytest.skip(f"{CHROMIUM} is missing and installing it needs root (`sudo make chromium`)")
