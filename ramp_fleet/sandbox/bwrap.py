"""bubblewrap on this machine: where it is and which options it knows.

Options newer than the oldest bwrap in the distributions we meet (Ubuntu
22.04 ships 0.6) are used only when ``bwrap --help`` lists them, so one
command line builder serves every host.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

#: How long ``bwrap --version`` / ``--help`` may take.
QUERY_TIMEOUT = 10


@dataclass(frozen=True)
class Bwrap:
    """One bwrap executable."""

    path: str
    version: str
    options: frozenset[str]

    def knows(self, option: str) -> bool:
        return option in self.options

    def describe(self) -> str:
        return f"bubblewrap {self.version} at {self.path}"


class BwrapMissing(Exception):
    """No usable bwrap executable."""


INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: apt install bubblewrap; RHEL/Fedora: dnf "
                "install bubblewrap; Ubuntu 24.04: also load its AppArmor profile, see the README)")


def find(path: str | None = None) -> Bwrap:
    """The bwrap on ``PATH`` (or on ``path``, a PATH-like list); raises :class:`BwrapMissing`."""
    found = shutil.which("bwrap", path=path if path is not None else os.environ.get("PATH"))
    if found is None:
        raise BwrapMissing("no bwrap on PATH")
    return query(os.path.abspath(found))


@functools.cache
def query(executable: str) -> Bwrap:
    """Ask ``executable`` its version and options (once per process)."""
    version = _ask(executable, "--version")
    words = version.split()
    return Bwrap(executable, words[-1] if words else "(unknown version)",
                 frozenset(re.findall(r"--[a-z][a-z0-9-]*", _ask(executable, "--help"))))


def _ask(executable: str, flag: str) -> str:
    try:
        done = subprocess.run([executable, flag], capture_output=True, text=True,
                              timeout=QUERY_TIMEOUT, check=False, env={"PATH": "/usr/bin:/bin"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BwrapMissing(f"{executable} {flag} failed ({exc})") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise BwrapMissing(f"{executable} {flag} exited with {done.returncode}"
                           f"{': ' + detail[0] if detail else ''}")
    return done.stdout
