"""The dispatcher's trusted scorer: one process of the kit's environment, kept warm.

Started when the dispatcher starts (its imports and the data take a second
or more, paid while the first run trains), it answers one request at a
time: score the predictions in this folder (:mod:`ramp_fleet.scoring.program`).
A scorer that dies is started again for the next request; one that hangs
past :data:`DEADLINE` is killed. Its first answer also gives the problem's
official score, which the dispatcher records for the leaderboard.
"""

from __future__ import annotations

import json
import logging
import os
import pkgutil
import select
import threading
import time
from pathlib import Path
from typing import Any

from ramp_fleet import process
from ramp_fleet.scoring.files import ScoreError, Scores, ScoreType

logger = logging.getLogger("ramp_fleet.scoring")

#: The longest one submission's scoring (or the scorer's start) may take.
DEADLINE = 600.0
#: The scorer runs beside the runs: a little below them.
NICENESS = 5
MAX_ANSWER = 16 << 20


class Scorer:
    """A warm trusted scorer for one event (see the module docstring); thread-safe."""

    def __init__(self, python: str | Path, kit_dir: Path, data_dir: Path,
                 deadline: float = DEADLINE) -> None:
        self.argv = [str(python), "-I", "-c", _program(), str(kit_dir), str(data_dir)]
        self.deadline = deadline
        self._lock = threading.Lock()
        self._child: process.Child | None = None
        self._buffer = b""
        self._official: ScoreType | None = None
        self._problem: str | None = None
        #: Where it last wrote the data a sandbox with hidden labels is handed.
        self._handed: Path | None = None
        #: Set by :meth:`close`: nothing starts the process again.
        self._closed = False

    def start(self) -> Scorer:
        """Start the process (without waiting for it to be ready)."""
        with self._lock:
            if self._child is None:
                self._spawn()
        return self

    def official(self) -> ScoreType:
        """The problem's official score type (waits for the scorer to be ready)."""
        with self._lock:
            self._ready()
            official = self._official
        assert official is not None
        return official

    def score(self, folder: Path, max_bytes: int, submission: str) -> Scores:
        """Score the predictions of ``submission``'s ``training_output`` received in ``folder``,
        rewriting its score files; :class:`ScoreError` says why it cannot be scored."""
        with self._lock:
            answer = self._ask({"folder": str(folder), "max_bytes": max_bytes},
                               f"scoring {submission}")
        if "error" in answer:
            raise ScoreError(f"{submission} cannot be scored: {answer['error']}")
        return _scores(answer.get("scores"))

    def handed_data(self, path: Path) -> Path:
        """What a sandbox with hidden labels is given instead of the data folder, written
        at ``path`` by the scorer (once per dispatcher: :mod:`ramp_fleet.scoring.program`)."""
        with self._lock:
            if self._handed != path:
                path.parent.mkdir(parents=True, exist_ok=True)
                answer = self._ask({"hand": str(path)}, "handing the data over")
                if answer.get("refused"):
                    raise HandRefused(str(answer["error"]))
                if "error" in answer:
                    raise ScoreError(f"the trusted scorer {answer['error']}")
                self._handed = path
        return path

    def close(self) -> None:
        """Stop the process for good, now: a request waiting for it (a scorer still
        importing the kit, a score under way) is not waited for but ends with
        :class:`ScoreError`, and nothing starts the process again."""
        self._closed = True
        child = self._child  # read without the lock, which a waiting request holds
        if child is not None and child.poll() is None:
            process.kill_tree(child.pid, child.pid, grace=0.0)
        with self._lock:
            self._stop()

    # -- the process ----------------------------------------------------------------------------

    def _ask(self, request: dict[str, Any], doing: str) -> dict[str, Any]:
        """One request, and its answer (the scorer started again once if it died); under
        the lock."""
        for attempt in (1, 2):
            self._ready()
            assert self._child is not None and self._child.stdin is not None
            try:
                self._child.stdin.write(json.dumps(request).encode() + b"\n")
                self._child.stdin.flush()
                return self._read(doing)
            except _Died as exc:
                self._stop()
                if attempt == 2:
                    raise ScoreError(f"the trusted scorer stopped while {doing}: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _spawn(self) -> None:
        if self._closed:
            raise ScoreError("the trusted scorer was stopped")
        self._buffer = b""
        self._child = process.start_service(self.argv, keep_stderr=False, niceness=NICENESS)

    def _ready(self) -> None:
        """A scorer that has said it is ready (started again if it died)."""
        if self._closed:
            raise ScoreError("the trusted scorer was stopped")
        if self._problem is not None:
            raise ScoreError(f"the trusted scorer cannot score this event: {self._problem}")
        alive = self._child is not None and self._child.poll() is None
        if alive and self._official is not None:
            return
        if not alive:
            self._stop()
            self._spawn()
        try:
            answer = self._read("starting")
        except _Died as exc:
            self._stop()
            raise ScoreError(f"the trusted scorer could not start: {exc}") from None
        if not answer.get("ready"):
            self._problem = str(answer.get("error") or "it did not start")
            self._stop()
            raise ScoreError(f"the trusted scorer cannot score this event: {self._problem}")
        self._official = _official(answer.get("official"))

    def _read(self, doing: str) -> dict[str, Any]:
        assert self._child is not None and self._child.stdout is not None
        out = self._child.stdout.fileno()
        end = time.monotonic() + self.deadline
        while b"\n" not in self._buffer:
            left = end - time.monotonic()
            if left <= 0:
                raise _Died(f"no answer after {self.deadline:g} s ({doing})")
            ready, _, _ = select.select([out], [], [], left)
            if not ready:
                continue
            chunk = os.read(out, 1 << 16)
            if not chunk:
                raise _Died(f"it exited ({doing})")
            self._buffer += chunk
            if len(self._buffer) > MAX_ANSWER:
                raise _Died("it answered too much")
        line, _, self._buffer = self._buffer.partition(b"\n")
        answer = json.loads(line)
        if not isinstance(answer, dict):
            raise _Died("it answered something else than an object")
        return answer

    def _stop(self) -> None:
        child, self._child = self._child, None
        self._official = None
        if child is None:
            return
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
        if child.poll() is None:
            process.kill_tree(child.pid, child.pid, grace=1.0)
        child.wait()


class HandRefused(ScoreError):
    """The kit's data cannot be handed over with the labels hidden (it names why)."""


class _Died(Exception):
    """The scorer process stopped answering."""


def _program() -> str:
    source = pkgutil.get_data("ramp_fleet.scoring", "program.py")
    assert source is not None
    return source.decode("utf-8")


def _official(raw: object) -> ScoreType:
    if not isinstance(raw, dict):
        raise ScoreError("the trusted scorer did not name the official score")
    return ScoreType(name=str(raw["name"]), lower_is_better=bool(raw["lower_is_better"]),
                     precision=int(raw.get("precision", 2)))


def _scores(raw: object) -> Scores:
    if not isinstance(raw, dict):
        raise ScoreError("the trusted scorer answered no scores")
    return Scores(folds=raw["folds"], bagged=raw["bagged"], times=raw.get("times", []))
