"""A custom worker for ``benchmarks/scale.py``: every run ends the moment it starts.

It trains nothing: each run hands back, as its ``training_output``, the one
that a real ``ramp-test`` wrote before the benchmark began (worker key
``ready_output``), and a one-line log. So the dispatcher does all its own
work for every submission — claim, setup, launch, wait, publish (the
predictions received file by file, the log written), score, record — and
none of the training: what is measured is the dispatcher's cost.

Selected with ``worker_type: scale_worker:ReadyWorker`` (this folder on
``PYTHONPATH``), as any custom worker is.
"""

from __future__ import annotations

from pathlib import Path

from ramp_fleet.results import RunOutput
from ramp_fleet.sandbox.logs import LogSource
from ramp_fleet.sandbox.spec import Report
from ramp_fleet.workers import BaseWorker


class ReadyWorker(BaseWorker):
    def _is_submission_finished(self) -> bool:
        return True

    def fetch_output(self) -> RunOutput:
        log = f"{self.submission}: ready-made training_output\n".encode()
        report = Report(isolated=False, returncode=0, has_results=True)
        return RunOutput(report, LogSource.from_bytes(log), Path(self.config["ready_output"]))
