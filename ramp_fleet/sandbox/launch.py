"""Run one sandboxed run here, with its limits, and report on it.

    python -m ramp_fleet.sandbox.launch SPEC_JSON

Started where a run needs more than a command line — a memory limit or a
peak to measure — and on AWS instances for every run: ramp-fleet is not
installed there, so the AWS worker uploads this package as a zip
application (``sandbox.pyz``, see :mod:`ramp_fleet.sandbox.zipapp`) and the
bwrap check happens on the instance. The launcher decides (``mode`` and this
machine's bwrap), creates the run's cgroup or sets its rlimits, starts the
sandbox (:func:`~ramp_fleet.sandbox.command.run_view`), passes on SIGTERM,
waits, and writes its :class:`~ramp_fleet.sandbox.spec.Report` to
``spec.report``. Its output is the run's (the log); its exit status is the
run's (128 + N for a signal N), or :data:`REFUSED`.

Standard library only, Python 3.10 or newer: it runs with the instance's
system Python, outside the event's environment.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from types import FrameType

from ramp_fleet.sandbox.command import (
    Decision,
    SandboxUnavailable,
    decide,
    locate,
    run_python,
    run_view,
)
from ramp_fleet.sandbox.limits import (
    CGROUP_V2,
    RLIMIT,
    Cgroup,
    LimitError,
    Limits,
    Usage,
    cgroup_host,
    read_peak,
    rlimit_prefix,
    running_as_root,
)
from ramp_fleet.sandbox.spec import Report, SandboxSpec
from ramp_fleet.sandbox.view import bwrap_argv

#: Exit status of a run refused before it started (``required`` without a working bwrap).
REFUSED = 125
#: Exit status when the command cannot be found or started.
NOT_STARTED = 127
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ramp_fleet.sandbox.launch SPEC_JSON", file=sys.stderr)
        return 2
    spec = SandboxSpec.from_json(argv[0]).resolved()
    host = socket.gethostname()
    try:
        decision = decide(spec.isolation.mode, spec.checked)
    except SandboxUnavailable as exc:
        message = f"{exc} (host {host})"
        return _stop(spec, REFUSED, message, Report(False, refused=message))
    if decision.note:
        note = f"{decision.note} (host {host})"
        decision = replace(decision, note=note)
        _say(note)
    try:
        return Launch(spec, decision).run()
    except (FileNotFoundError, LimitError, OSError) as exc:
        return _stop(spec, NOT_STARTED, f"cannot start the run: {exc}",
                     Report(decision.isolate, note=decision.note))


class Launch:
    """One run: its limits prepared, started, waited for, measured, cleaned up."""

    def __init__(self, spec: SandboxSpec, decision: Decision):
        self.spec = spec
        self.decision = decision
        self.limits = spec.isolation.limits
        self.cgroup: Cgroup | None = None
        self.peak_fd: int | None = None
        self._peak_reader: int | None = None
        self.child: subprocess.Popen[bytes] | None = None

    def run(self) -> int:
        try:
            argv, env = self._prepare()
            self.child = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL,
                pass_fds=() if self.peak_fd is None else (self.peak_fd,),
                preexec_fn=None if self.cgroup is None else self.cgroup.join)
            if self.peak_fd is not None:
                os.close(self.peak_fd)  # the run holds the write end now
                self.peak_fd = None
            previous = {sig: signal.signal(sig, self._forward) for sig in FORWARDED}
            try:
                code = self.child.wait()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
            usage = self._usage()
        finally:
            for fd in (self._peak_reader, self.peak_fd):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            if self.cgroup is not None:
                self.cgroup.remove()
        if self.spec.report:
            Report(self.decision.isolate, note=self.decision.note, usage=usage).write(
                self.spec.report)
        return code if code >= 0 else 128 - code

    def _prepare(self) -> tuple[list[str], dict[str, str]]:
        program = locate(self.spec.command[0])
        command = [program, *self.spec.command[1:]]
        isolate = self.decision.isolate
        cgroup_limits = Limits(self.limits.memory_mb,
                               self.limits.max_processes if isolate else None)
        if cgroup_limits != Limits():
            host = cgroup_host()
            if host.parent is not None:
                self.cgroup = Cgroup.create(host.parent, f"run-{os.getpid()}-{secrets.token_hex(4)}",
                                            cgroup_limits)
        if self._measures_peak() and (self.cgroup is None
                                      or not (self.cgroup.path / "memory.peak").exists()):
            self._peak_reader, self.peak_fd = os.pipe()
        rlimits = Limits() if self.cgroup is not None else self.limits
        prefix = rlimit_prefix(rlimits, python=run_python(program), peak_fd=self.peak_fd,
                               limit_processes=isolate and not running_as_root())
        if not isolate:
            return [*prefix, *command], {**os.environ, **self.spec.variables}
        view = run_view(self.spec, program, [*prefix, *command])
        return bwrap_argv(view, self.decision.bwrap), dict(view.env)

    def _measures_peak(self) -> bool:
        return self.limits.memory_mb is not None or self.spec.measure_peak

    def _usage(self) -> Usage | None:
        if not self._measures_peak():
            return None
        peak = None
        if self._peak_reader is not None:
            peak = read_peak(self._peak_reader)  # closes it
            self._peak_reader = None
        elif self.cgroup is not None:
            peak = self.cgroup.peak_mb()
        memory = self.limits.memory_mb
        enforced_by = "" if memory is None else (CGROUP_V2 if self.cgroup is not None else RLIMIT)
        oom = self.cgroup is not None and self.cgroup.oom_killed()
        return Usage(memory, enforced_by, peak, oom)

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)


def _stop(spec: SandboxSpec, code: int, message: str, report: Report) -> int:
    _say(message)
    if spec.report:
        report.write(spec.report)
    return code


def _say(message: str) -> None:
    print(f"ramp-fleet: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
