"""The runner: one submission's ``ramp-test`` run on this machine, from its inputs to its report.

    python -m ramp_fleet.sandbox.runner RUN_FOLDER
    python3 -I -S runner.pyz RUN_FOLDER          (on a host without ramp-fleet)

Every backend runs a submission through it, on the machine of the run: the
conda worker and custom workers here, the Dask task on its worker host, the
AWS worker on its instance (shipped as a zip application,
:mod:`ramp_fleet.sandbox.zipapp`). A backend only moves the run folder's
inputs there and its outputs back:

====================  =====================================================
``spec.json``         in: what to run (:class:`~ramp_fleet.sandbox.spec.RunSpec`)
``submission.tar.gz`` in: the submission, as the dispatcher packed it
``submissions/<S>/``  the run's copy of it, unpacked here by our own code
``handed/handed.pkl``  in, ``labels: hidden``: the data the trusted scorer hands the run
                      (sent as ``handed.pkl``, or put here by a local backend after the
                      start); the sandbox sees ``handed/`` read-only
``log``               out: the run's output, and the runner's own lines
``results.tar.gz``    out: ``training_output``, packed by the runner
``report.json``       out, last: the :class:`~ramp_fleet.sandbox.spec.Report`
====================  =====================================================

The runner decides (``mode`` and this machine's bwrap: ``required`` without
a working one, the run is refused, exit status :data:`REFUSED`), finds
``ramp-test``, unpacks the submission, and runs it (:class:`~ramp_fleet.sandbox.run.Run`:
limits, sandbox, deadline, the kill of the whole tree, collection, measure).
Its exit status is the run's (128 + N for a signal N), 124 at the timeout,
or :data:`REFUSED` / :data:`NOT_STARTED`.

:func:`start` and :func:`stop` are how code on a worker host (the Dask
task) starts and stops it. Standard library only, Python 3.10 or newer: on
an instance it runs with the system Python, outside the event's environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace

from ramp_fleet.sandbox.command import SandboxUnavailable, decide
from ramp_fleet.sandbox.programs import locate
from ramp_fleet.sandbox.run import NOT_STARTED, TIMED_OUT, Run, Target, say
from ramp_fleet.sandbox.spec import (
    HANDED_FILE,
    HANDED_SHELF,
    LOG,
    REPORT,
    RESULTS,
    SPEC,
    SUBMISSION,
    SUBMISSIONS,
    Report,
    RunSpec,
)
from ramp_fleet.sandbox.tar import unpack
from ramp_fleet.sandbox.tree import Limits, UnsafeResult
from ramp_fleet.sandbox.watchdog import tree as process_tree

__all__ = ["NOT_STARTED", "REFUSED", "TIMED_OUT", "kill_groups", "main", "start", "stop"]

#: Exit status of a run refused before it started (no sandbox where one is required...).
REFUSED = 125
#: The largest spec accepted.
MAX_SPEC = 1 << 20
#: What the submission's archive may hold (the dispatcher packed it: this is a backstop).
SUBMISSION_LIMITS = Limits(max_bytes=4 << 30, max_files=200_000, max_file_bytes=4 << 30)


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ramp_fleet.sandbox.runner RUN_FOLDER", file=sys.stderr)
        return 2
    folder = os.path.abspath(argv[0])
    parent = os.getppid()
    os.chdir(folder)
    report = _run(folder, parent)
    report.write(os.path.join(folder, REPORT))
    return report.returncode if report.returncode is not None else NOT_STARTED


def _run(folder: str, parent: int) -> Report:
    host = socket.gethostname()
    try:
        spec = _read_spec(os.path.join(folder, SPEC)).resolved(folder)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        _log_to(os.path.join(folder, LOG))
        return _refused(f"the run's spec cannot be read ({exc.__class__.__name__}: {exc})",
                        host, NOT_STARTED)
    if spec.log_in_folder:
        _log_to(os.path.join(folder, LOG))
    try:
        decision = decide(spec.isolation.mode, spec.checked)
        program = locate(spec.ramp_test, spec.python_env)
        _unpack_submission(folder, spec.submission)
        spec = _shelve_handed(spec, folder, decision.isolate)
    except SandboxUnavailable as exc:
        return _refused(str(exc), host, REFUSED)
    except (FileNotFoundError, UnsafeResult) as exc:
        return _refused(str(exc), host, NOT_STARTED)
    if decision.note:
        decision = replace(decision, note=f"{decision.note} (host {host})")
        say(decision.note or "")
    target = _target(folder, spec)
    run = Run(spec, decision, program, folder, target, parent if spec.watch_parent else None)
    try:
        return run.run()
    except OSError as exc:
        say(f"cannot start the run: {exc}")
        return Report(decision.isolate, note=decision.note, returncode=NOT_STARTED)


def _shelve_handed(spec: RunSpec, folder: str, isolated: bool) -> RunSpec:
    """``labels: hidden`` runs only in the sandbox, on the data the trusted scorer handed:
    its file goes into the run folder's shelf, the folder the sandbox sees (a local backend
    may put it there itself, later: ``handed_later``). Returns the spec naming it there."""
    if spec.isolation.labels != "hidden":
        return spec
    if not isolated:
        raise SandboxUnavailable("labels: hidden needs the sandbox, and this run would not be "
                                 "isolated")
    shelf = os.path.join(folder, HANDED_SHELF)
    with contextlib.suppress(FileExistsError):
        os.mkdir(shelf, 0o755)
    if os.path.islink(shelf) or not os.path.isdir(shelf):
        raise FileNotFoundError(f"the run folder's {HANDED_SHELF} is not a folder")
    os.chmod(shelf, 0o755)  # noqa: S103 (the run's own uid reads it: root's sandbox is not ours)
    shelved = os.path.join(shelf, HANDED_FILE)
    sent = spec.handed
    if sent is not None and sent != shelved and os.path.lexists(sent):
        if os.path.islink(sent) or not os.path.isfile(sent):
            raise FileNotFoundError(f"the data handed to the run is not a file ({sent})")
        os.chmod(sent, 0o644)
        os.replace(sent, shelved)
    elif os.path.lexists(shelved):
        if os.path.islink(shelved) or not os.path.isfile(shelved):
            raise FileNotFoundError(f"the data handed to the run is not a file ({shelved})")
        os.chmod(shelved, 0o644)
    elif not spec.handed_later:
        raise FileNotFoundError(f"labels: hidden and no data handed to the run "
                                f"({sent or 'none named in its spec'})")
    return replace(spec, handed=shelved)


def _refused(message: str, host: str, code: int) -> Report:
    """The run did not start, for a reason of this host: said in the log and the report."""
    line = f"{message} (host {host})"
    say(line)
    return Report(False, refused=line, returncode=code)


def _read_spec(path: str) -> RunSpec:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return RunSpec.from_json(os.read(fd, MAX_SPEC))
    finally:
        os.close(fd)


def _unpack_submission(folder: str, submission: str) -> None:
    """The submission's archive into ``submissions/<S>`` (then gone); a folder the backend put
    there itself is taken as it is."""
    archive = os.path.join(folder, SUBMISSION)
    destination = os.path.join(folder, SUBMISSIONS, submission)
    if not os.path.lexists(archive):
        if not os.path.isdir(destination):
            raise FileNotFoundError(f"the run folder has no {SUBMISSION}")
        return
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    fd = os.open(archive, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as raw:
        unpack(raw, destination, SUBMISSION_LIMITS)
    os.unlink(archive)


def _target(folder: str, spec: RunSpec) -> Target | None:
    if spec.results_as == "folder":
        return None if spec.results is None else Target(spec.results, "folder")
    return Target(os.path.join(folder, RESULTS), "archive", spec.compresslevel)


def _log_to(path: str) -> None:
    """The runner's output, and the run's, go to the run folder's log."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


# -- for code on a worker host: start the runner, stop it ------------------------------------


def start(folder: str, python: str | None = None) -> subprocess.Popen[bytes]:
    """Start the runner on ``folder`` (its inputs in place), in a session of its own."""
    argv = [python or sys.executable, "-m", "ramp_fleet.sandbox.runner", folder]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, cwd=folder)


def stop(runner: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Stop a runner: asked first (it kills its run's tree and reports), then killed, with
    everything of its session."""
    if runner.poll() is not None:
        return
    with contextlib.suppress(OSError):
        runner.send_signal(signal.SIGTERM)
    try:
        runner.wait(timeout=grace)
        return
    except subprocess.TimeoutExpired:
        pass
    victims = process_tree(runner.pid)  # listed first: the run's own session included
    kill_groups(victims)
    for pid in victims:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    runner.wait()


def kill_groups(pids: Sequence[int]) -> None:
    """SIGKILL the process groups of ``pids`` (but ours), each at once.

    A list of pids misses what is forked after it was made: bwrap's clone of
    the sandbox's first process, which then waits forever for a bwrap killed
    from the list (:mod:`ramp_fleet.sandbox.guard`). A group is signalled by
    the kernel as a whole, a process being forked included.
    """
    groups = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            groups.add(os.getpgid(pid))
    for group in groups - {os.getpgrp()}:
        with contextlib.suppress(OSError):
            os.killpg(group, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
