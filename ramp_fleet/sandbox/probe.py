"""Whether bubblewrap works on this machine: by a real try, once per process.

Finding ``bwrap`` proves little: user namespaces may be disabled
(``kernel.unprivileged_userns_clone``), restricted by AppArmor (Ubuntu
24.04), or a container may forbid mounts. So the check builds a sandbox
the way runs get one (:func:`~ramp_fleet.sandbox.view.bwrap_argv`) and
runs ``true`` in it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
from dataclasses import dataclass

from ramp_fleet.sandbox import guard
from ramp_fleet.sandbox.bwrap import INSTALL_HINT, Bwrap, BwrapMissing, find
from ramp_fleet.sandbox.view import View, bwrap_argv

TRY_TIMEOUT = 30


@dataclass(frozen=True)
class BwrapCheck:
    """The outcome of the try: the bwrap that works, or why none does."""

    bwrap: Bwrap | None
    problem: str | None = None
    #: What to do about the problem.
    advice: str = INSTALL_HINT

    @property
    def works(self) -> bool:
        return self.bwrap is not None and self.problem is None

    def describe(self) -> str:
        if self.works:
            assert self.bwrap is not None
            return f"{self.bwrap.describe()} works here"
        return f"bubblewrap does not work here: {self.problem}"

    def refusal(self) -> str:
        """Why ``mode: required`` refuses to run here, and what to do (one line)."""
        return (f"worker.isolation.mode is required, but {self.describe()}; {self.advice}; or "
                "set worker.isolation.mode: off to run participants' code unisolated")


def main() -> int:
    """``python -m ramp_fleet.sandbox.probe``: one line, and 0 when a sandbox works here."""
    result = check()
    print(result.describe() if result.works else f"{result.describe()}; {result.advice}")
    return 0 if result.works else 1


def check(path: str | None = None) -> BwrapCheck:
    """Try bubblewrap (found on ``path``, default ``$PATH``); cached per process and bwrap."""
    try:
        bwrap = find(path)
    except BwrapMissing as exc:
        return BwrapCheck(None, str(exc))
    return _try(bwrap)


@functools.cache
def _try(bwrap: Bwrap) -> BwrapCheck:
    view = View(command=["true"], cwd="/", env={"PATH": "/usr/bin:/bin"},
                privileged=os.geteuid() == 0)  # as runs will be
    try:  # through the guard, as runs: killed at any moment, no lone bwrap is left behind
        with subprocess.Popen(guard.argv(bwrap_argv(view, bwrap)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=dict(view.env),
                              stdin=subprocess.DEVNULL, start_new_session=True) as proc:
            try:
                stdout, stderr = proc.communicate(timeout=TRY_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                raise
    except (OSError, subprocess.TimeoutExpired) as exc:
        return BwrapCheck(bwrap, f"{bwrap.path} could not be run ({exc})")
    if proc.returncode == 0:
        return BwrapCheck(bwrap)
    lines = (stderr or stdout).strip().splitlines()
    detail = lines[0] if lines else f"exit status {proc.returncode}"
    return BwrapCheck(bwrap, f"{bwrap.describe()} failed a test sandbox ({detail})",
                      _advice(detail))


def _advice(detail: str) -> str:
    """What to do about a failed try, for the failures we know."""
    if "setting up uid map" in detail or "namespace" in detail.lower():
        if os.path.exists("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"):
            return ("unprivileged user namespaces are restricted by AppArmor: load the "
                    "bwrap-userns-restrict profile (see docs/troubleshooting.md, \"Ubuntu 24.04: "
                    "AppArmor\")")
        return "unprivileged user namespaces are disabled (sysctl kernel.unprivileged_userns_clone=1)"
    return INSTALL_HINT


if __name__ == "__main__":
    raise SystemExit(main())
