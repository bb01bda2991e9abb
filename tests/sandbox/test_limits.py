"""Per-run limits: the over-limit message, cgroup v2 (on a fake cgroupfs), rlimits for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ramp_fleet.sandbox.limits import (
    CGROUP_V2,
    RLIMIT,
    Cgroup,
    Limits,
    Usage,
    cgroup_host,
    over_limit_message,
    read_peak,
    rlimit_prefix,
)

RLIMITED = Usage(1024, RLIMIT, 812.4)


@pytest.mark.parametrize(("usage", "returncode", "log", "expected"), [
    (RLIMITED, 1, "Traceback...\nMemoryError\n",
     "the run went over its memory limit of 1024 MB (worker.isolation.memory_mb, RLIMIT_AS: "
     "the address space of each process); peak memory 812 MB"),
    (Usage(1024, CGROUP_V2, 1024.0, oom_killed=True), 137, "",
     "the run went over its memory limit of 1024 MB (worker.isolation.memory_mb, cgroup v2: "
     "the run); peak memory 1024 MB"),
    (Usage(1024, RLIMIT, None), 139, "",
     "the run crashed (signal 11) under its memory limit of 1024 MB (worker.isolation.memory_mb, "
     "RLIMIT_AS: the address space of each process), as a failed allocation does: probably "
     "over the limit; peak memory not measured"),
    (RLIMITED, 1, "ValueError: a bug of the submission\n", None),
    (RLIMITED, 0, "MemoryError", None),
    (Usage(1024, CGROUP_V2, 300.0), 1, "MemoryError", None),  # the cgroup says: not the limit
    (Usage(None, "", 300.0), 1, "MemoryError", None),
    (None, 1, "MemoryError", None),
])
def test_the_over_limit_message(usage: Usage | None, returncode: int, log: str,
                                expected: str | None) -> None:
    assert over_limit_message(usage, returncode, log) == expected


def test_a_usage_from_a_remote_report_is_checked() -> None:
    assert Usage.from_json({"memory_limit_mb": True, "peak_mb": "9" * 9, "enforced_by": "x" * 99,
                            "oom_killed": "yes"}) == Usage(None, "x" * 32, None, False)
    assert Usage.from_json(["not", "a", "dict"]) is None
    assert Usage.from_json(RLIMITED.to_json()) == RLIMITED


# -- cgroup v2, on a fake cgroupfs -----------------------------------------------------------------


def fake_cgroupfs(tmp_path: Path, controllers: str) -> tuple[Path, str, str]:
    top = tmp_path / "cgroupfs"
    top.mkdir()
    (top / "cgroup.controllers").write_text(controllers)
    (top / "cgroup.subtree_control").write_text("")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"30 1 0:26 / {top} rw,nosuid - cgroup2 cgroup2 rw\n")
    own = tmp_path / "own"
    own.write_text("0::/\n")
    return top, str(mountinfo), str(own)


def test_no_cgroup_v2_with_memory_means_rlimits(tmp_path: Path) -> None:
    _, mountinfo, own = fake_cgroupfs(tmp_path, "hugetlb")
    host = cgroup_host(mountinfo, own)
    assert host.parent is None
    assert host.problem is not None and "no memory and pids controllers (only: hugetlb)" in host.problem
    (tmp_path / "none").write_text("22 1 0:5 / /proc rw - proc proc rw\n")
    assert cgroup_host(str(tmp_path / "none"), own).problem == "no cgroup v2 hierarchy is mounted"


@pytest.mark.skipif(os.geteuid() != 0, reason="the root case")
def test_root_gets_a_ramp_fleet_cgroup_with_memory_and_pids(tmp_path: Path) -> None:
    top, mountinfo, own = fake_cgroupfs(tmp_path, "cpu memory pids")
    assert cgroup_host(mountinfo, own, prepare=False).parent == top / "ramp-fleet"
    assert not (top / "ramp-fleet").exists(), "a dry look changes nothing"
    host = cgroup_host(mountinfo, own)
    assert host.parent == top / "ramp-fleet"
    assert (top / "cgroup.subtree_control").read_text() == "+memory +pids"
    assert (top / "ramp-fleet" / "cgroup.subtree_control").read_text() == "+memory +pids"


def test_a_run_cgroup_is_created_with_its_limits_read_and_removed(tmp_path: Path) -> None:
    group = Cgroup.create(tmp_path, "run-1", Limits(memory_mb=512, max_processes=64))
    assert (group.path / "memory.max").read_text() == str(512 << 20)
    assert (group.path / "memory.swap.max").read_text() == "0"
    assert (group.path / "pids.max").read_text() == "64"
    (group.path / "memory.peak").write_text(f"{300 << 20}\n")
    (group.path / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
    (group.path / "cgroup.procs").write_text("")
    assert (group.peak_mb(), group.oom_killed()) == (300.0, True)
    for name in ("memory.max", "memory.swap.max", "pids.max", "memory.peak", "memory.events",
                 "cgroup.procs"):
        (group.path / name).unlink()  # a real cgroup's files go with it
    group.remove()
    assert not group.path.exists()


# -- rlimits, applied by the wrapper ------------------------------------------------------------


def test_the_prefix_is_as_light_as_the_limits_allow() -> None:
    assert rlimit_prefix(Limits(), python=sys.executable, peak_fd=None, limit_processes=True) == []
    nproc = rlimit_prefix(Limits(max_processes=64), python=sys.executable, peak_fd=None,
                          limit_processes=True)
    assert nproc[1:] == ["--nproc=64:64", "--"] and nproc[0].endswith("prlimit")
    assert rlimit_prefix(Limits(max_processes=64), python=sys.executable, peak_fd=None,
                         limit_processes=False) == [], "root: RLIMIT_NPROC means nothing"
    wrapped = rlimit_prefix(Limits(512, 64), python=sys.executable, peak_fd=7, limit_processes=True)
    assert wrapped[:4] == [sys.executable, "-I", "-S", "-c"]
    assert wrapped[5:] == ["7", str(512 << 20), "64", "--"]


def test_the_wrapper_enforces_the_memory_limit_and_reports_the_peak() -> None:
    read_end, write_end = os.pipe()
    prefix = rlimit_prefix(Limits(memory_mb=256), python=sys.executable, peak_fd=write_end,
                           limit_processes=False)
    hog = "chunks = [bytearray(32 << 20) for _ in range(32)]"
    done = subprocess.run([*prefix, sys.executable, "-c", hog], pass_fds=(write_end,),
                          capture_output=True, text=True, timeout=60, check=False)
    os.close(write_end)
    peak = read_peak(read_end)
    assert done.returncode == 1 and done.stderr.rstrip().endswith("MemoryError")
    assert peak is not None and 0 < peak < 256


def test_a_delegated_cgroup_moves_its_processes_to_a_leaf_then_enables_controllers(
    tmp_path: Path,
) -> None:
    from ramp_fleet.sandbox.limits import _prepare_delegated

    top, _, _ = fake_cgroupfs(tmp_path, "memory pids")
    here = top / "user.slice" / "app.scope"
    here.mkdir(parents=True)
    (here / "cgroup.subtree_control").write_text("")
    (here / "cgroup.procs").write_text(f"{os.getpid()}\n")
    assert _prepare_delegated(top, "/user.slice/app.scope", prepare=False).parent == here
    assert not (here / "ramp-fleet-dispatcher").exists()
    assert _prepare_delegated(top, "/user.slice/app.scope", prepare=True).parent == here
    assert (here / "ramp-fleet-dispatcher" / "cgroup.procs").read_text() == str(os.getpid())
    assert (here / "cgroup.subtree_control").read_text() == "+memory +pids"
    os.chmod(here, 0o555)
    try:
        if os.geteuid() != 0:  # root may write anywhere: the owner check is what matters then
            assert _prepare_delegated(top, "/user.slice/app.scope", prepare=False).parent is None
    finally:
        os.chmod(here, 0o755)
