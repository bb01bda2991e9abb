"""A custom worker for ``benchmarks/scale.py``: every run ends the moment it starts.

It trains nothing: each run hands back, as its ``training_output``, the one
that a real ``ramp-test`` wrote before the benchmark began (worker key
``ready_output``), packed once per dispatcher into the ``.tar.gz`` a runner
hands back, and a one-line log. So the dispatcher does all its own work for
every submission — claim, setup, launch, wait, publish (the predictions
received file by file, the log written), score, record — and none of the
training: what is measured is the dispatcher's cost.

Selected with ``worker_type: scale_worker:ReadyWorker`` (this folder on
``PYTHONPATH``), as any custom worker is.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ramp_fleet.config import EventConfig
from ramp_fleet.results import RunOutput
from ramp_fleet.sandbox.logs import LogSource
from ramp_fleet.sandbox.spec import Report
from ramp_fleet.sandbox.tar import pack
from ramp_fleet.sandbox.tree import entries, open_folder
from ramp_fleet.workers import BaseWorker
from ramp_fleet.workers.guide import GuideConfig


class ReadyWorker(BaseWorker):
    @classmethod
    def open_shared(cls, event: EventConfig) -> Any:
        """``ready_output`` packed once as the runner packs ``training_output`` (the receive
        path takes an archive, never a folder), in a scratch folder of its own."""
        folder = Path(tempfile.mkdtemp(prefix="scale-worker-"))
        archive = folder / "results.tar.gz"
        source = open_folder(GuideConfig(event)["ready_output"])
        try:
            with open(archive, "xb") as out:
                pack(entries(source, "refuse"), out)
        finally:
            os.close(source)
        return archive

    @classmethod
    def close_shared(cls, shared: Any) -> None:
        if shared is not None:
            shutil.rmtree(Path(shared).parent, ignore_errors=True)

    def _is_submission_finished(self) -> bool:
        return True

    def fetch_output(self) -> RunOutput:
        log = f"{self.submission}: ready-made training_output\n".encode()
        report = Report(isolated=False, returncode=0, has_results=True)
        return RunOutput(report, LogSource.from_bytes(log), Path(self.shared))
