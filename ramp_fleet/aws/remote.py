"""The command lines run on an instance, rendered from ``templates/remote_run.sh.j2``.

Each function returns the exact text sent over SSH (tests assert on it);
every interpolated value is shell-quoted by the template.

A run's folder on the instance is ``<kit>/.ramp-fleet/<S>.<token>``
(:func:`run_folder_name`: its own, even where two runs' instances share a
file system): the AWS worker
uploads the runner's inputs (``spec.json``, ``submission.tar.gz``) and the
runner itself (``runner.pyz``, :mod:`ramp_fleet.sandbox.zipapp`: ramp-fleet
is not installed on the AMI) into it, and starts the runner there with the
instance's system Python: the instance builds the same sandbox as any other
machine, checks bwrap itself, keeps the limits and the deadline, and leaves
the log, ``results.tar.gz`` and ``report.json`` in the folder.
"""

from __future__ import annotations

import secrets
from functools import cache
from typing import Any

from ramp_fleet.templating import environment

TEMPLATE = "remote_run.sh.j2"

#: Seconds between SIGTERM and SIGKILL when a run is stopped.
KILL_GRACE = 5
#: The runner as a zip application, in a run's folder.
RUNNER_PYZ = "runner.pyz"
#: The run folder of ``build-ami --test``.
QUICK_TEST_FOLDER = "ami-quick-test"


@cache
def _module() -> Any:
    template = environment(trim_blocks=False).get_template(TEMPLATE)
    return template.make_module()


def _render(macro: str, *args: Any) -> str:
    return str(getattr(_module(), macro)(*args)).strip()


def home_kit(kit: str) -> str:
    """The kit folder as the runner needs it: absolute, or from the home folder (``~/``)."""
    return kit if kit.startswith(("/", "~")) else f"~/{kit}"


def remote_path(kit: str, *parts: str) -> str:
    """A path under the kit folder as SFTP sees it (relative paths are from $HOME)."""
    base = kit[2:] if kit.startswith("~/") else ("." if kit == "~" else kit)
    return "/".join([base.rstrip("/"), *parts])


def run_folder_name(submission: str) -> str:
    """The folder of one run of ``submission``: the name, and a token of its own (two runs
    of one name — two events' ``logreg``, a retry — never share a folder, even when what
    looks like two instances is one host behind an ssh_config rule)."""
    return f"{submission}.{secrets.token_hex(4)}"


def run_folder(kit: str, submission: str, *name: str) -> str:
    """A file of a run's folder, as SFTP sees it."""
    return remote_path(kit, ".ramp-fleet", submission, *name)


def prepare(kit: str, submission: str) -> str:
    """A new, empty run folder (an earlier one of that submission removed)."""
    return _render("prepare", kit, submission)


def start(kit: str, submission: str, *, activate: str) -> str:
    """Start the runner detached, in the run folder, after the organiser's ``activate``."""
    return _render("start", kit, submission, activate)


def poll(kit: str, submission: str) -> str:
    """The runner's exit status once it has ended; nothing before."""
    return _render("poll", kit, submission)


def kill(kit: str, submission: str) -> str:
    return _render("kill", kit, submission, KILL_GRACE)


def report(kit: str, submission: str) -> str:
    """Print the runner's report (JSON), at most 16 KiB of it."""
    return _render("report", kit, submission)


def clean(kit: str, submission: str) -> str:
    """Remove the run folder, refusing (non-zero) while a process of the run is alive."""
    return _render("clean", kit, submission)


def stage_kit_submission(kit: str, folder: str, submission: str) -> str:
    """Copy the kit's own ``submissions/<submission>`` into the run folder (the runner takes
    a submission put there as it is): the AMI's starting kit, for its quick test."""
    return _render("stage_kit_submission", kit, folder, submission)


def run_now(kit: str, submission: str, *, activate: str) -> str:
    """Run the runner in the run folder and wait for it; a spec with ``log_in_folder``
    false makes its output (the run's log) the command's."""
    return _render("run_now", kit, submission, activate)
