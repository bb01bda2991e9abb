"""What a run asks the runner for, and what the runner reports: plain, JSON-able values.

A :class:`SandboxSpec` is built by the dispatcher (or a Dask task) and
carried to the machine of the run, where paths, the Python environment and
bubblewrap are known: relative paths are taken from the spec's ``cwd`` and
``~`` is that machine's home. A :class:`Report` comes back; a remote host
wrote it, so it is parsed as untrusted.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

MODES = ("auto", "required", "off")
#: What a run may write by default (its folder, its /tmp, each), in MiB.
DEFAULT_DISK_MB = 1024


@dataclass(frozen=True)
class Isolation:
    """``worker.isolation`` as the machine of the run needs it."""

    mode: str = "required"
    network: bool = False
    #: Resident memory of the whole run (all its processes), MiB; None: not limited.
    memory_mb: int | None = None
    max_processes: int | None = None
    #: What the run may write in each of its folders (its own, /tmp), MiB.
    disk_mb: int = DEFAULT_DISK_MB
    read_only_paths: Sequence[str] = ()


@dataclass(frozen=True)
class ResultCaps:
    """What a run may hand back (``worker.result_limits``)."""

    max_bytes: int = 1 << 30
    max_files: int = 10_000
    max_file_bytes: int = 512 << 20


@dataclass(frozen=True)
class SandboxSpec:
    """One ``ramp-test`` run, as the runner needs to know it."""

    #: The command; a bare first word is looked up on ``PATH`` where the run happens.
    command: Sequence[str]
    cwd: str
    kit_dir: str
    data_dir: str
    #: The run's copy of the submission. The run sees it at the same path, in a
    #: folder of its own (a capped tmpfs) when isolated.
    submission_dir: str
    #: Set for the run (unbuffered output, thread limits).
    variables: Mapping[str, str] = field(default_factory=dict)
    #: The event's own folders, kept out of view when they lie inside the kit or the data.
    hidden: Sequence[str] = ()
    isolation: Isolation = field(default_factory=Isolation)
    #: Measure the run's peak memory even without a memory limit (memory_profiling).
    measure_peak: bool = True
    #: Where the runner writes its report (None: nowhere).
    report: str | None = None
    #: Where the runner puts ``training_output``: a ``.tar.gz`` (``results_as: archive``)
    #: or a new folder (``folder``), written by its own code; None: left where it is.
    results: str | None = None
    results_as: str = "archive"
    result_caps: ResultCaps = field(default_factory=ResultCaps)
    #: The runner stops the run after this many seconds (None: never).
    timeout: float | None = None
    #: gzip level of the results archive (1 for a local hand-over, 6 over a network).
    compresslevel: int = 6
    #: The bwrap check already passed in the process that built the spec.
    checked: bool = False

    @property
    def training_output(self) -> str:
        return os.path.join(self.submission_dir, "training_output")

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
                       report=None if self.report is None else here(self.report),
                       results=None if self.results is None else here(self.results))

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SandboxSpec:
        data = json.loads(text)
        isolation = data.pop("isolation", {})
        isolation["read_only_paths"] = tuple(isolation.get("read_only_paths", ()))
        return cls(**{**data, "command": tuple(data["command"]), "hidden": tuple(data["hidden"]),
                      "isolation": Isolation(**isolation),
                      "result_caps": ResultCaps(**data.get("result_caps", {}))})


@dataclass(frozen=True)
class Usage:
    """What a run used, as far as it was measured, and the memory limit it had."""

    memory_limit_mb: int | None = None
    #: How the memory limit was held: ``cgroup v2``, ``cgroup v1``, ``watchdog``; empty: none.
    enforced_by: str = ""
    peak_mb: float | None = None
    #: How the peak was measured (``cgroup v2``, ``cgroup v1``, ``sampled every 100 ms``...).
    peak_by: str = ""
    #: The memory limit stopped the run (the cgroup's OOM killer, or the watchdog).
    oom_killed: bool = False

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> Usage | None:
        """A usage read from a report (untrusted: a remote host wrote it)."""
        if not isinstance(data, dict):
            return None
        limit, peak = data.get("memory_limit_mb"), data.get("peak_mb")
        return cls(
            memory_limit_mb=limit if _integer(limit) else None,
            enforced_by=_short(data.get("enforced_by")),
            peak_mb=float(peak) if isinstance(peak, int | float) and _number(peak) else None,
            peak_by=_short(data.get("peak_by")),
            oom_killed=data.get("oom_killed") is True,
        )


@dataclass(frozen=True)
class Report:
    """What the runner says about the run it ran."""

    isolated: bool
    #: Why the run was not isolated (``auto`` without a working bwrap).
    note: str | None = None
    #: Why the run was refused (``required`` without a working bwrap): it did not start.
    refused: str | None = None
    usage: Usage | None = None
    #: The run's exit status (128 + N for a signal N); None when it did not start.
    returncode: int | None = None
    timed_out: bool = False
    #: One line when a limit ended the run (memory, processes, disk), naming it.
    limit: str | None = None
    #: Why ``training_output`` was not handed back (a link, too big...), if it was not.
    results_refused: str | None = None
    #: ``training_output`` was handed back (at the spec's ``results``).
    has_results: bool = False
    #: Seconds from start to end of the run.
    duration: float | None = None

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["usage"] = None if self.usage is None else self.usage.to_json()
        return data

    def write(self, path: str) -> None:
        """Written atomically: a reader never sees half a report."""
        staging = f"{path}.part"
        with open(staging, "w", encoding="utf-8") as out:
            json.dump(self.to_json(), out)
        os.replace(staging, path)

    @classmethod
    def parse(cls, data: bytes | str) -> Report | None:
        """A report as read back (untrusted when a remote host wrote it); None if it is not one."""
        try:
            return cls.from_data(json.loads(data))
        except ValueError:
            return None

    @classmethod
    def from_data(cls, raw: object) -> Report | None:
        """A report from decoded JSON (untrusted); None if it is not one."""
        if not isinstance(raw, dict):
            return None

        def text(key: str) -> str | None:
            value = raw.get(key)
            return value[:2000] if isinstance(value, str) else None

        returncode, duration = raw.get("returncode"), raw.get("duration")
        return cls(isolated=raw.get("isolated") is True, note=text("note"),
                   refused=text("refused"), usage=Usage.from_json(raw.get("usage")),
                   returncode=returncode if _integer(returncode) else None,
                   timed_out=raw.get("timed_out") is True, limit=text("limit"),
                   results_refused=text("results_refused"),
                   has_results=raw.get("has_results") is True,
                   duration=float(duration) if isinstance(duration, int | float)
                   and _number(duration) else None)

    @classmethod
    def read(cls, path: str | Path, max_bytes: int = 16 << 10) -> Report | None:
        """The report at ``path`` (never following a link, never blocking), or None."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            return cls.parse(os.read(fd, max_bytes))
        finally:
            os.close(fd)


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 1 << 31


def _number(value: object) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and 0 <= value < 1e12)


def _short(value: object) -> str:
    return value[:40] if isinstance(value, str) else ""
