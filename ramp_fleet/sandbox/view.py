"""What a sandboxed run sees of the machine: the bubblewrap command line.

This module alone decides it, for every backend. A run gets new PID, IPC,
UTS, mount, cgroup and (unless ``network``) network namespaces, dies with
its parent, runs under a seccomp filter (:mod:`ramp_fleet.sandbox.seccomp`)
and sees:

* the system read-only (``/usr`` and the merged-``/usr`` links; of ``/etc``
  only what programs need to start), the sandbox's own root and ``/dev``
  read-only too;
* its Python environment read-only (the prefix of the program, the
  interpreter of its ``#!`` line, and the base interpreter a venv points at);
* the kit and the data read-only, with the event's own folders hidden if they
  sit inside them (``kit/submissions`` always: other participants' code);
* its own folder (the submission's path), a memory-backed folder capped at
  the run's disk size, into which its code is copied from a read-only view;
* a private, capped ``/tmp``, ``HOME`` and ``/dev/shm``, its own ``/proc``
  (its own processes only) and ``/dev`` (with the NVIDIA devices on a GPU
  machine).

Nothing else: not the dispatcher's home, the event and deployment configs,
other submissions, SSH or TLS keys, ``/run`` sockets or ``/sys``. The
environment is an allow-list built here; bwrap is started with it and
nothing else, since bwrap's own process is visible inside as
``/proc/1/environ``.

Run by an unprivileged user, bwrap makes a user namespace (the run is that
user). Run by root, it makes none (``privileged``): the sandbox's first
process becomes the run's own unprivileged uid before anything of the run
starts (:mod:`ramp_fleet.sandbox.inner`), so a run is never root, inside or out.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ramp_fleet.sandbox.bwrap import Bwrap

SANDBOX_HOME = "/home/sandbox"
#: The run's private /tmp: a tmpfs of its own, never the host's.
SANDBOX_TMP = "/tmp"  # noqa: S108
HOSTNAME = "sandbox"
#: Caps of the private memory-backed folders (when this bwrap knows ``--size``);
#: the run's own folder and /tmp get the run's disk size.
HOME_BYTES = 256 << 20
SHM_BYTES = 256 << 20
#: The run's private shared memory (POSIX shm_open), never the host's.
SANDBOX_SHM = "/dev/shm"  # noqa: S108
#: Where the run's code is seen read-only, to be copied into its own folder.
STAGING = "/run/ramp-fleet/submission"
#: Where a run with hidden labels sees the folder of the data it is handed (read-only), in
#: place of the data folder, and the file in it (:mod:`ramp_fleet.sandbox.train_predict`).
#: A folder, not the file: a local run starts before the file is there.
HANDED_FOLDER = "/run/ramp-fleet/handed"
HANDED = f"{HANDED_FOLDER}/handed.pkl"
#: On merged-``/usr`` systems these are links into ``/usr``; elsewhere, folders.
SYSTEM_TOP = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: Of ``/etc``: the dynamic linker, alternatives (Debian's BLAS...), time zone, fonts.
ETC_ENTRIES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime",
               "nsswitch.conf", "fonts")
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
#: Passed through from the caller when set (nothing else of its environment is).
PASSED_VARIABLES = ("LANG",)


@dataclass(frozen=True)
class View:
    """One run's view of the machine; every path absolute."""

    command: Sequence[str]
    #: Where the command starts (must be visible: one of the folders below or in them).
    cwd: str
    #: The run's whole environment (see :func:`environment`).
    env: Mapping[str, str]
    read_only: Sequence[str] = ()
    #: Folders hidden under an empty tmpfs when they lie inside a read-only one.
    hidden: Sequence[str] = ()
    network: bool = False
    #: The run's own folder: a memory-backed folder of ``disk_bytes`` at this path, and
    #: what is to be copied into it, seen read-only at :data:`STAGING`.
    own_folder: str | None = None
    staging: str | None = None
    #: A folder seen read-only at :data:`HANDED_FOLDER` (labels hidden), or None.
    handed: str | None = None
    disk_bytes: int = 1 << 30
    #: bwrap runs as root: no user namespace (see the module docstring).
    privileged: bool = False
    #: Descriptors bwrap reads its seccomp filter from and writes its child's pid to.
    seccomp_fd: int | None = None
    info_fd: int | None = None


def bwrap_argv(view: View, bwrap: Bwrap) -> list[str]:
    """The full command line: ``bwrap <options> -- <view.command>``."""
    argv = [bwrap.path]
    if view.privileged:
        argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    else:
        argv += ["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                 "--unshare-cgroup-try"]
        if bwrap.knows("--disable-userns"):  # no nested namespaces to escape the limits from
            argv.append("--disable-userns")
    if not view.network:
        argv.append("--unshare-net")
    argv += ["--die-with-parent", "--new-session", "--hostname", HOSTNAME]
    if view.info_fd is not None:
        argv += ["--info-fd", str(view.info_fd)]
    argv += _system_binds()
    # The tmpfs folders first: later binds under /tmp are mounted on top of them.
    argv += _tmpfs(SANDBOX_TMP, view.disk_bytes, bwrap) + _tmpfs(SANDBOX_HOME, HOME_BYTES, bwrap)
    argv += ["--proc", "/proc", "--dev", "/dev", *_tmpfs(SANDBOX_SHM, SHM_BYTES, bwrap), *_gpus()]
    read_only = outermost(p for p in view.read_only if not _system(os.path.normpath(p)))
    # The folders leading to every mount, made readable by anyone: bwrap's own copy the
    # host's modes, and a run that is not root could not pass a 0700 /root or /tmp/x.
    destinations = [*read_only, *filter(None, [view.own_folder])]
    argv += _folders(*(os.path.dirname(path) for path in destinations), skip=read_only)
    for path in read_only:
        argv += ["--ro-bind", path, path]
    for path in sorted(set(view.hidden)):
        if any(_inside(path, top) for top in read_only) and os.path.isdir(path):
            argv += ["--size", "4096", "--tmpfs", path] if bwrap.knows("--size") else \
                ["--tmpfs", path]
    if view.own_folder is not None:
        argv += _tmpfs(view.own_folder, view.disk_bytes, bwrap)
        if view.staging is not None:  # its folders made first: bwrap's own would be root's only
            argv += [*_folders(os.path.dirname(STAGING)), "--ro-bind", view.staging, STAGING]
    if view.handed is not None:
        argv += [*_folders(os.path.dirname(HANDED_FOLDER)), "--ro-bind", view.handed,
                 HANDED_FOLDER]
    if bwrap.knows("--remount-ro"):
        argv += ["--remount-ro", "/dev", "--remount-ro", "/"]
    if view.seccomp_fd is not None:
        argv += ["--seccomp", str(view.seccomp_fd)]
    argv += ["--chdir", view.cwd, "--cap-drop", "ALL"]
    if view.privileged:  # only for the first process to become the run's uid (then dropped)
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return [*argv, "--", *view.command]


def environment(path_dirs: Iterable[str], variables: Mapping[str, str],
                caller: Mapping[str, str] | None = None) -> dict[str, str]:
    """A run's environment: PATH, the private HOME, LANG, and ``variables``.

    Never anything else of ``caller`` (default: ours), whatever its names.
    """
    caller = os.environ if caller is None else caller
    env = {"PATH": ":".join([*dict.fromkeys(path_dirs), SYSTEM_PATH]), "HOME": SANDBOX_HOME,
           "USER": HOSTNAME, "LOGNAME": HOSTNAME, "TMPDIR": SANDBOX_TMP, "LANG": "C.UTF-8"}
    env.update((name, caller[name]) for name in PASSED_VARIABLES if caller.get(name))
    env.update(variables)
    return env


def python_env_paths(program: str) -> list[str]:
    """The folders ``program`` needs to run, when it is a Python program or interpreter.

    Its environment's prefix, the interpreter of its ``#!`` line and that
    one's prefix, and for each the base interpreter a venv points at (its
    ``pyvenv.cfg`` home, or where ``bin/python3`` resolves to). The system's
    folders are left out: they are there already — and ``/`` (the "prefix" of
    ``/bin/sh``) must never be bound.
    """
    found: list[str] = []
    programs = [program]
    interpreter = shebang_interpreter(program)
    if interpreter is not None:
        programs.append(interpreter)
    for each in programs:
        prefix = env_prefix(each)
        found.append(prefix)
        found.extend(_base_prefixes(prefix))
        real = os.path.realpath(each)
        if real != each:
            found.append(env_prefix(real))
    return outermost(path for path in found if not _system(os.path.normpath(path)))


def env_prefix(program: str) -> str:
    """``/x/env`` for ``/x/env/bin/prog``; the program's own folder otherwise."""
    folder = os.path.dirname(os.path.abspath(program))
    return os.path.dirname(folder) if os.path.basename(folder) == "bin" else folder


def shebang_interpreter(program: str) -> str | None:
    """The absolute path of the interpreter named by ``program``'s ``#!`` line, if any."""
    try:
        with open(program, "rb") as stream:
            first = stream.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "replace").split()
    if words and os.path.basename(words[0]) == "env":
        names = [word for word in words[1:] if not word.startswith("-") and "=" not in word]
        search = os.pathsep.join([os.path.dirname(os.path.abspath(program)), SYSTEM_PATH])
        located = shutil.which(names[0], path=search) if names else None
        return os.path.abspath(located) if located else None
    return words[0] if words and os.path.isabs(words[0]) else None


def outermost(paths: Iterable[str]) -> list[str]:
    """``paths`` normalised, sorted, without those inside another one."""
    kept: list[str] = []
    for path in sorted({os.path.normpath(p) for p in paths}):
        if not any(_inside(path, top) for top in kept):
            kept.append(path)
    return kept


def _system(path: str) -> bool:
    """``/``, or a folder the system part of the view provides already."""
    return path == "/" or any(_inside(path, top) for top in ("/usr", *SYSTEM_TOP))


def _inside(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _base_prefixes(prefix: str) -> list[str]:
    bases = []
    try:
        with open(os.path.join(prefix, "pyvenv.cfg"), encoding="utf-8") as config:
            for line in config:
                key, _, value = line.partition("=")
                if key.strip() == "home" and value.strip():
                    bases.append(env_prefix(os.path.join(value.strip(), "python")))
    except OSError:
        pass
    for name in ("python3", "python"):
        interpreter = os.path.join(prefix, "bin", name)
        if os.path.lexists(interpreter):
            bases.append(env_prefix(os.path.realpath(interpreter)))
            break
    return bases


def _system_binds() -> list[str]:
    argv = ["--ro-bind", "/usr", "/usr"]
    for top in SYSTEM_TOP:
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    for name in ETC_ENTRIES:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return argv


def _folders(*paths: str, skip: Sequence[str] = ()) -> list[str]:
    """``--dir`` for each of ``paths`` and their parents (once each, parents first), but
    for the system's folders and those inside a folder of ``skip`` (mounted as they are)."""
    made: list[str] = []
    for path in paths:
        parts = [part for part in os.path.normpath(path).split("/") if part]
        for depth in range(1, len(parts) + 1):
            folder = "/" + "/".join(parts[:depth])
            if folder not in made and not _system(folder) and not any(
                    _inside(folder, top) for top in skip):
                made.append(folder)
    return [word for folder in made for word in ("--dir", folder)]


def _gpus() -> list[str]:
    """NVIDIA's device files, when this machine has them (a GPU event's instances)."""
    argv = []
    for device in sorted(glob.glob("/dev/nvidia*")):
        argv += ["--dev-bind", device, device]
    return argv


def _tmpfs(path: str, size: int, bwrap: Bwrap) -> list[str]:
    """A memory-backed folder of ``size`` bytes that anyone may write in (as /tmp)."""
    sized = ["--size", str(size)] if bwrap.knows("--size") else []
    perms = ["--perms", "1777"] if bwrap.knows("--perms") else []
    return [*perms, *sized, "--tmpfs", path]
