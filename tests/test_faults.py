"""Faults of the outside world: one line each, and the first one wins over the cleanups'."""

from __future__ import annotations

import errno
import sqlite3

import botocore.exceptions
import pytest

from ramp_fleet.faults import OutsideFault, cleanups, outside_fault


def fail(message: str) -> None:
    raise OSError(errno.ENOSPC, "No space left on device", message)


def test_the_first_failure_is_reported_and_the_cleanups_after_it() -> None:
    ran: list[str] = []
    with pytest.raises(ValueError, match=r"^the run failed") as raised:
        try:
            raise ValueError("the run failed")
        finally:
            cleanups(("closing the store", lambda: fail("/events/e/store")),
                     ("releasing the workers", lambda: ran.append("released")))
    assert ran == ["released"], "every cleanup runs"
    assert raised.value.__notes__ == [
        "also, while closing the store: the disk: cannot write /events/e/store (no space left); "
        "check the free space and the mount of the event's folders"]


def test_without_an_error_the_first_cleanup_failure_is_raised_with_the_next_as_notes() -> None:
    with pytest.raises(OSError) as raised:
        cleanups(("one", lambda: fail("/a")), ("two", lambda: fail("/b")))
    assert raised.value.filename == "/a"
    assert raised.value.__notes__ == ["also, while two: the disk: cannot write /b (no space left); "
                                      "check the free space and the mount of the event's folders"]


@pytest.mark.parametrize(("error", "line"), [
    (botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
     'AWS: cannot reach the endpoint (Could not connect to the endpoint URL: '
     '"http://127.0.0.1:9"); check the network, worker.region_name and AWS_ENDPOINT_URL'),
    (botocore.exceptions.NoCredentialsError(),
     "AWS: no usable credentials (Unable to locate credentials); check worker.profile_name, "
     "the access keys or the default credential chain"),
    (botocore.exceptions.ClientError({"Error": {"Code": "RequestLimitExceeded", "Message": "slow"}},
                                     "RunInstances"),
     "AWS EC2: RunInstances answered RequestLimitExceeded: slow; check the account's API rate "
     "(it is retried later)"),
    (sqlite3.OperationalError("database or disk is full"),
     "the disk: cannot write the event's store (no space left); check the free space and the "
     "mount of the store's folder"),
    (OSError(errno.EROFS, "Read-only file system", "/p/x"),
     "the disk: cannot write /p/x (read-only); check the free space and the mount of the "
     "event's folders"),
])
def test_what_the_libraries_raise_is_one_line_naming_the_part(error: BaseException,
                                                             line: str) -> None:
    fault = outside_fault(error)
    assert isinstance(fault, OutsideFault) and str(fault) == line and fault.exit_code == 1


@pytest.mark.parametrize("error", [ValueError("a bug"), OSError(errno.ENOENT, "gone"),
                                   sqlite3.OperationalError("no such table: x")])
def test_what_is_not_the_outside_worlds_is_not_called_so(error: BaseException) -> None:
    assert outside_fault(error) is None
