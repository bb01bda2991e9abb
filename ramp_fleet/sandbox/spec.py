"""What a sandboxed run asks for, and what its launcher reports: plain, JSON-able values.

A :class:`SandboxSpec` is built by the dispatcher (or a Dask task) and
turned into a command on the machine of the run, where paths, the Python
environment and bubblewrap are known: relative paths are taken from the
spec's ``cwd`` and ``~`` is that machine's home.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ramp_fleet.sandbox.limits import Limits, Usage

MODES = ("auto", "required", "off")


@dataclass(frozen=True)
class Isolation:
    """``worker.isolation`` as the machine of the run needs it."""

    mode: str = "auto"
    network: bool = False
    memory_mb: int | None = None
    max_processes: int | None = None
    read_only_paths: Sequence[str] = ()

    @property
    def limits(self) -> Limits:
        return Limits(self.memory_mb, self.max_processes)


@dataclass(frozen=True)
class SandboxSpec:
    """One ``ramp-test`` run, as the sandbox needs to know it."""

    #: The command; a bare first word is looked up on ``PATH`` where the run happens.
    command: Sequence[str]
    cwd: str
    kit_dir: str
    data_dir: str
    #: The run's own copy of the submission: the one writable folder.
    submission_dir: str
    #: Set for the run (unbuffered output, thread limits).
    variables: Mapping[str, str] = field(default_factory=dict)
    #: The event's own folders, kept out of view when they lie inside the kit or the data.
    hidden: Sequence[str] = ()
    isolation: Isolation = field(default_factory=Isolation)
    #: Measure the run's peak memory even without a memory limit (memory_profiling).
    measure_peak: bool = False
    #: Where the launcher writes its report (None: no launcher needed).
    report: str | None = None
    #: The bwrap check already passed in the process that built the spec.
    checked: bool = False

    def resolved(self) -> SandboxSpec:
        """The spec with every path absolute, as seen from this machine and ``cwd``."""
        cwd = os.path.abspath(os.path.expanduser(self.cwd))

        def here(path: str) -> str:
            return os.path.normpath(os.path.join(cwd, os.path.expanduser(path)))

        isolation = replace(self.isolation,
                            read_only_paths=tuple(here(p) for p in self.isolation.read_only_paths))
        return replace(self, cwd=cwd, kit_dir=here(self.kit_dir), data_dir=here(self.data_dir),
                       submission_dir=here(self.submission_dir),
                       hidden=tuple(here(p) for p in self.hidden), isolation=isolation,
                       report=None if self.report is None else here(self.report))

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SandboxSpec:
        data = json.loads(text)
        isolation = data.pop("isolation", {})
        isolation["read_only_paths"] = tuple(isolation.get("read_only_paths", ()))
        return cls(**{**data, "command": tuple(data["command"]), "hidden": tuple(data["hidden"]),
                      "isolation": Isolation(**isolation)})


@dataclass(frozen=True)
class Report:
    """What a launcher says about the run it ran."""

    isolated: bool
    #: Why the run was not isolated (``auto`` without a working bwrap).
    note: str | None = None
    #: Why the run was refused (``required`` without a working bwrap).
    refused: str | None = None
    usage: Usage | None = None

    def write(self, path: str) -> None:
        """Written atomically: a reader never sees half a report."""
        data = {"isolated": self.isolated, "note": self.note, "refused": self.refused,
                "usage": None if self.usage is None else self.usage.to_json()}
        staging = f"{path}.part"
        with open(staging, "w", encoding="utf-8") as out:
            json.dump(data, out)
        os.replace(staging, path)

    @classmethod
    def parse(cls, data: bytes | str) -> Report | None:
        """A report as read back (untrusted when a remote host wrote it); None if it is not one."""
        try:
            raw = json.loads(data)
        except ValueError:
            return None
        if not isinstance(raw, dict):
            return None

        def text(key: str) -> str | None:
            value = raw.get(key)
            return value[:2000] if isinstance(value, str) else None

        return cls(isolated=raw.get("isolated") is True, note=text("note"),
                   refused=text("refused"), usage=Usage.from_json(raw.get("usage")))

    @classmethod
    def read(cls, path: str | Path, max_bytes: int = 16 << 10) -> Report | None:
        """The report at ``path`` (never following a link), or None."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            return cls.parse(os.read(fd, max_bytes))
        finally:
            os.close(fd)
