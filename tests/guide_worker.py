"""A worker written as the RAMP guide's "Create your own worker" section shows.

Only the import differs from the guide. It runs ramp-test its own way (a
plain subprocess), to prove the dispatcher needs nothing beyond the guide's API.
"""

import os
import shutil
import subprocess
import sys

from ramp_fleet.workers import BaseWorker


class GuideWorker(BaseWorker):
    def __init__(self, config, submission):
        super().__init__(config=config, submission=submission)

    def setup(self):
        # nothing to create on this machine
        super().setup()

    def teardown(self):
        super().teardown()

    def _is_submission_finished(self):
        return self._proc.poll() is not None

    def launch_submission(self):
        ramp_test = os.path.join(os.path.dirname(sys.executable), "ramp-test")
        log_dir = os.path.join(self.config["logs_dir"], self.submission)
        os.makedirs(log_dir, exist_ok=True)
        self._log = open(os.path.join(log_dir, "log"), "wb")  # noqa: SIM115 - as RAMP workers do
        self._proc = subprocess.Popen(
            [ramp_test, "--submission", self.submission,
             "--ramp-kit-dir", self.config["kit_dir"],
             "--ramp-data-dir", self.config["data_dir"],
             "--ramp-submission-dir", self.config["submissions_dir"],
             "--save-output", "--ignore-warning"],
            stdout=self._log, stderr=subprocess.STDOUT)
        super().launch_submission()

    def collect_results(self):
        super().collect_results()
        self._log.close()
        returncode = self._proc.returncode
        error_msg = ""
        if returncode == 0:
            output = os.path.join(self.config["submissions_dir"], self.submission, "training_output")
            target = os.path.join(self.config["predictions_dir"], self.submission)
            shutil.rmtree(target, ignore_errors=True)
            shutil.move(output, target)
        else:
            error_msg = "ramp-test failed"
        self.status = "collected"
        return (returncode, error_msg)
