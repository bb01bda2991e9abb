"""Faults of the world outside ramp-fleet, each said in one line, and cleanups that never hide them.

A part ramp-fleet depends on and does not control fails: EC2 (unreachable,
throttling, credentials), SSH, the Dask scheduler, ramp-board's database,
the local disk. :func:`outside_fault` turns what the libraries raise into one
:class:`OutsideFault` line naming the part, what failed and what to check;
the dispatcher retries a run that met one (the submission is not at fault)
and the command exits with status 1 for one it cannot get past.

:func:`cleanups` runs the steps that release what a dispatcher holds: all of
them, whatever fails. While an error is on its way out, the cleanup's own
failures are logged after it — the first failure is the one reported —;
otherwise the first cleanup failure is raised once all have run.
"""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Callable

from ramp_fleet.errors import RampFleetError

logger = logging.getLogger("ramp_fleet")

#: Errors of the local disk that are the machine's, not the submission's.
DISK_ERRNOS = {errno.ENOSPC: "no space left", errno.EDQUOT: "over its quota",
               errno.EROFS: "read-only", errno.EIO: "an input/output error"}


class OutsideFault(RampFleetError):
    """A part of the outside world failed: ``<part>: <what failed>; check <what to check>``."""

    exit_code = 1

    def __init__(self, part: str, what: str, check: str):
        self.part, self.what, self.check = part, what, check
        super().__init__(f"{part}: {what}; check {check}")

    def and_then(self, consequence: str) -> OutsideFault:
        """The same fault, saying what it leaves behind (in the same one line)."""
        fault = OutsideFault(self.part, f"{self.what}; {consequence}", self.check)
        carry_notes(self, fault)
        return fault


def outside_fault(exc: BaseException) -> OutsideFault | None:
    """The one-line fault ``exc`` is, when it is the outside world's (with its notes); else
    None."""
    if isinstance(exc, OutsideFault):
        return exc
    for classify in (_aws_fault, _disk_fault):
        fault = classify(exc)
        if fault is not None:
            return carry_notes(exc, fault)  # type: ignore[return-value]
    return None


def cleanups(*steps: tuple[str, Callable[[], object]]) -> None:
    """Run every ``(what, step)``; see the module docstring for whose error wins.

    The failures that do not win are added to the one that does as notes
    (``also, while <what>: <line>``), which the command prints after it.
    """
    in_flight = sys.exc_info()[1]
    first: BaseException | None = None
    for what, step in steps:
        try:
            step()
        except Exception as exc:
            winner = in_flight or first
            if winner is None:
                first = exc
                continue
            line = str(outside_fault(exc) or exc).strip().splitlines()
            winner.add_note(f"also, while {what}: {line[0] if line else type(exc).__name__}")
            logger.debug("while %s", what, exc_info=exc)
    if first is not None:
        raise first


def carry_notes(source: BaseException, target: BaseException) -> BaseException:
    """``target`` with the notes of ``source`` (an error said again in other words)."""
    for note in getattr(source, "__notes__", ()):
        target.add_note(note)
    return target


def log_failure(log: logging.Logger, what: str, exc: BaseException) -> None:
    """One line for an outside fault (its traceback only at -vv); a traceback for a bug."""
    fault = outside_fault(exc)
    if fault is None:
        log.error("%s", what, exc_info=exc)
        return
    log.error("%s: %s", what, fault)
    log.debug("%s", what, exc_info=exc)


def _aws_fault(exc: BaseException) -> OutsideFault | None:
    try:
        import botocore.exceptions as boto
    except ImportError:  # pragma: no cover - boto3 is a dependency of the AWS workers only
        return None
    if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError
                  | boto.CredentialRetrievalError):
        return OutsideFault("AWS", f"no usable credentials ({_first(exc)})",
                            "worker.profile_name, the access keys or the default credential chain")
    if isinstance(exc, boto.EndpointConnectionError | boto.ConnectionClosedError
                  | boto.ConnectTimeoutError | boto.ReadTimeoutError | boto.HTTPClientError):
        return OutsideFault("AWS", f"cannot reach the endpoint ({_first(exc)})",
                            "the network, worker.region_name and AWS_ENDPOINT_URL")
    if isinstance(exc, boto.ClientError):
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code", "?")), str(error.get("Message", "")).strip()
        operation = getattr(exc, "operation_name", "a request")
        what = f"{operation} answered {code}" + (f": {message.splitlines()[0]}" if message else "")
        if code in ("RequestLimitExceeded", "Throttling", "ThrottlingException"):
            return OutsideFault("AWS EC2", what, "the account's API rate (it is retried later)")
        if code in ("AuthFailure", "ExpiredToken", "RequestExpired", "UnrecognizedClientException",
                    "InvalidClientTokenId", "SignatureDoesNotMatch", "UnauthorizedOperation"):
            return OutsideFault("AWS", what, "the credentials and their permissions")
        if code.startswith(("Internal", "Unavailable", "ServiceUnavailable")):
            return OutsideFault("AWS EC2", what, "the AWS health dashboard (it is retried later)")
    return None


def _disk_fault(exc: BaseException) -> OutsideFault | None:
    import sqlite3

    if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError):
        text = str(exc)
        for words, what in (("disk is full", "no space left"), ("readonly", "read-only"),
                            ("disk I/O error", "an input/output error")):
            if words in text:
                return OutsideFault("the disk", f"cannot write the event's store ({what})",
                                    "the free space and the mount of the store's folder")
        return None
    if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
        where = exc.filename or "a folder of the event"
        return OutsideFault("the disk", f"cannot write {where} ({DISK_ERRNOS[exc.errno]})",
                            "the free space and the mount of the event's folders")
    return None


def _first(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else exc.__class__.__name__
