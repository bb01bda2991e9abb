"""A cgroup per run: v2 on a fake cgroupfs (this machine has none usable), v1 on a fake one
and on this machine's real hierarchy, and why neither when neither works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ramp_fleet.sandbox import cgroups
from ramp_fleet.sandbox.cgroups import V2, CgroupV1, CgroupV2, Wanted, create
from tests.real_parts import require


def fake_v2(tmp_path: Path, controllers: str) -> tuple[Path, str, str]:
    top = tmp_path / "cgroupfs"
    top.mkdir()
    (top / "cgroup.controllers").write_text(controllers)
    (top / "cgroup.subtree_control").write_text("")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"30 1 0:26 / {top} rw,nosuid - cgroup2 cgroup2 rw\n")
    own = tmp_path / "own"
    own.write_text("0::/\n")
    return top, str(mountinfo), str(own)


def fake_v1(tmp_path: Path, own_path: str = "/slice/job") -> tuple[dict[str, Path], str, str]:
    mounts, lines, own = {}, [], ["0::/"]
    for index, controller in enumerate(("memory", "pids")):
        top = tmp_path / controller
        (top / own_path.lstrip("/")).mkdir(parents=True)
        mounts[controller] = top
        lines.append(f"{40 + index} 1 0:{30 + index} / {top} rw - cgroup cgroup rw,{controller}")
        own.append(f"{4 + index}:{controller}:{own_path}")
    (tmp_path / "mountinfo").write_text("\n".join(lines) + "\n")
    (tmp_path / "own").write_text("\n".join(own) + "\n")
    return mounts, str(tmp_path / "mountinfo"), str(tmp_path / "own")


def test_without_memory_and_pids_in_v2_nor_a_v1_hierarchy_there_is_no_cgroup(tmp_path: Path) -> None:
    _, mountinfo, own = fake_v2(tmp_path, "hugetlb")
    made = create("r", Wanted(memory_mb=100), mountinfo, own)
    assert made.cgroup is None and made.problem is not None
    assert "no memory and pids controllers (only: hugetlb)" in made.problem
    assert "no cgroup v1 memory hierarchy is mounted" in made.problem


def test_root_gets_a_v2_cgroup_with_its_limits_read_and_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cgroups.os, "geteuid", lambda: 0)
    top, mountinfo, own = fake_v2(tmp_path, "cpu memory pids")
    assert cgroups.available(mountinfo, own)[0] == V2
    assert not (top / "ramp-fleet").exists(), "a dry look changes nothing"
    made = create("r1", Wanted(memory_mb=512, max_processes=64), mountinfo, own)
    group = made.cgroup
    assert isinstance(group, CgroupV2)
    assert (top / "cgroup.subtree_control").read_text() == "+memory +pids"
    folder = top / "ramp-fleet" / f"{cgroups.RUN_PREFIX}r1"
    assert group.folder == folder
    assert (folder / "memory.max").read_text() == str(512 << 20)
    assert (folder / "memory.swap.max").read_text() == "0"
    assert (folder / "pids.max").read_text() == "64"
    (folder / "memory.peak").write_text(f"{300 << 20}\n")
    (folder / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
    (folder / "pids.events").write_text("max 3\n")
    (folder / "cgroup.procs").write_text("")
    assert (group.peak_mb(), group.oom_killed(), group.hit_process_limit()) == (300.0, True, True)
    assert group.measures_peak()
    for child in folder.iterdir():
        child.unlink()  # a real cgroup's files go with it
    group.remove()
    assert not folder.exists()


def test_a_delegated_v2_cgroup_moves_its_processes_to_a_leaf_then_enables_controllers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ramp_fleet.sandbox.cgroups import _v2_parent

    top, _, _ = fake_v2(tmp_path, "memory pids")
    here = top / "user.slice" / "app.scope"
    here.mkdir(parents=True)
    (here / "cgroup.subtree_control").write_text("")
    (here / "cgroup.procs").write_text(f"{os.getpid()}\n")
    own = tmp_path / "own"
    own.write_text("0::/user.slice/app.scope\n")
    # A user (not root) who owns its cgroup: that of a systemd unit with Delegate=yes.
    monkeypatch.setattr(cgroups.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(cgroups.os, "getuid", lambda: here.stat().st_uid)
    assert _v2_parent(top, str(own), prepare=False) == here
    assert not (here / "ramp-fleet-dispatcher").exists(), "a dry look changes nothing"
    assert _v2_parent(top, str(own), prepare=True) == here
    assert (here / "ramp-fleet-dispatcher" / "cgroup.procs").read_text() == str(os.getpid())
    assert (here / "cgroup.subtree_control").read_text() == "+memory +pids"


def test_a_v1_cgroup_goes_under_our_own_in_each_hierarchy(tmp_path: Path) -> None:
    mounts, mountinfo, own = fake_v1(tmp_path)
    made = create("r2", Wanted(memory_mb=400, max_processes=100), mountinfo, own)
    group = made.cgroup
    assert isinstance(group, CgroupV1), made.problem
    memory = mounts["memory"] / "slice" / "job" / f"{cgroups.RUN_PREFIX}r2"
    pids = mounts["pids"] / "slice" / "job" / f"{cgroups.RUN_PREFIX}r2"
    assert group.folders == {"memory": memory, "pids": pids}
    assert (memory / "memory.limit_in_bytes").read_text() == str(400 << 20)
    assert (memory / "memory.memsw.limit_in_bytes").read_text() == str(400 << 20)
    assert (pids / "pids.max").read_text() == "100"
    (memory / "memory.max_usage_in_bytes").write_text(f"{150 << 20}\n")
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert (group.peak_mb(), group.oom_killed()) == (150.0, True)


def test_a_mount_showing_a_subtree_is_followed(tmp_path: Path) -> None:
    """In a container the hierarchy's root is the container's cgroup: paths are relative."""
    mounts, mountinfo, own = fake_v1(tmp_path, own_path="/job")
    text = Path(mountinfo).read_text().replace(" / ", " /docker/abc ")
    Path(mountinfo).write_text(text)
    Path(own).write_text(Path(own).read_text().replace(":/job", ":/docker/abc/job"))
    made = create("r3", Wanted(memory_mb=10), mountinfo, own)
    assert made.cgroup is not None
    assert made.cgroup.folders["memory"] == mounts["memory"] / "job" / f"{cgroups.RUN_PREFIX}r3"


def test_this_machines_own_hierarchy_caps_a_run(tmp_path: Path) -> None:
    """The real cgroup (v2, else v1) of this machine: a process over its memory is killed by
    the kernel, and the cgroup is gone after. Needs root or a delegated cgroup."""
    kind, _ = cgroups.available()
    require("a writable cgroup hierarchy", kind is not None,
            "run the tests as root (make test does) or in a systemd unit with Delegate=yes")
    made = create(f"test-{os.getpid()}", Wanted(memory_mb=64, max_processes=32))
    group = made.cgroup
    assert group is not None, made.problem
    try:
        touch_256_mb = "x = bytearray(256 << 20); x[::4096] = b'1' * len(x[::4096])"
        hog = subprocess.run([sys.executable, "-c", touch_256_mb], preexec_fn=group.join,
                             capture_output=True, timeout=60)
        assert hog.returncode == -9
        assert group.oom_killed()
        peak = group.peak_mb()
        assert peak is None or 50 < peak <= 64.5
    finally:
        group.remove()
    assert all(not folder.exists() for folder in group.folders.values())
