"""A Dask worker preload that plays a compromised host. Test-only:
``dask worker --preload tests.dask.compromised_worker``.

Whatever the submission, the task answers as the ramp-fleet task would, with
a hostile ``training_output``: with ``RAMP_FLEET_TEST_ARCHIVES`` set, the bytes
of ``<that folder>/<submission>.tar.gz`` (a crafted archive); otherwise an
object whose unpickling writes the file named by ``RAMP_FLEET_TEST_PWNED``
(with the pid that unpickled it).
"""

import os
from pathlib import Path

import ramp_fleet.dask.task

MARKER = os.environ.get("RAMP_FLEET_TEST_PWNED", "/nonexistent/pwned")
ARCHIVES = os.environ.get("RAMP_FLEET_TEST_ARCHIVES")


def _write_marker(path: str) -> int:
    with open(path, "a") as out:
        out.write(f"{os.getpid()}\n")
    return 0


class Payload:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_write_marker, (MARKER,))


def compromised_run_submission(spec, submission_archive):  # type: ignore[no-untyped-def]
    answer = ramp_fleet.dask.task.reply(0, log=b"all fine\n")
    if ARCHIVES:
        answer["training_output"] = Path(ARCHIVES, f"{spec.submission}.tar.gz").read_bytes()
    else:
        answer["training_output"] = Payload()
    return answer


ramp_fleet.dask.task.run_submission = compromised_run_submission
