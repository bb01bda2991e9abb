"""The command lines run on an instance, rendered from ``templates/remote_run.sh.j2``.

Each function returns the exact text sent over SSH (tests assert on it);
every interpolated value is shell-quoted by the template.

A run goes through the runner, uploaded with the submission as
``.ramp-fleet/<S>/sandbox.pyz`` (:mod:`ramp_fleet.sandbox.zipapp`: ramp-fleet
is not installed on the AMI) and started with the instance's system Python:
the instance builds the same sandbox as any other machine, checks bwrap
itself, keeps the limits and the deadline, packs ``training_output`` into
``.ramp-fleet/<S>/results.tar.gz`` and writes ``.ramp-fleet/<S>/sandbox.json``
(its report).
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from ramp_fleet.ramp_test import Collect, ramp_test_argv, run_variables, sandbox_spec
from ramp_fleet.sandbox.spec import Isolation, ResultCaps
from ramp_fleet.templating import environment

TEMPLATE = "remote_run.sh.j2"

#: Seconds between SIGTERM and SIGKILL when a run is stopped.
KILL_GRACE = 5
#: The runner stops a run at its timeout; the instance's own ``timeout`` is a safety
#: net (a runner that hangs) that fires this much later.
REMOTE_TIMEOUT_MARGIN = 30


@cache
def _module() -> Any:
    template = environment(trim_blocks=False).get_template(TEMPLATE)
    return template.make_module()


def _render(macro: str, *args: Any) -> str:
    return str(getattr(_module(), macro)(*args)).strip()


def remote_path(kit: str, *parts: str) -> str:
    """A path under the kit folder as SFTP sees it (relative paths are from $HOME)."""
    base = kit[2:] if kit.startswith("~/") else ("." if kit == "~" else kit)
    return "/".join([base.rstrip("/"), *parts])


def prepare(kit: str, submission: str) -> str:
    return _render("prepare", kit, submission)


def unpack(kit: str, submission: str, archive: str) -> str:
    return _render("unpack", kit, submission, archive)


#: The launcher's files in a run's state folder.
SANDBOX_PYZ = "sandbox.pyz"
SANDBOX_REPORT = "sandbox.json"


#: The runner's results archive in a run's state folder.
RESULTS = "results.tar.gz"


def start(kit: str, submission: str, *, activate: str, timeout: float,
          n_threads: int | None, isolation: Isolation, caps: ResultCaps) -> str:
    """Start ``ramp-test`` detached, from the kit folder, through the runner.

    The command, its variables and its sandbox are those of :mod:`ramp_fleet.ramp_test`;
    paths are relative to the kit folder, which holds the data too (as the AMI lays it out).
    """
    state = f".ramp-fleet/{submission}"
    spec = sandbox_spec(
        ramp_test_argv("ramp-test", submission, ".", ".", "submissions"), submission,
        ".", ".", "submissions", cwd=".", variables=run_variables(n_threads),
        isolation=isolation, hidden=(".ramp-fleet",), report=f"{state}/{SANDBOX_REPORT}",
        timeout=timeout, collect=Collect(f"{state}/{RESULTS}", "archive", caps))
    return _render("start", kit, submission, activate,
                   str(math.ceil(timeout) + REMOTE_TIMEOUT_MARGIN), str(KILL_GRACE), spec.to_json())


def poll(kit: str, submission: str) -> str:
    return _render("poll", kit, submission)


def kill(kit: str, submission: str) -> str:
    return _render("kill", kit, submission, KILL_GRACE)


def report(kit: str, submission: str) -> str:
    """Print the runner's report (JSON), at most 16 KiB of it."""
    return _render("report", kit, submission)


def clean(kit: str, submission: str) -> str:
    """Remove the run's folders, refusing (non-zero) while a process of the run is alive."""
    return _render("clean", kit, submission)


#: The state folder of ``build-ami --test`` (``.ramp-fleet/<it>``, like a run's).
QUICK_TEST_STATE = "ami-quick-test"


def quick_test_prepare(kit: str) -> str:
    """Make the folder the quick test's runner is uploaded to."""
    return _render("quick_test_prepare", kit, QUICK_TEST_STATE)


def quick_test(kit: str, activate: str, submission: str, isolation: Isolation) -> str:
    """``ramp-test --quick-test`` of one submission in the kit (``build-ami --test``), in the
    sandbox the instance builds with the uploaded launcher, as a run would be."""
    spec = sandbox_spec(
        ramp_test_argv("ramp-test", submission, ".", ".", "submissions", quick_test=True),
        submission, ".", ".", "submissions", cwd=".", variables=run_variables(None),
        isolation=isolation, hidden=(".ramp-fleet",))
    return _render("quick_test", kit, activate, QUICK_TEST_STATE, spec.to_json())


def state_path(kit: str, submission: str, name: str) -> str:
    """Where the run's files are, for shell commands (quoted) — see ``remote_path`` for SFTP."""
    return f"{kit.rstrip('/')}/.ramp-fleet/{submission}/{name}"
