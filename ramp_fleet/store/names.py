"""What makes a submission name safe to use as a folder name everywhere."""

from __future__ import annotations

import re

from ramp_fleet.errors import UsageError

_MAX_LENGTH = 100
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f/\\]")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a submission name, or None when it can."""
    if not name:
        return "is empty"
    if len(name) > _MAX_LENGTH:
        return f"is longer than {_MAX_LENGTH} characters"
    if _FORBIDDEN.search(name):
        return "contains a path separator or a control character"
    if name in {".", ".."} or ".." in name:
        return "contains '..'"
    if name.startswith("."):
        return "is hidden (starts with '.')"
    if name != name.strip():
        return "starts or ends with white space"
    return None


def check_submission_name(name: str) -> str:
    problem = name_problem(name)
    if problem:
        raise UsageError(f"submission name {name!r}: {problem}")
    return name
