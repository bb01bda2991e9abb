"""One run inside its sandbox: limits, start, deadline, the kill of its tree, collection.

:class:`Run` is what the runner (:mod:`ramp_fleet.sandbox.runner`) does
once the run's folder is ready: it gives the run a cgroup (v2, else v1) or
a resident-memory watchdog, starts ``ramp-test`` in the sandbox
(:func:`~ramp_fleet.sandbox.command.run_view`) with
:mod:`ramp_fleet.sandbox.inner` as its first process, keeps its deadline,
kills the whole run at it (or at a signal, or when the process that started
the runner dies), then — when ramp-test has ended and every other process of
the run is gone — collects ``training_output`` from outside the sandbox with
its own code (no link followed, nothing blocking, names checked, everything
capped: :mod:`ramp_fleet.sandbox.tree`) and measures what the run used.
"""

from __future__ import annotations

import contextlib
import json
import os
import pkgutil
import platform
import secrets
import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, replace
from types import FrameType

from ramp_fleet.sandbox import cgroups, guard, seccomp, verdict
from ramp_fleet.sandbox.command import Decision, run_view
from ramp_fleet.sandbox.programs import ramp_test_argv, run_python, run_variables
from ramp_fleet.sandbox.spec import Report, RunSpec
from ramp_fleet.sandbox.tar import pack
from ramp_fleet.sandbox.tree import Tally, UnsafeResult, entries, fill, open_folder
from ramp_fleet.sandbox.view import HANDED, STAGING, bwrap_argv
from ramp_fleet.sandbox.watchdog import Watchdog
from ramp_fleet.sandbox.watchdog import tree as process_tree

#: Exit status of a run that could not start (no command, no interpreter).
NOT_STARTED = 127
#: Exit status of a run stopped at its timeout (as coreutils' timeout).
TIMED_OUT = 124
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: Runs started by root become one of these uids (each its own: no limit is shared).
RUN_UIDS = range(0x7A000000, 0x7A000000 + (1 << 20))
#: How long the run's end may take (bwrap tearing down) once collected or killed.
END_GRACE = 10.0
#: How often the run's wait looks at the deadline and at the runner's parent.
TICK = 0.5


@dataclass(frozen=True)
class Target:
    """Where ``training_output`` goes: an archive (``archive``) or a new folder (``folder``)."""

    path: str
    kind: str = "archive"
    compresslevel: int = 6


@dataclass
class _Status:
    """What the sandbox's first process said when ramp-test ended."""

    returncode: int
    maxrss_kb: int


class Run:
    """One run: prepared, started, watched, collected, measured, cleaned up."""

    def __init__(self, spec: RunSpec, decision: Decision, program: str, folder: str,
                 target: Target | None, parent: int | None = None):
        self.spec = spec
        self.decision = decision
        self.isolation = spec.isolation
        #: ramp-test, as found on this machine.
        self.program = program
        #: The run's copy of its submission (its own folder; ramp-test's ``submissions/<S>``).
        self.submission_dir = os.path.join(folder, "submissions", spec.submission)
        self.submissions_dir = os.path.dirname(self.submission_dir)
        self.target = target
        #: Stop the run when the runner's parent is no longer this process.
        self.parent = parent
        self.cgroup: cgroups.RunCgroup | None = None
        self.watchdog: Watchdog | None = None
        self.child: subprocess.Popen[bytes] | None = None
        #: The sandbox's first process (bwrap's init), as this machine sees it.
        self.sandbox_pid: int | None = None
        self.status: _Status | None = None
        self.stopped_by: str | None = None  # "timeout", "memory", "signal N", "parent"
        self._fds: dict[str, int] = {}
        self._go: int | None = None
        self.notes: list[str] = [] if decision.note is None else [decision.note]

    # -- the whole run ---------------------------------------------------------------------

    def run(self) -> Report:
        started = time.monotonic()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in FORWARDED}
        try:
            argv, env, pass_fds = self._prepare()
            guarded = self.decision.isolate  # bwrap's parent is the guard, out of the cgroup
            if guarded:
                argv = guard.argv(argv, procs=() if self.cgroup is None else self.cgroup.procs())
            self.child = subprocess.Popen(
                argv, env=env, cwd=None if self.decision.isolate else self.submission_dir,
                stdin=subprocess.DEVNULL, pass_fds=pass_fds, start_new_session=True,
                preexec_fn=None if guarded or self.cgroup is None else self.cgroup.join)
            self._close_child_ends()
            self._watch_memory()
            self._wait(started)
            results = self._collect()
            limit = verdict.limit_hit(
                self.isolation, isolated=self.decision.isolate, stopped_by=self.stopped_by,
                returncode=self.status.returncode if self.status is not None else None,
                cgroup=self.cgroup, watchdog=self.watchdog, sandbox_pid=self.sandbox_pid,
                submission_dir=self.submission_dir)
            if self.watchdog is not None:
                self.watchdog.stop()
            usage = verdict.usage(self.isolation, stopped_by=self.stopped_by, cgroup=self.cgroup,
                                  watchdog=self.watchdog,
                                  largest_kb=self.status.maxrss_kb if self.status else None)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._end()
        if limit is not None:
            say(limit)
        if results[1] is not None:
            say(f"training_output refused: {results[1]}")
        return Report(isolated=self.decision.isolate, note="; ".join(self.notes) or None,
                      usage=usage, returncode=self._returncode(),
                      timed_out=self.stopped_by == "timeout", limit=limit,
                      results_refused=results[1], has_results=results[0],
                      duration=time.monotonic() - started)

    # -- before ------------------------------------------------------------------------------

    def _prepare(self) -> tuple[list[str], dict[str, str] | None, tuple[int, ...]]:
        python = run_python(self.program)
        if self.spec.isolation.labels == "hidden":  # the runner checked: isolated, handed
            if python is None:
                raise FileNotFoundError(f"no Python interpreter for {self.program}")
            command = [python, "-I", "-u", "-c", _program_source("train_predict.py"),
                       self.spec.kit_dir, HANDED, self.submissions_dir, self.spec.submission]
        else:
            command = ramp_test_argv(self.program, self.spec.submission, self.spec.kit_dir,
                                     self.spec.data_dir, self.submissions_dir,
                                     quick_test=self.spec.quick_test)
        variables = run_variables(self.spec.n_threads)
        isolate = self.decision.isolate
        self._make_cgroup(isolate)
        if not isolate:
            return command, {**os.environ, **variables}, ()
        if python is None:
            raise FileNotFoundError(f"no Python interpreter for {self.program}")
        for name in ("info", "status", "go"):
            read_end, write_end = os.pipe2(os.O_CLOEXEC)
            self._fds[f"{name}_r"], self._fds[f"{name}_w"] = read_end, write_end
        privileged = os.geteuid() == 0
        uid = RUN_UIDS[secrets.randbelow(len(RUN_UIDS))] if privileged else -1
        nproc = self.isolation.max_processes or 0
        if self.cgroup is not None and "pids" in self.cgroup.folders:
            nproc = 0  # the cgroup holds it, for the whole run
        inner = [python, "-I", "-S", "-c", _program_source("inner.py"),
                 str(self._fds["status_w"]), str(self._fds["go_r"]), str(uid), str(uid),
                 str(nproc), STAGING, self.submission_dir, "--", *command]
        view = replace(run_view(self.spec, self.program, inner, self.submission_dir, variables),
                       privileged=privileged, info_fd=self._fds["info_w"],
                       seccomp_fd=self._seccomp())
        self._go = self._fds.pop("go_w")
        child_ends = [self._fds[name] for name in ("info_w", "status_w", "go_r")]
        if view.seccomp_fd is not None:
            child_ends.append(view.seccomp_fd)
        return bwrap_argv(view, self.decision.bwrap), dict(view.env), tuple(child_ends)

    def _make_cgroup(self, isolate: bool) -> None:
        wanted = cgroups.Wanted(self.isolation.memory_mb,
                                self.isolation.max_processes if isolate else None,
                                measure=self.spec.measure_peak)
        if wanted:
            made = cgroups.create(f"{os.getpid()}-{secrets.token_hex(4)}", wanted)
            self.cgroup = made.cgroup

    def _seccomp(self) -> int | None:
        if not seccomp.supported():
            self.notes.append(f"no seccomp filter on this machine ({platform.machine()})")
            return None
        fd = os.memfd_create("ramp-fleet-seccomp", os.MFD_CLOEXEC)
        os.write(fd, seccomp.program())
        os.lseek(fd, 0, os.SEEK_SET)
        self._fds["seccomp"] = fd
        return fd

    def _close_child_ends(self) -> None:
        for name in ("info_w", "status_w", "go_r", "seccomp"):
            fd = self._fds.pop(name, None)
            if fd is not None:
                os.close(fd)

    def _watch_memory(self) -> None:
        """Enforce the memory limit and measure the peak where no cgroup does."""
        assert self.child is not None
        in_cgroup = self.cgroup is not None and "memory" in self.cgroup.folders
        if in_cgroup and self.cgroup is not None and self.cgroup.measures_peak():
            return
        limit = None if in_cgroup else self.isolation.memory_mb
        if limit is not None or self.spec.measure_peak:
            self.watchdog = Watchdog(self.child.pid, limit, self._over_memory,
                                     count_root=not self.decision.isolate).start()

    # -- during ------------------------------------------------------------------------------

    def _wait(self, started: float) -> None:
        """Until ramp-test has ended (and said so), the process is gone, or the run is stopped."""
        assert self.child is not None
        pidfd = os.pidfd_open(self.child.pid)
        deadline = None if self.spec.timeout is None else started + self.spec.timeout
        try:
            while self.stopped_by is None:
                wait = TICK if deadline is None else min(TICK, deadline - time.monotonic())
                if wait <= 0:
                    self.stop("timeout")
                    return
                if self.parent is not None and os.getppid() != self.parent:
                    say("the process that started this run is gone: the run is stopped")
                    self.stop("parent")
                    return
                pipes = [self._fds[name] for name in ("info_r", "status_r") if name in self._fds]
                ready, _, _ = select.select([pidfd, *pipes], [], [], wait)
                if "info_r" in self._fds and self._fds["info_r"] in ready:
                    self.sandbox_pid = _child_pid(self._read_all("info_r"))
                if "status_r" in self._fds and self._fds["status_r"] in ready:
                    self.status = _parse_status(self._read_all("status_r"))
                    if self.sandbox_pid is None and "info_r" in self._fds:
                        self.sandbox_pid = _child_pid(self._read_all("info_r"))
                    return
                if pidfd in ready:
                    return
        finally:
            os.close(pidfd)

    def stop(self, why: str) -> None:
        """Kill the whole run now (the timeout, the memory watchdog, a signal)."""
        if self.stopped_by is None:
            self.stopped_by = why
        self._kill()

    def _over_memory(self, used_mb: float) -> None:
        self.stop("memory")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop(f"signal {signum}")

    def _kill(self) -> None:
        if self.cgroup is not None:
            self.cgroup.kill()
        if self.sandbox_pid is not None:
            with contextlib.suppress(OSError):  # the PID namespace ends with its init
                os.kill(self.sandbox_pid, signal.SIGKILL)
        if self.child is not None:
            victims = process_tree(self.child.pid)
            with contextlib.suppress(OSError):
                os.killpg(self.child.pid, signal.SIGKILL)
            for pid in victims:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    # -- after -------------------------------------------------------------------------------

    def _collect(self) -> tuple[bool, str | None]:
        """``training_output`` to the target: (handed back, why it was refused)."""
        if self.target is None or self.stopped_by is not None:
            return False, None
        training_output = os.path.join(self.submission_dir, "training_output")
        if self.decision.isolate:
            if self.status is None or self.status.returncode != 0 or self.sandbox_pid is None:
                return False, None
            trusted = f"/proc/{self.sandbox_pid}/root"
            path = trusted + training_output
        else:
            assert self.child is not None
            self.child.wait()
            self._kill()  # whatever the run left running must not change what is collected
            if self.child.returncode != 0:
                return False, None
            trusted, path = "/", training_output
        try:
            folder = open_folder(path, trusted=trusted)
        except FileNotFoundError:
            return False, None
        except OSError as exc:
            return False, (f"training_output is not a folder ({exc.strerror}: a link, a FIFO or "
                           "a file put in its place): refused")
        try:
            self._hand_back(folder, self.target)
        except UnsafeResult as exc:
            return False, str(exc)
        finally:
            os.close(folder)
        return True, None

    def _hand_back(self, folder: int, target: Target) -> None:
        staging = f"{target.path}.part"
        _remove(staging)
        try:
            if target.kind == "folder":
                fill(staging, self.spec.limits, entries(folder, "refuse"))
            else:
                with open(staging, "xb") as out:
                    pack(entries(folder, "refuse"), out, Tally(self.spec.limits),
                         target.compresslevel)
            _remove(target.path)
            os.rename(staging, target.path)
        finally:
            _remove(staging)

    def _end(self) -> None:
        """Let the sandbox go (or make it), and release everything the run had."""
        if self._go is not None:
            os.close(self._go)  # the sandbox's first process exits on this
            self._go = None
        if self.child is not None:
            try:
                self.child.wait(timeout=END_GRACE)
            except subprocess.TimeoutExpired:
                self._kill()
                self.child.wait()
        if self.watchdog is not None:
            self.watchdog.stop()
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        if self.cgroup is not None:
            self.cgroup.remove()

    def _read_all(self, name: str, limit: int = 64 << 10) -> bytes:
        fd = self._fds.pop(name)
        chunks: list[bytes] = []
        try:
            while sum(map(len, chunks)) < limit:
                ready, _, _ = select.select([fd], [], [], 5.0)
                if not ready:
                    break
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks)

    def _returncode(self) -> int:
        assert self.child is not None
        if self.stopped_by == "timeout":
            return TIMED_OUT
        if self.status is not None and self.stopped_by is None:
            return self.status.returncode
        code = self.child.returncode
        return code if code >= 0 else 128 - code


def say(message: str) -> None:
    """One line of the runner's own in the run's log."""
    os.write(2, f"ramp-fleet: {message}\n".encode("utf-8", "replace"))


def _child_pid(info: bytes) -> int | None:
    try:
        value = json.loads(info).get("child-pid")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None


def _parse_status(data: bytes) -> _Status | None:
    try:
        raw = json.loads(data)
        return _Status(int(raw["returncode"]), int(raw["maxrss_kb"]))
    except (ValueError, KeyError, TypeError):
        return None


def _program_source(name: str) -> str:
    """A program of this package run inside the sandbox, as its source (``-c``)."""
    source = pkgutil.get_data("ramp_fleet.sandbox", name)
    assert source is not None
    return source.decode("utf-8")


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
