"""What a run sees: the bwrap command line, its Python environment, and real sandboxes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from ramp_fleet.sandbox.bwrap import Bwrap
from ramp_fleet.sandbox.probe import check
from ramp_fleet.sandbox.view import (
    ETC_ENTRIES,
    SANDBOX_HOME,
    View,
    bwrap_argv,
    environment,
    outermost,
    python_env_paths,
    shebang_interpreter,
)
from tests.conftest import alive, needs_bwrap
from tests.processes import unique

OLD_BWRAP = Bwrap("/usr/bin/bwrap", "0.6.1", frozenset())
NEW_BWRAP = Bwrap("/usr/bin/bwrap", "0.8.0", frozenset({"--size", "--disable-userns", "--perms",
                                                         "--remount-ro"}))


def pairs(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv) if word == option]


def test_the_command_line_keeps_the_order_bind_mounts_need(tmp_path: Path) -> None:
    kit, sub = tmp_path / "kit", tmp_path / "kit" / "submissions" / "s"
    sub.mkdir(parents=True)
    view = View(command=["ramp-test"], cwd=str(sub), env={"PATH": "/usr/bin"},
                read_only=[str(kit), str(kit / "data"), "/usr/lib"], own_folder=str(sub),
                staging=str(sub), disk_bytes=100 << 20,
                hidden=[str(kit / "submissions"), str(tmp_path / "elsewhere"),
                        str(kit / "missing")])
    argv = bwrap_argv(view, NEW_BWRAP)
    assert argv[-2:] == ["--", "ramp-test"]
    order = [argv.index(path) for path in ("/tmp", str(kit), str(kit / "submissions"), str(sub))]
    assert order == sorted(order), "tmpfs /tmp first, read-only binds, hidden, then its own"
    assert pairs(argv, "--ro-bind")[1:] == [str(kit), str(sub)], "nested folders bound once"
    # Hidden: only what lies in a bound folder and exists; every tmpfs capped.
    assert pairs(argv, "--tmpfs") == ["/tmp", SANDBOX_HOME, "/dev/shm", str(kit / "submissions"),
                                      str(sub)]
    assert pairs(argv, "--size") == [str(100 << 20), str(256 << 20), str(256 << 20), "4096",
                                     str(100 << 20)]
    assert pairs(argv, "--remount-ro") == ["/dev", "/"], "after every mount"
    assert argv.index("--remount-ro") > argv.index(str(sub))
    assert "--unshare-net" in argv and "--cap-drop" in argv and "--die-with-parent" in argv
    assert "--unshare-user" in argv and "--cap-add" not in argv


def test_as_root_there_is_no_user_namespace_and_only_the_first_process_may_change_uid() -> None:
    argv = bwrap_argv(View(command=["true"], cwd="/", env={}, privileged=True), NEW_BWRAP)
    assert "--unshare-user" not in argv and "--disable-userns" not in argv
    assert pairs(argv, "--cap-add") == ["CAP_SETUID", "CAP_SETGID"]
    assert argv.index("--cap-drop") < argv.index("--cap-add") < argv.index("--")


def test_options_are_used_only_when_this_bwrap_knows_them() -> None:
    view = View(command=["true"], cwd="/", env={}, network=True)
    old, new = bwrap_argv(view, OLD_BWRAP), bwrap_argv(view, NEW_BWRAP)
    assert "--size" not in old and "--disable-userns" not in old
    assert "--size" in new and "--disable-userns" in new
    assert "--unshare-net" not in new, "network: true shares the host's network"


def test_the_environment_is_an_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("LANG", "fr_FR.UTF-8")
    env = environment(["/env/bin"], {"OMP_NUM_THREADS": "2"})
    assert env == {"PATH": "/env/bin:/usr/local/bin:/usr/bin:/bin", "HOME": SANDBOX_HOME,
                   "USER": "sandbox", "LOGNAME": "sandbox", "TMPDIR": "/tmp",
                   "LANG": "fr_FR.UTF-8", "OMP_NUM_THREADS": "2"}


def test_a_venv_brings_its_base_interpreter() -> None:
    paths = python_env_paths(str(Path(sys.prefix) / "bin" / "ramp-test"))
    assert sys.prefix in paths
    base = os.path.realpath(sys.base_prefix)
    assert base.startswith("/usr") or any(base == p or base.startswith(p + "/") for p in paths)
    assert not any(p == "/usr" or p.startswith("/usr/") for p in paths)


def test_a_shebang_through_env_is_found_on_the_programs_own_bin(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    python = tmp_path / "bin" / "python3"
    python.symlink_to(sys.executable)
    script = tmp_path / "bin" / "tool"
    script.write_text("#!/usr/bin/env -S python3 -u\n")
    assert shebang_interpreter(str(script)) == str(python)
    assert str(tmp_path) in python_env_paths(str(script))


def test_a_shell_script_never_binds_the_root(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    script = tmp_path / "bin" / "ramp-test"
    script.write_text("#!/bin/sh\nexec true\n")
    assert python_env_paths(str(script)) == [str(tmp_path)]
    view = View(command=[str(script)], cwd="/", env={}, read_only=["/", "/bin", str(tmp_path)])
    assert pairs(bwrap_argv(view, NEW_BWRAP), "--ro-bind") == ["/usr", str(tmp_path)]


def test_outermost_keeps_parents_only() -> None:
    assert outermost(["/a/b", "/a", "/ab", "/a/b/c/", "/c"]) == ["/a", "/ab", "/c"]


# -- real sandboxes -----------------------------------------------------------------------------



def run(view: View) -> subprocess.CompletedProcess[str]:
    bwrap = check().bwrap
    assert bwrap is not None
    return subprocess.run(bwrap_argv(view, bwrap), env=dict(view.env), capture_output=True,
                          text=True, timeout=60, check=False)


@needs_bwrap
def test_a_run_sees_its_folders_and_nothing_else(tmp_path: Path) -> None:
    kit, own, other = tmp_path / "kit", tmp_path / "subs" / "own", tmp_path / "subs" / "other"
    for folder in (kit / "submissions" / "starting_kit", own, other):
        folder.mkdir(parents=True)
    (other / "secret").write_text("someone else's")
    probe = textwrap.dedent(f"""
        import json, os, pathlib
        def attempt(f):
            try:
                f()
                return "yes"
            except OSError as exc:
                return type(exc).__name__
        print("write own", attempt(lambda: pathlib.Path({str(own)!r}, "x").write_text("1")))
        print("write kit", attempt(lambda: pathlib.Path({str(kit)!r}, "x").write_text("1")))
        print("read other", attempt(lambda: pathlib.Path({str(other)!r}, "secret").read_text()))
        print("kit submissions", sorted(os.listdir({str(kit / "submissions")!r})))
        print("top", json.dumps(sorted(os.listdir("/"))))
        print("etc", json.dumps(sorted(os.listdir("/etc"))))
        print("pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
    """)
    done = run(View(command=[sys.executable, "-c", probe], cwd=str(own),
                    env=environment([str(Path(sys.executable).parent)], {}),
                    read_only=[*python_env_paths(sys.executable), str(kit)],
                    own_folder=str(own), hidden=[str(kit / "submissions")]))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:4] + lines[6:] == [
        "write own yes", "write kit OSError", "read other FileNotFoundError",
        "kit submissions []", "pids [1, 2]"]
    top = set(json.loads(lines[4].removeprefix("top ")))
    assert top.isdisjoint({"run", "sys", "var", "boot", "mnt", "srv", "media"}), top
    assert set(json.loads(lines[5].removeprefix("etc "))) <= set(ETC_ENTRIES)
    assert not (own / "x").exists(), "its own folder is its own, not the host's"


@needs_bwrap
def test_a_double_forked_daemon_dies_with_the_run() -> None:
    marker = unique("daemon-")
    code = textwrap.dedent(f"""
        import os, sys, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)",
                                          {marker!r}])
            os._exit(0)
        time.sleep(1)
    """)
    done = run(View(command=[sys.executable, "-c", code], cwd="/", env={"PATH": "/usr/bin"},
                    read_only=python_env_paths(sys.executable)))
    assert done.returncode == 0, done.stderr
    left = [p.pid for p in psutil.process_iter(["cmdline"])
            if (p.info["cmdline"] or [])[-1:] == [marker]]
    assert alive(left) == []


@pytest.mark.parametrize("data_in_kit", [False, True])
def test_with_hidden_labels_the_data_is_out_of_view_and_the_handed_folder_in(
        tmp_path: Path, data_in_kit: bool) -> None:
    from ramp_fleet.sandbox.command import run_view
    from ramp_fleet.sandbox.spec import Isolation, RunSpec
    from ramp_fleet.sandbox.view import HANDED_FOLDER

    kit = tmp_path / "kit"
    data = kit if data_in_kit else tmp_path / "data"
    (data / "data").mkdir(parents=True)
    spec = RunSpec(submission="s", kit_dir=str(kit), data_dir=str(data),
                   handed=str(tmp_path / "handed" / "handed.pkl"),
                   isolation=Isolation(labels="hidden"))
    view = run_view(spec, sys.executable, ["true"], str(tmp_path / "own"), {})
    assert str(data) not in view.read_only or data_in_kit
    assert str(data / "data" if data_in_kit else data) in view.hidden
    argv = bwrap_argv(view, NEW_BWRAP)
    at = argv.index(HANDED_FOLDER, argv.index(str(tmp_path / "handed")))
    assert argv[at - 2:at + 1] == ["--ro-bind", str(tmp_path / "handed"), HANDED_FOLDER]
    visible = run_view(RunSpec(submission="s", kit_dir=str(kit), data_dir=str(data)),
                       sys.executable, ["true"], str(tmp_path / "own"), {})
    assert str(data) in visible.read_only and visible.handed is None
