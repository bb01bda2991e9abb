"""The runner, for real: what a run may do, what stops it, what it hands back.

Each test starts ``python -m ramp_fleet.sandbox.runner`` on a small Python
program standing in for ramp-test (the contract and isolation suites run
real ramp-test through every backend). Paths with no usable cgroup are
taken for real too: the runner is started in a mount namespace where
``/sys/fs/cgroup`` is an empty folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from ramp_fleet.archive import pack_submission
from ramp_fleet.sandbox import cgroups
from ramp_fleet.sandbox.run import RUN_UIDS
from ramp_fleet.sandbox.runner import TIMED_OUT
from ramp_fleet.sandbox.runner import stop as runner_stop
from ramp_fleet.sandbox.spec import Isolation, Report, RunSpec
from tests.conftest import bwraps_under, needs_bwrap
from tests.processes import unique
from tests.real_parts import require

pytestmark = needs_bwrap


#: Stands in for ramp-test: runs the submission's ``code.py`` from the run's own folder.
FAKE_RAMP_TEST = """#!{python}
import runpy, sys
sys.argv = ["code.py"]
runpy.run_path("code.py", run_name="__main__")
"""


@dataclass(frozen=True)
class Sent:
    """A run folder with its inputs, ready for the runner."""

    folder: Path
    program: Path

    @property
    def report(self) -> Path:
        return self.folder / "report.json"

    @property
    def submission_dir(self) -> Path:
        return self.folder / "submissions" / "s"

    @property
    def log(self) -> Path:
        return self.folder / "log"


def spec(tmp_path: Path, code: str, **isolation: object) -> Sent:
    source = tmp_path / "source" / "s"
    source.mkdir(parents=True, exist_ok=True)
    (source / "code.py").write_text(textwrap.dedent(code))
    program = tmp_path / "env" / "bin" / "ramp-test"  # an environment of its own, as a venv
    program.parent.mkdir(parents=True, exist_ok=True)
    program.write_text(FAKE_RAMP_TEST.format(python=sys.executable))
    program.chmod(0o755)
    timeout = isolation.pop("timeout", 60.0)
    folder = tmp_path / "run"
    folder.mkdir()
    (tmp_path / "kit").mkdir(exist_ok=True)
    sent = RunSpec(submission="s", kit_dir=str(tmp_path / "kit"), data_dir=str(tmp_path / "kit"),
                   ramp_test=str(program), isolation=Isolation(**isolation),  # type: ignore[arg-type]
                   timeout=timeout)  # type: ignore[arg-type]
    (folder / "spec.json").write_text(sent.to_json())
    (folder / "submission.tar.gz").write_bytes(pack_submission(source))
    return Sent(folder, program)


def start(sent: Sent, no_cgroup: bool = False) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "ramp_fleet.sandbox.runner", str(sent.folder)]
    if no_cgroup:
        require("unshare and mount (util-linux)", shutil.which("unshare") is not None)
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount -t tmpfs none /sys/fs/cgroup && exec "$@"', "sh", *argv]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run(sent: Sent, no_cgroup: bool = False) -> tuple[int, str, Report]:
    """The runner's exit status, the run's log, and the runner's report."""
    proc = start(sent, no_cgroup)
    output, _ = proc.communicate(timeout=300)
    log = sent.log.read_text() if sent.log.exists() else ""
    report = Report.read(sent.report)
    assert report is not None, output + log
    return proc.returncode, log, report


def results(sent: Sent) -> list[str]:
    with tarfile.open(sent.folder / "results.tar.gz") as archive:
        return sorted(archive.getnames())


WRITES_OUTPUT = """
import os
os.makedirs("training_output/fold_0")
with os.fdopen(os.open("training_output/fold_0/scores.csv", os.O_WRONLY | os.O_CREAT), "w") as f:
    f.write("step,acc\\ntrain,1\\n")
"""


def test_an_honest_run_is_collected_by_the_runner_and_measured(tmp_path: Path) -> None:
    sent = spec(tmp_path, WRITES_OUTPUT + "print('done')")
    code, output, report = run(sent)
    assert (code, report.returncode, report.has_results) == (0, 0, True), output
    assert results(sent) == ["fold_0", "fold_0/scores.csv"]
    assert report.isolated and report.limit is None and report.usage is not None
    assert report.usage.peak_mb is not None and report.usage.peak_mb > 1
    assert not (sent.submission_dir / "training_output").exists(), "made in its own folder"


@pytest.mark.skipif(os.geteuid() != 0, reason="as another user the run is that user")
def test_as_root_a_run_is_an_unprivileged_uid_of_its_own_inside_and_out(tmp_path: Path) -> None:
    sent = spec(tmp_path, """
        import os, time
        print("ids", os.getuid(), os.geteuid(), os.getgid(), os.getgroups(), flush=True)
        time.sleep(3)
    """)
    proc = start(sent)
    deadline = time.monotonic() + 60
    seen: set[int] = set()
    while time.monotonic() < deadline and not seen:
        for process in psutil.process_iter(["cmdline", "uids"]):
            if str(sent.program) in (process.info["cmdline"] or []) \
                    and "-c" not in (process.info["cmdline"] or []):
                seen = set(process.info["uids"] or ())
        time.sleep(0.1)
    proc.communicate(timeout=60)
    output = sent.log.read_text()
    assert seen and all(uid in RUN_UIDS for uid in seen), (seen, output)
    uid = next(iter(seen))
    assert f"ids {uid} {uid} {uid} []" in output


SYSCALLS = """
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def attempt(name, *args):
    ctypes.set_errno(0)
    result = libc.syscall(*args)
    print(name, "allowed" if result >= 0 else errno.errorcode[ctypes.get_errno()], flush=True)
NR = {"x86_64": dict(ptrace=101, keyctl=250, unshare=272, mount=165, bpf=321, clone3=435,
                     setns=308),
      "aarch64": dict(ptrace=117, keyctl=219, unshare=97, mount=40, bpf=280, clone3=435,
                      setns=268)}[os.uname().machine]
attempt("ptrace", NR["ptrace"], 16, os.getppid(), 0, 0)       # PTRACE_ATTACH
attempt("keyctl", NR["keyctl"], 0, -3, 0)                      # KEYCTL_GET_KEYRING_ID
attempt("unshare", NR["unshare"], 0x10000000)                  # CLONE_NEWUSER
attempt("mount", NR["mount"], b"none", b"/tmp", b"tmpfs", 0, 0)
attempt("bpf", NR["bpf"], 0, 0, 0)
attempt("clone3", NR["clone3"], 0, 0)
attempt("setns", NR["setns"], 0, 0)
def write(path):
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT))
        return "writable"
    except OSError as exc:
        return errno.errorcode[exc.errno]
print("root", write("/x"), "dev", write("/dev/x"), flush=True)
"""


def test_system_calls_a_submission_never_needs_are_refused(tmp_path: Path) -> None:
    code, output, _ = run(spec(tmp_path, SYSCALLS))
    assert code == 0, output
    for name in ("ptrace", "keyctl", "unshare", "mount", "bpf", "setns"):
        assert f"{name} EPERM" in output, output
    assert "clone3 ENOSYS" in output
    assert "root EROFS dev EROFS" in output


FILLS = """
import errno, os, sys
where = sys.argv[1] if len(sys.argv) > 1 else {where!r}
written = 0
try:
    with open(os.path.join(where, "fill"), "wb") as out:
        while written < (2 << 30):
            out.write(b"x" * (1 << 20))
            out.flush()
            written += 1 << 20
except OSError as exc:
    print("stopped", errno.errorcode[exc.errno], written >> 20, flush=True)
    raise SystemExit(1)
"""


@pytest.mark.parametrize(("where", "cap_mb"), [(".", 64), ("/tmp", 64), ("/dev/shm", 256)])
def test_what_a_run_may_write_is_capped_and_named(tmp_path: Path, where: str, cap_mb: int) -> None:
    code, output, report = run(spec(tmp_path, FILLS.format(where=where), disk_mb=64))
    assert code == 1
    assert "stopped ENOSPC" in output
    written = int(output.split("stopped ENOSPC ")[1].split()[0])
    assert cap_mb - 2 <= written <= cap_mb
    place = {".": "its own folder"}.get(where, where)
    assert report.limit == (f"the run filled the 64 MB it may write in {place} "
                            "(worker.isolation.disk_mb)")


BOMB = """
import threading, time
started = 0
try:
    for _ in range(2000):
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        started += 1
except RuntimeError as exc:
    print("stopped at", started, exc, flush=True)
    raise SystemExit(1)
print("started", started)
"""


@pytest.mark.parametrize("no_cgroup", [False, True], ids=["cgroup", "no cgroup"])
def test_max_processes_holds_whoever_runs_the_dispatcher(tmp_path: Path, no_cgroup: bool) -> None:
    code, output, report = run(spec(tmp_path, BOMB, max_processes=50), no_cgroup=no_cgroup)
    assert code == 1 and "stopped at" in output, output
    assert int(output.split("stopped at ")[1].split()[0]) < 50
    if not no_cgroup and cgroups.available()[0] is not None:
        assert report.limit is not None and "limit of 50 processes and threads" in report.limit


HOG = """
chunks = []
for _ in range(64):
    chunk = bytearray(64 << 20)
    chunk[::4096] = b"1" * len(chunk[::4096])
    chunks.append(chunk)
print("survived")
"""
HONEST = """
import time
chunk = bytearray(150 << 20)
chunk[::4096] = b"1" * len(chunk[::4096])
time.sleep(0.5)
print("fine")
"""


@pytest.mark.parametrize("no_cgroup", [False, True], ids=["cgroup", "watchdog"])
def test_memory_mb_is_the_resident_memory_of_the_run(tmp_path: Path, no_cgroup: bool) -> None:
    kind = None if no_cgroup else cgroups.available()[0]
    require("a writable cgroup hierarchy", no_cgroup or kind is not None, "run as root")
    honest = run(spec(tmp_path / "honest", HONEST, memory_mb=400), no_cgroup)
    assert honest[0] == 0 and "fine" in honest[1], honest[1]
    assert honest[2].usage is not None and honest[2].usage.peak_mb is not None
    assert 150 < honest[2].usage.peak_mb < 400
    code, output, report = run(spec(tmp_path / "hog", HOG, memory_mb=400), no_cgroup)
    assert code != 0 and "survived" not in output
    assert report.usage is not None and report.usage.oom_killed
    how = ("watchdog: the resident memory of the run's processes, sampled every 100 ms"
           if no_cgroup else f"{kind}: the resident memory of the whole run")
    assert report.limit is not None and report.limit.startswith(
        f"the run went over its memory limit of 400 MB (worker.isolation.memory_mb, {how}); ")
    assert report.limit in output, "the log says it too"
    if no_cgroup:
        reached = float(report.limit.split("reached ")[1].split(" MB")[0])
        assert 400 < reached < 400 + 64 * 3, "stopped within a few samples"


def test_the_timeout_kills_the_whole_run(tmp_path: Path) -> None:
    marker = unique("sleeper-")
    sent = spec(tmp_path, f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", {marker!r}],
                         start_new_session=True)
        time.sleep(600)
    """, timeout=3.0)
    began = time.monotonic()
    code, _, report = run(sent)
    assert code == TIMED_OUT and report.timed_out and report.returncode == TIMED_OUT
    assert time.monotonic() - began < 30
    assert not [p for p in psutil.process_iter(["cmdline"])
                if marker in (p.info["cmdline"] or [])]


SWAPS = WRITES_OUTPUT + """
import shutil
shutil.rmtree("training_output")
{swap}
"""


@pytest.mark.parametrize(("swap", "why"), [
    ("os.mkfifo('training_output')", "Not a directory"),
    ("os.symlink('/etc', 'training_output')", "Not a directory"),
    ("os.symlink('training_output', 'training_output')", "Not a directory"),
    ("open('training_output', 'w').write('a regular file')", "Not a directory"),
], ids=["fifo", "link", "loop", "file"])
def test_a_training_output_swapped_after_the_run_is_refused_at_once(
    tmp_path: Path, swap: str, why: str
) -> None:
    began = time.monotonic()
    code, _, report = run(spec(tmp_path, SWAPS.format(swap=swap)))
    assert time.monotonic() - began < 30, "never blocks"
    assert code == 0 and not report.has_results
    assert report.results_refused == (f"training_output is not a folder ({why}: a link, a FIFO "
                                      "or a file put in its place): refused")
    assert not (tmp_path / "run" / "results.tar.gz").exists()


def test_a_link_inside_training_output_is_refused(tmp_path: Path) -> None:
    code, _, report = run(spec(tmp_path, WRITES_OUTPUT + "os.symlink('/etc/passwd', "
                                                         "'training_output/fold_0/y.csv')"))
    assert code == 0 and not report.has_results
    assert report.results_refused is not None and "'fold_0/y.csv' is a symbolic link" in \
        report.results_refused


def test_what_a_run_left_running_cannot_change_what_is_collected(tmp_path: Path) -> None:
    sent = spec(tmp_path, WRITES_OUTPUT + """
import shutil, time
if os.fork() == 0:
    os.setsid()
    time.sleep(1.5)  # after ramp-test has ended: swap the results for a link
    shutil.rmtree("training_output")
    os.symlink("/etc", "training_output")
    time.sleep(600)
""")
    code, output, report = run(sent)
    assert (code, report.has_results, report.results_refused) == (0, True, None), output
    assert results(sent) == ["fold_0", "fold_0/scores.csv"]


def test_a_signal_to_the_runner_stops_the_run_and_is_reported(tmp_path: Path) -> None:
    sent = spec(tmp_path, "import time; print('started', flush=True); time.sleep(600)")
    proc = start(sent)
    deadline = time.monotonic() + 60
    while not (sent.log.exists() and "started" in sent.log.read_text()):
        assert time.monotonic() < deadline and proc.poll() is None, "the run never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    report = Report.read(sent.report)
    assert report is not None and report.returncode == 128 + signal.SIGKILL, sent.log.read_text()
    assert json.loads(sent.report.read_text())["has_results"] is False


def _tree(pid: int) -> list[int]:
    """``pid``'s descendants, read straight from /proc: fast enough to see bwrap start."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError, ValueError):
            for task in os.listdir(f"/proc/{current}/task"):
                kids = Path(f"/proc/{current}/task/{task}/children").read_text().split()
                pending += [int(kid) for kid in kids]
                found += [int(kid) for kid in kids]
    return found


def _run_bwrap(pid: int) -> bool:
    """Whether ``pid`` is a run's bwrap (the probe's has no ``--info-fd``)."""
    try:
        return (Path(f"/proc/{pid}/comm").read_text().strip() == "bwrap"
                and b"--info-fd" in Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False


@pytest.mark.parametrize("kill", ["runner-sigkilled", "runner-stopped"])
def test_a_runner_killed_while_bwrap_sets_the_sandbox_up_leaves_no_bwrap(
    tmp_path: Path, kill: str
) -> None:
    """bwrap's first process clones the sandbox's, which waits on an eventfd for it: killed
    in between (the runner SIGKILLed: its --die-with-parent, or SIGPIPE on --info-fd; a tree
    kill that listed the pids before the clone), the clone waited forever, parent 1. The
    kill lands as bwrap starts, each time."""
    leaks = []
    for attempt in range(8):
        sent = spec(tmp_path / str(attempt), "import time; time.sleep(60)")
        proc = subprocess.Popen([sys.executable, "-m", "ramp_fleet.sandbox.runner",
                                 str(sent.folder)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, cwd=sent.folder)
        deadline = time.monotonic() + 30
        while not any(_run_bwrap(pid) for pid in _tree(proc.pid)):
            assert time.monotonic() < deadline and proc.poll() is None, "bwrap never started"
        if kill == "runner-sigkilled":  # as `pkill -KILL -s SESSION`, an OOM kill, a crash
            proc.kill()
        else:
            runner_stop(proc, grace=0)
        proc.wait()
        time.sleep(0.5)  # what is left of the sandbox has ended by now, or never will
        if left := wait_for_none(sent.folder):
            leaks.append((attempt, [(p.pid, p.ppid()) for p in left]))
            for each in left:
                with contextlib.suppress(psutil.Error):
                    each.kill()
    if late := wait_for_none(tmp_path, timeout=1.0):  # all of them, once more, at the end
        leaks.append(("any", [(p.pid, p.ppid()) for p in late]))
        for each in late:
            with contextlib.suppress(psutil.Error):
                each.kill()
    assert leaks == [], f"lone bwrap processes left (attempt, [(pid, ppid)]): {leaks}"


def wait_for_none(folder: Path, timeout: float = 5.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while (left := bwraps_under(folder)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_a_handed_shelf_that_is_a_link_is_refused_and_nothing_is_moved(tmp_path: Path) -> None:
    """Labels hidden: the sandbox sees the run folder's ``handed/`` read-only; a link there
    would show it another folder, and the sent file must not be moved through it."""
    sent = spec(tmp_path, "print('ran')", labels="hidden")
    spec_file = sent.folder / "spec.json"
    spec_file.write_text(json.dumps({**json.loads(spec_file.read_text()),
                                     "handed": "handed.pkl"}))
    (sent.folder / "handed.pkl").write_bytes(b"data")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (sent.folder / "handed").symlink_to(elsewhere)
    code, log, report = run(sent)
    assert report.refused is not None and "handed is not a folder" in report.refused, log
    assert code != 0 and "ran" not in log
    assert list(elsewhere.iterdir()) == [] and (sent.folder / "handed.pkl").is_file()
