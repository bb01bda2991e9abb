"""Failed attempts grouped by what went wrong.

Two failures belong together when the last line of their error excerpts
(where Python puts the exception) reads the same once what varies from run
to run is taken out: the submission's own name, numbers, hexadecimal
addresses. "timed out after 7200 s" and "MemoryError: Unable to allocate
3.2 GiB" then group across submissions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ramp_fleet.report.data import ReportData
from ramp_fleet.store.records import Outcome

#: Attempts that count as failures, and retries (shown apart: they ran again).
FAILED = (Outcome.TRAINING_ERROR, Outcome.CHECKING_ERROR, Outcome.RETRY)
NO_MESSAGE = "(no error message)"
_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")
_MAX_LINE = 300
_MAX_EXAMPLE = 4000


@dataclass(frozen=True)
class FailureGroup:
    outcome: str
    #: The normalised last line: what the attempts of the group share.
    key: str
    #: The last line of the first failure, as written.
    title: str
    #: The first failure's whole excerpt.
    example: str
    runs: int
    #: In order of first failure, each once.
    submissions: tuple[str, ...]


def last_line(error: str | None) -> str:
    lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
    return lines[-1][:_MAX_LINE] if lines else NO_MESSAGE


def normalise(error: str | None, submission: str) -> str:
    """The part of an excerpt that identical failures share."""
    line = last_line(error)
    if submission:
        line = line.replace(submission, "<submission>")
    line = _NUMBER.sub("N", _HEX.sub("0x…", line))
    return " ".join(line.split())


def group_failures(data: ReportData) -> tuple[FailureGroup, ...]:
    """Failed and retried attempts: training errors, checking errors, then retries;
    the most frequent group first within each."""
    failed = [(str(run.outcome), run.submission, run.error) for run in data.runs if run.outcome in FAILED]
    recorded = {submission for _, submission, _ in failed}
    # Submissions that failed before runs were recorded still show, from their own row.
    failed += [(summary.state, summary.name, summary.error) for summary in data.submissions
               if summary.state in (Outcome.TRAINING_ERROR, Outcome.CHECKING_ERROR)
               and summary.name not in recorded]
    return _grouped(failed)


def _grouped(failed: Iterable[tuple[str, str, str | None]]) -> tuple[FailureGroup, ...]:
    groups: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
    for outcome, submission, error in failed:
        groups.setdefault((outcome, normalise(error, submission)), []).append((submission, error))
    result = []
    for (outcome, key), members in groups.items():
        first_error = members[0][1]
        result.append(FailureGroup(
            outcome=outcome, key=key, title=last_line(first_error),
            example=(first_error or NO_MESSAGE).strip()[-_MAX_EXAMPLE:], runs=len(members),
            submissions=tuple(dict.fromkeys(submission for submission, _ in members)),
        ))
    order = {str(outcome): rank for rank, outcome in enumerate(FAILED)}
    return tuple(sorted(result, key=lambda g: (order.get(g.outcome, len(order)), -g.runs, g.key)))
