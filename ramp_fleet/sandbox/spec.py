"""What a run asks the runner for, and what the runner reports: plain, JSON-able values.

A :class:`RunSpec` is built on the dispatcher's side and carried, with the
submission, into the run's folder on the machine of the run, where paths,
the Python environment and bubblewrap are known. A :class:`Report` comes
back; a remote host wrote it, so it is parsed as untrusted.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ramp_fleet.sandbox.logs import MAX_LOG_BYTES
from ramp_fleet.sandbox.tree import Limits

MODES = ("auto", "required", "off")
#: ``visible``: ramp-test runs in the sandbox with the data folder in view (RAMP's way);
#: ``hidden``: the sandbox trains and predicts on what it is handed, never the test labels.
LABELS = ("visible", "hidden")
#: What a run may write by default (its folder, its /tmp, each), in MiB.
DEFAULT_DISK_MB = 1024

#: The run folder: what the backend puts in it, what the runner leaves there.
SPEC = "spec.json"
#: The submission as the dispatcher packed it (:func:`ramp_fleet.archive.pack_submission`).
SUBMISSION = "submission.tar.gz"
#: The run's copy of its submission: ``submissions/<submission>`` (ramp-test's layout).
SUBMISSIONS = "submissions"
LOG = "log"
REPORT = "report.json"
#: With ``labels: hidden``: what the trusted scorer hands the run (the spec's ``handed``).
HANDED_FILE = "handed.pkl"
#: The folder of the run folder the sandbox sees read-only with :data:`HANDED_FILE` in it:
#: the runner moves the file there, or a local backend puts it there after the start.
HANDED_SHELF = "handed"
#: ``training_output``, packed by the runner's own code (``results_as: archive``).
RESULTS = "results.tar.gz"


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
    labels: str = "visible"


@dataclass(frozen=True)
class RunSpec:
    """One ``ramp-test`` run, as the runner needs to know it (``spec.json`` of its folder).

    Paths are as on the machine of the run; a relative one is taken from the run
    folder, ``~`` is that machine's home.
    """

    submission: str
    kit_dir: str
    data_dir: str
    #: ``ramp-test``: a path, or a name found in ``python_env`` or on ``PATH``.
    ramp_test: str = "ramp-test"
    #: The conda environment (a name or a prefix on the host) ``ramp-test`` is in.
    python_env: str | None = None
    quick_test: bool = False
    #: Threads each run may use (the OMP/MKL/OPENBLAS... variables).
    n_threads: int | None = None
    #: The event's own folders, kept out of view when they lie inside the kit or the data.
    hidden: Sequence[str] = ()
    isolation: Isolation = field(default_factory=Isolation)
    #: What the run may hand back (``worker.result_limits``), and how much of its log.
    limits: Limits = field(default_factory=Limits)
    max_log_bytes: int = MAX_LOG_BYTES
    #: The runner stops the run after this many seconds (None: never).
    timeout: float | None = None
    #: ``archive``: ``training_output`` packed into the run folder's ``results.tar.gz``;
    #: ``folder``: copied to ``results`` (a new folder), as ramp-test leaves it.
    results_as: str = "archive"
    results: str | None = None
    #: gzip level of the results archive (1 for a local hand-over, 6 over a network).
    compresslevel: int = 6
    #: Measure the run's peak memory even without a memory limit.
    measure_peak: bool = True
    #: The bwrap check already passed on this machine (the dispatcher tried it).
    checked: bool = False
    #: With ``labels: hidden``: the file the trusted scorer wrote for the sandbox
    #: (:mod:`ramp_fleet.sandbox.train_predict`), seen read-only in place of the data.
    handed: str | None = None
    #: With ``labels: hidden``: the backend puts :data:`HANDED_FILE` into the run folder's
    #: :data:`HANDED_SHELF` itself, after the start (a local run starts while the trusted
    #: scorer is still loading the data; the run waits for the file).
    handed_later: bool = False
    #: Stop the run if the process that started the runner dies (a Dask worker).
    watch_parent: bool = False
    #: The log goes to the run folder's ``log``; False: to the runner's own output (a
    #: custom worker that keeps the log itself).
    log_in_folder: bool = True

    def resolved(self, folder: str) -> RunSpec:
        """The spec with every path absolute, as seen from this machine and ``folder``."""

        def here(path: str) -> str:
            return os.path.normpath(os.path.join(folder, os.path.expanduser(path)))

        isolation = replace(self.isolation,
                            read_only_paths=tuple(here(p) for p in self.isolation.read_only_paths))
        ramp_test = here(self.ramp_test) if os.sep in self.ramp_test else self.ramp_test
        return replace(self, kit_dir=here(self.kit_dir), data_dir=here(self.data_dir),
                       ramp_test=ramp_test, hidden=tuple(here(p) for p in self.hidden),
                       isolation=isolation,
                       handed=None if self.handed is None else here(self.handed),
                       results=None if self.results is None else here(self.results))

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> RunSpec:
        data = json.loads(text)
        isolation = data.pop("isolation", {})
        isolation["read_only_paths"] = tuple(isolation.get("read_only_paths", ()))
        return cls(**{**data, "hidden": tuple(data.get("hidden", ())),
                      "isolation": Isolation(**isolation),
                      "limits": Limits(**data.get("limits", {}))})


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
    #: Why the run did not start on this host (no working bwrap where ``required``, no
    #: ramp-test there): the host's problem, not the submission's.
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
