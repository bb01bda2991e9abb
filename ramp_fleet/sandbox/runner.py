"""The runner: one ``ramp-test`` run on this machine, from its start to its report.

    python -m ramp_fleet.sandbox.runner SPEC_JSON
    python3 -I -S runner.pyz SPEC_JSON          (on a host without ramp-fleet)

Every backend starts a run through it, where the run happens: the conda
worker here, a Dask task on its worker host, the remote script on an AWS
instance (shipped as a zip application, :mod:`ramp_fleet.sandbox.zipapp`).
The runner

1. decides (``mode`` and this machine's bwrap; ``required`` without one:
   the run is refused, exit status :data:`REFUSED`);
2. gives the run its limits: a cgroup (v2, else v1) for its resident memory
   and its processes, else a resident-memory watchdog; its disk (its own
   folder, /tmp) capped as memory-backed folders of ``disk_mb``; as root, an
   unprivileged uid of its own; a seccomp filter;
3. starts it in the sandbox (:func:`~ramp_fleet.sandbox.command.run_view`)
   with :mod:`ramp_fleet.sandbox.inner` as its first process, and keeps its
   deadline (``timeout``), killing the whole run at it;
4. when ramp-test has ended and every other process of the run is gone,
   collects ``training_output`` from outside the sandbox with its own code
   (no link followed, nothing blocking, names checked, everything capped:
   :mod:`ramp_fleet.sandbox.tree`) into the spec's ``results`` — an archive
   or a folder, as the backend asked;
5. measures (peak memory, duration, the limit that ended the run, if one
   did) and writes one :class:`~ramp_fleet.sandbox.spec.Report`.

Its output is the run's (the log); its exit status is the run's (128 + N
for a signal N), 124 at the timeout, or :data:`REFUSED` / :data:`NOT_STARTED`.

Standard library only, Python 3.10 or newer: on an instance it runs with
the system Python, outside the event's environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import pkgutil
import platform
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import FrameType

from ramp_fleet.sandbox import cgroups, seccomp
from ramp_fleet.sandbox.command import (
    Decision,
    SandboxUnavailable,
    decide,
    locate,
    run_python,
    run_view,
)
from ramp_fleet.sandbox.spec import Report, SandboxSpec, Usage
from ramp_fleet.sandbox.tar import pack
from ramp_fleet.sandbox.tree import Limits, Tally, UnsafeResult, entries, fill, open_folder
from ramp_fleet.sandbox.view import SANDBOX_HOME, SANDBOX_SHM, SANDBOX_TMP, STAGING, bwrap_argv
from ramp_fleet.sandbox.watchdog import INTERVAL, Watchdog
from ramp_fleet.sandbox.watchdog import tree as process_tree

#: Exit status of a run refused before it started (``required`` without a working bwrap).
REFUSED = 125
#: Exit status when the command cannot be found or started.
NOT_STARTED = 127
#: Exit status of a run stopped at its timeout (as coreutils' timeout).
TIMED_OUT = 124
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: Runs started by root become one of these uids (each its own: no limit is shared).
RUN_UIDS = range(0x7A000000, 0x7A000000 + (1 << 20))
#: How long the run's end may take (bwrap tearing down) once collected or killed.
END_GRACE = 10.0
#: Below this many free bytes, a run's memory-backed folder counts as full.
FULL_MARGIN = 64 << 10
#: A failed run that had this share of its process cap (watched, without a cgroup) hit it.
NEAR_LIMIT = 0.9
#: What a run says when RLIMIT_NPROC refuses it a process or a thread (Python, C).
NO_MORE_TASKS = ("can't start new thread", "Resource temporarily unavailable", "BlockingIOError")


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ramp_fleet.sandbox.runner SPEC_JSON", file=sys.stderr)
        return 2
    spec = SandboxSpec.from_json(argv[0]).resolved()
    host = socket.gethostname()
    try:
        decision = decide(spec.isolation.mode, spec.checked)
    except SandboxUnavailable as exc:
        message = f"{exc} (host {host})"
        say(message)
        _write(spec, Report(False, refused=message))
        return REFUSED
    if decision.note:
        note = f"{decision.note} (host {host})"
        decision = replace(decision, note=note)
        say(note)
    run = Run(spec, decision)
    try:
        report = run.run()
    except (FileNotFoundError, PermissionError, OSError) as exc:
        say(f"cannot start the run: {exc}")
        _write(spec, Report(decision.isolate, note=decision.note, returncode=NOT_STARTED))
        return NOT_STARTED
    _write(spec, report)
    return report.returncode if report.returncode is not None else NOT_STARTED


def say(message: str) -> None:
    """One line of the runner's own in the run's log."""
    print(f"ramp-fleet: {message}", file=sys.stderr, flush=True)


def _write(spec: SandboxSpec, report: Report) -> None:
    if spec.report:
        report.write(spec.report)


@dataclass
class _Status:
    """What the sandbox's first process said when ramp-test ended."""

    returncode: int
    maxrss_kb: int


class Run:
    """One run: prepared, started, watched, collected, measured, cleaned up."""

    def __init__(self, spec: SandboxSpec, decision: Decision):
        self.spec = spec
        self.decision = decision
        self.isolation = spec.isolation
        self.cgroup: cgroups.RunCgroup | None = None
        self.cgroup_problem: str | None = None
        self.watchdog: Watchdog | None = None
        self.child: subprocess.Popen[bytes] | None = None
        #: The sandbox's first process (bwrap's init), as this machine sees it.
        self.sandbox_pid: int | None = None
        self.status: _Status | None = None
        self.stopped_by: str | None = None  # "timeout", "memory", "signal N"
        self._fds: dict[str, int] = {}
        self._go: int | None = None
        self.notes: list[str] = [] if decision.note is None else [decision.note]

    # -- the whole run ---------------------------------------------------------------------

    def run(self) -> Report:
        started = time.monotonic()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in FORWARDED}
        try:
            argv, env, pass_fds = self._prepare()
            self.child = subprocess.Popen(
                argv, env=env, cwd=None if self.decision.isolate else self.spec.cwd,
                stdin=subprocess.DEVNULL, pass_fds=pass_fds, start_new_session=True,
                preexec_fn=None if self.cgroup is None else self.cgroup.join)
            self._close_child_ends()
            self._watch_memory()
            self._wait(started)
            results = self._collect()
            limit = self._limit_hit()
            if self.watchdog is not None:
                self.watchdog.stop()
            usage = self._usage()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._end()
        return self._report(started, results, limit, usage)

    # -- before ------------------------------------------------------------------------------

    def _prepare(self) -> tuple[list[str], dict[str, str] | None, tuple[int, ...]]:
        program = locate(self.spec.command[0])
        command = [program, *self.spec.command[1:]]
        isolate = self.decision.isolate
        self._make_cgroup(isolate)
        if not isolate:
            return command, {**os.environ, **self.spec.variables}, ()
        python = run_python(program)
        if python is None:
            raise FileNotFoundError(f"no Python interpreter for {program}")
        for name in ("info", "status", "go"):
            read_end, write_end = os.pipe2(os.O_CLOEXEC)
            self._fds[f"{name}_r"], self._fds[f"{name}_w"] = read_end, write_end
        privileged = os.geteuid() == 0
        uid = RUN_UIDS[secrets.randbelow(len(RUN_UIDS))] if privileged else -1
        nproc = self.isolation.max_processes or 0
        if self.cgroup is not None and "pids" in self.cgroup.folders:
            nproc = 0  # the cgroup holds it, for the whole run
        inner = [python, "-I", "-S", "-c", _inner_source(),
                 str(self._fds["status_w"]), str(self._fds["go_r"]), str(uid), str(uid),
                 str(nproc), STAGING, self.spec.submission_dir, "--", *command]
        view = replace(run_view(self.spec, program, inner), privileged=privileged,
                       info_fd=self._fds["info_w"], seccomp_fd=self._seccomp())
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
            self.cgroup, self.cgroup_problem = made.cgroup, made.problem

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
            self.watchdog = Watchdog(self.child.pid, limit, self._over_memory).start()

    # -- during ------------------------------------------------------------------------------

    def _wait(self, started: float) -> None:
        """Until ramp-test has ended (and said so), the process is gone, or the run is stopped."""
        assert self.child is not None
        pidfd = os.pidfd_open(self.child.pid)
        deadline = None if self.spec.timeout is None else started + self.spec.timeout
        try:
            while self.stopped_by is None:
                wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if wait <= 0:
                    self.stop("timeout")
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
        """``training_output`` into the spec's results: (handed back, why it was refused)."""
        if self.spec.results is None or self.stopped_by is not None:
            return False, None
        if self.decision.isolate:
            if self.status is None or self.status.returncode != 0 or self.sandbox_pid is None:
                return False, None
            trusted = f"/proc/{self.sandbox_pid}/root"
            path = trusted + self.spec.training_output
        else:
            assert self.child is not None
            self.child.wait()
            self._kill()  # whatever the run left running must not change what is collected
            if self.child.returncode != 0:
                return False, None
            trusted, path = "/", self.spec.training_output
        try:
            folder = open_folder(path, trusted=trusted)
        except FileNotFoundError:
            return False, None
        except OSError as exc:
            return False, (f"training_output is not a folder ({exc.strerror}: a link, a FIFO or "
                           "a file put in its place): refused")
        try:
            self._hand_back(folder)
        except UnsafeResult as exc:
            return False, str(exc)
        finally:
            os.close(folder)
        return True, None

    def _hand_back(self, folder: int) -> None:
        results = self.spec.results
        assert results is not None
        caps = self.spec.result_caps
        limits = Limits(caps.max_bytes, caps.max_files, caps.max_file_bytes)
        staging = f"{results}.part"
        _remove(staging)
        try:
            if self.spec.results_as == "folder":
                fill(staging, limits, entries(folder, "refuse"))
            else:
                with open(staging, "xb") as out:
                    pack(entries(folder, "refuse"), out, Tally(limits), self.spec.compresslevel)
            _remove(results)
            os.rename(staging, results)
        finally:
            _remove(staging)

    def _limit_hit(self) -> str | None:
        """The one line that says which limit ended the run, if one did."""
        if self.stopped_by == "memory" or (self.cgroup is not None and self.cgroup.oom_killed()):
            return self._memory_message()
        returncode = self.status.returncode if self.status is not None else None
        if self.stopped_by is not None or returncode == 0:
            return None
        limit = self.isolation.max_processes
        if self.cgroup is not None and self.cgroup.hit_process_limit():
            return (f"the run reached its limit of {limit} processes and threads "
                    f"(worker.isolation.max_processes, {self.cgroup.kind} pids)")
        uncounted = self.cgroup is None or "pids" not in self.cgroup.folders
        if limit is not None and self.decision.isolate and uncounted:
            seen = self.watchdog.peak_tasks if self.watchdog is not None else 0
            if seen >= limit * NEAR_LIMIT or any(marker in _log_tail() for marker in NO_MORE_TASKS):
                return (f"the run reached its limit of {limit} processes and threads "
                        f"(worker.isolation.max_processes, RLIMIT_NPROC of the run's own uid): "
                        "it could start no more")
        full = self._full_folder()
        if full is not None:
            return (f"the run filled the {self.isolation.disk_mb} MB it may write in {full} "
                    "(worker.isolation.disk_mb)")
        return None

    def _memory_message(self) -> str:
        limit = self.isolation.memory_mb
        if self.watchdog is not None and self.watchdog.over_mb is not None:
            how = (f"watchdog: the resident memory of the run's processes, sampled every "
                   f"{INTERVAL * 1000:.0f} ms")
            reached = f"it had reached {self.watchdog.over_mb:.0f} MB when it was stopped"
        else:
            kind = self.cgroup.kind if self.cgroup is not None else "cgroup"
            how = f"{kind}: the resident memory of the whole run"
            peak = self.cgroup.peak_mb() if self.cgroup is not None else None
            reached = ("the kernel stopped it at the limit" if peak is None
                       else f"it reached {peak:.0f} MB and the kernel stopped it")
        return (f"the run went over its memory limit of {limit} MB "
                f"(worker.isolation.memory_mb, {how}); {reached}")

    def _full_folder(self) -> str | None:
        """The run's memory-backed folder that is full, seen from outside, if one is."""
        if self.sandbox_pid is None:
            return None
        for inside in (self.spec.submission_dir, SANDBOX_TMP, SANDBOX_HOME, SANDBOX_SHM):
            try:
                info = os.statvfs(f"/proc/{self.sandbox_pid}/root{inside}")
            except OSError:
                continue
            if info.f_bavail * info.f_frsize < FULL_MARGIN:
                return "its own folder" if inside == self.spec.submission_dir else inside
        return None

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

    # -- the report ----------------------------------------------------------------------------

    def _report(self, started: float, results: tuple[bool, str | None], limit: str | None,
                usage: Usage) -> Report:
        assert self.child is not None
        returncode = self._returncode()
        if limit is not None:
            say(limit)
        refused = results[1]
        if refused is not None:
            say(f"training_output refused: {refused}")
        return Report(
            isolated=self.decision.isolate,
            note="; ".join(self.notes) or None,
            usage=usage,
            returncode=returncode,
            timed_out=self.stopped_by == "timeout",
            limit=limit,
            results_refused=refused,
            has_results=results[0],
            duration=time.monotonic() - started,
        )

    def _returncode(self) -> int:
        assert self.child is not None
        if self.stopped_by == "timeout":
            return TIMED_OUT
        if self.status is not None and self.stopped_by is None:
            return self.status.returncode
        code = self.child.returncode
        return code if code >= 0 else 128 - code

    def _usage(self) -> Usage:
        limit = self.isolation.memory_mb
        peak, peak_by = None, ""
        if self.cgroup is not None and "memory" in self.cgroup.folders:
            peak, peak_by = self.cgroup.peak_mb(), self.cgroup.kind
        if peak is None:  # what the watchdog saw, and the kernel's peak of the largest process
            sampled = self.watchdog.peak_mb if self.watchdog is not None else 0.0
            largest = self.status.maxrss_kb / 1024 if self.status is not None else 0.0
            if sampled or largest:
                peak = max(sampled, largest)
                peak_by = (f"sampled every {INTERVAL * 1000:.0f} ms" if sampled >= largest
                           else "its largest process")
        enforced_by = ""
        if limit is not None:
            enforced_by = "watchdog" if self.watchdog is not None and self.watchdog.limit_mb \
                else (self.cgroup.kind if self.cgroup is not None else "")
        oom = self.stopped_by == "memory" or (self.cgroup is not None and self.cgroup.oom_killed())
        return Usage(limit, enforced_by, peak, peak_by, oom)


def _log_tail(size: int = 64 << 10) -> str:
    """The end of the run's log, when it is a file (the runner's own output is the log)."""
    try:
        length = os.fstat(1).st_size
        return os.pread(1, size, max(0, length - size)).decode("utf-8", "replace")
    except OSError:
        return ""


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


def _inner_source() -> str:
    source = pkgutil.get_data("ramp_fleet.sandbox", "inner.py")
    assert source is not None
    return source.decode("utf-8")


def _remove(path: str) -> None:
    import shutil

    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
