"""A guide-style worker that finishes at once: the dispatcher's own cost and races, isolated.

A run lasts ``run_seconds`` (default 0) and trains nothing. On each
submission's first ``retries`` attempts it then reports ``retry`` (an
instance lost mid-run); after that it ends with a training error. Attempts
are counted in a file beside the logs, as a custom worker might.
"""

from pathlib import Path

from ramp_fleet.workers import BaseWorker


class InstantWorker(BaseWorker):
    def launch_submission(self):
        counter = Path(self.config["logs_dir"]) / f"{self.submission}.attempts"
        counter.parent.mkdir(parents=True, exist_ok=True)
        self.attempt = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(self.attempt))
        super().launch_submission()

    def _is_submission_finished(self):
        if self.elapsed() < float(self.config.get("run_seconds", 0)):
            return False
        if self.attempt <= int(self.config.get("retries", 1)):
            self.status = "retry"  # found the instance gone at the end of the run
            return False
        return True

    def collect_results(self):
        super().collect_results()
        return (1, "instant worker: no training")
