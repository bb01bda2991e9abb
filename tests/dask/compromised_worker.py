"""A Dask worker preload that plays a compromised host: the task's reply carries an object
whose unpickling writes the file named by ``RAMP_FLEET_TEST_PWNED`` (with the pid that
unpickled it). Test-only: ``dask worker --preload tests.dask.compromised_worker``."""

import os

import ramp_fleet.dask.task

MARKER = os.environ.get("RAMP_FLEET_TEST_PWNED", "/nonexistent/pwned")


def _write_marker(path: str) -> int:
    with open(path, "a") as out:
        out.write(f"{os.getpid()}\n")
    return 0


class Payload:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_write_marker, (MARKER,))


def compromised_run_submission(spec, submission_archive):  # type: ignore[no-untyped-def]
    answer = ramp_fleet.dask.task.reply(0, log=b"all fine\n")
    answer["training_output"] = Payload()
    return answer


ramp_fleet.dask.task.run_submission = compromised_run_submission
