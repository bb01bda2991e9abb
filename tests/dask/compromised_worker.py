"""A Dask worker preload that plays a compromised host. Test-only:
``dask worker --preload tests.dask.compromised_worker``.

Whatever the submission, the task answers as the ramp-fleet task would, with
a hostile ``training_output``: with ``RAMP_FLEET_TEST_ARCHIVES`` set, the bytes
of ``<that folder>/<submission>.tar.gz`` (a crafted archive); otherwise an
object whose unpickling writes the file named by ``RAMP_FLEET_TEST_PWNED``
(with the pid that unpickled it).
"""

import json
import os
from pathlib import Path

import ramp_fleet.host.dask_task

MARKER = os.environ.get("RAMP_FLEET_TEST_PWNED", "/nonexistent/pwned")
ARCHIVES = os.environ.get("RAMP_FLEET_TEST_ARCHIVES")


def _write_marker(path: str) -> int:
    with open(path, "a") as out:
        out.write(f"{os.getpid()}\n")
    return 0


class Payload:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_write_marker, (MARKER,))


def compromised_run_submission(spec_json, submission_archive, run_id, handed=None):  # type: ignore[no-untyped-def]
    submission = json.loads(spec_json)["submission"]
    report = {"isolated": True, "returncode": 0, "has_results": True}
    answer = ramp_fleet.host.dask_task.reply(host="compromised", report=report,
                                             log=b"all fine\n", exit_status=0)
    if ARCHIVES:
        answer["results"] = Path(ARCHIVES, f"{submission}.tar.gz").read_bytes()
    else:
        answer["results"] = Payload()
    return answer


ramp_fleet.host.dask_task.run_submission = compromised_run_submission
