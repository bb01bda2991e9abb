"""A worker written as the RAMP guide's "Create your own worker" section shows.

Only the import differs from the guide, and the command line: it asks the
base class for it (``self.ramp_test_command()``), which is ramp-test in the
sandbox ``worker.isolation`` asks for. It runs it its own way (a plain
subprocess, in a session of its own so it can stop the whole run) and
collects its own results, to prove the dispatcher needs nothing beyond the
guide's API — and that what it publishes is still held to the contract.
"""

import os
import shutil
import signal
import subprocess

from ramp_fleet.results import error_excerpt
from ramp_fleet.workers import BaseWorker


class GuideWorker(BaseWorker):
    def __init__(self, config, submission):
        super().__init__(config=config, submission=submission)
        self._proc = None

    def setup(self):
        # nothing to create on this machine
        super().setup()

    def teardown(self):
        self._stop()
        super().teardown()

    def _is_submission_finished(self):
        return self._proc.poll() is not None

    def launch_submission(self):
        command = self.ramp_test_command()  # ramp-test on the submissions_dir, sandboxed
        log_dir = os.path.join(self.config["logs_dir"], self.submission)
        os.makedirs(log_dir, exist_ok=True)
        self._log = open(os.path.join(log_dir, "log"), "wb")  # noqa: SIM115 - as RAMP workers do
        self._proc = subprocess.Popen(
            command.argv, env=command.environment(),
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        super().launch_submission()

    def collect_results(self):
        super().collect_results()
        self._stop()  # a timed-out run is still going
        self._log.close()
        returncode = self._proc.returncode
        error_msg = ""
        output = os.path.join(self.config["submissions_dir"], self.submission, "training_output")
        if returncode == 0:
            target = os.path.join(self.config["predictions_dir"], self.submission)
            shutil.rmtree(target, ignore_errors=True)
            shutil.move(output, target)
        else:
            shutil.rmtree(output, ignore_errors=True)
            error_msg = error_excerpt(os.path.join(self.config["logs_dir"], self.submission, "log"))
        self.status = "collected"
        return (returncode, error_msg)

    def _stop(self):
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
