"""A custom worker whose first run adds a submission folder to the event, as a participant
would while the dispatcher runs. Every run ends at once, with a training error (nothing is
trained): what is tested is which submissions the dispatcher finds, not how they train.

Worker key ``late_name``: the folder the first run adds.
"""

from pathlib import Path

from ramp_fleet.workers import BaseWorker


class LateWorker(BaseWorker):
    def launch_submission(self):
        late = Path(self.config["submissions_dir"]) / self.config["late_name"]
        if self.submission != late.name and not late.exists():
            late.mkdir()
            (late / "estimator.py").write_text("raise ImportError('never trained')\n")
        super().launch_submission()

    def _is_submission_finished(self):
        return True

    def collect_results(self):
        super().collect_results()
        return (1, "late worker: no training")
