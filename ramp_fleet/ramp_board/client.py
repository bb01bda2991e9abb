"""Talk to ramp-board's database through the helper that runs in ramp-board's environment.

::

    with RampBoardClient(python, database_from_deployment(deploy / "config.yml")) as board:
        event = board.check_event("iris_test")        # RampBoardError: one line, exit 2
        for sub in board.new_submissions("iris_test"):
            board.set_state(sub.id, "sent_to_training")
        ...
        board.set_results(sub.id, predictions_dir / sub.basename)
        board.update_leaderboards("iris_test")

The helper (:mod:`ramp_fleet.ramp_board.helper`) is started at once in its
own session, reads the settings from its stdin (the password is never in
argv) and exits when that pipe closes, so it dies with this process.
(``PR_SET_PDEATHSIG`` is not used: it fires when the *thread* that started
the helper ends, and any dispatcher thread may restart it.)

Calls are thread-safe and serialised: the helper answers one request at a
time anyway. Each call has a deadline per reply; a helper that crashes or
stops answering is killed and restarted, and a database that cannot be
reached is waited for, both with capped back-off up to ``retry_for``
seconds, re-sending the same request (every operation is idempotent).
Anything else fails at once. Every failure is one :class:`RampBoardError`
whose message is one line without the password.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import logging
import os
import selectors
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ramp_fleet.config.deployment import database_from_deployment, describe_database
from ramp_fleet.errors import RampFleetError
from ramp_fleet.process import TimeoutExpired, start_service
from ramp_fleet.ramp_board.helper import one_line
from ramp_fleet.waiting import Backoff, WaitTimeout

logger = logging.getLogger("ramp_fleet.ramp_board")

HELPER_SCRIPT = Path(__file__).with_name("helper.py")
#: The helper runs below the runs (niceness 5): a leaderboard refresh, the one heavy thing
#: it does (ramp-database's pandas), takes the CPU the participants' runs leave.
NICENESS = 10
PROTOCOL = 1


class RampBoardError(RampFleetError):
    """ramp-board's database refused or could not do what was asked (one line, no password)."""


class DatabaseUnavailable(RampBoardError):
    """ramp-board's database could not be reached (in time): a fault of the outside world."""


class _Unavailable(Exception):
    """Worth another try: the helper died or hung, or the database could not be reached."""


@dataclass(frozen=True)
class HelperInfo:
    """What the helper runs with, and whether the event it was asked about exists."""

    protocol: int
    python: str
    ramp_database: str
    sqlalchemy: str
    numpy: str
    event_exists: bool | None


@dataclass(frozen=True)
class EventInfo:
    name: str
    exists: bool
    problem: str | None
    #: The starting kit's submission name, which ramp-board never trains.
    sandbox_name: str | None
    #: Where ramp-board keeps the submissions' folders (``<dir>/<basename>``).
    submissions_dir: Path | None


@dataclass(frozen=True)
class NewSubmission:
    id: int
    #: ramp-board's folder name, ``submission_000000042``.
    basename: str
    #: The name the participant gave it.
    name: str
    team: str


class _Helper:
    """One helper process: start it, exchange lines with deadlines, stop it.

    Starting does not wait: the helper loads ramp-database (most of a second) while the
    dispatcher starts; the first request waits for its ready line (:meth:`wait_ready`).
    """

    def __init__(self, python: Path, database: Mapping[str, Any], scrub: Callable[[str], str],
                 start_timeout: float):
        self._scrub = scrub
        self._ready_by = time.monotonic() + start_timeout
        self.ready = False
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._buffer = b""
        try:
            self.process = start_service([str(python), "-u", str(HELPER_SCRIPT)],
                                         niceness=NICENESS)
        except OSError as exc:
            raise _Unavailable(f"cannot start {python}: {exc.strerror or exc}") from None
        self._stderr_reader = threading.Thread(target=self._drain_stderr, daemon=True,
                                               name="ramp-board-helper-stderr")
        self._stderr_reader.start()
        assert self.process.stdout is not None
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.process.stdout, selectors.EVENT_READ)
        try:
            self.send({"database": dict(database)})
        except _Unavailable:
            self.kill()
            raise

    def wait_ready(self) -> None:
        """Until the helper has loaded ramp-database and said so."""
        if self.ready:
            return
        try:
            answer = self.receive(None, self._ready_by)
            if not answer.get("ok"):
                raise _Unavailable(str(answer.get("error")))
        except _Unavailable:
            self.kill()
            raise
        self.ready = True

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, message: Mapping[str, Any]) -> None:
        assert self.process.stdin is not None
        data = memoryview((json.dumps(message) + "\n").encode())
        try:
            while data:
                data = data[self.process.stdin.write(data) or 0:]
        except (BrokenPipeError, ValueError):
            raise _Unavailable(self._ended()) from None

    def receive(self, request_id: int | None, deadline: float) -> dict[str, Any]:
        """The next reply to ``request_id``; a stale reply from an earlier try is skipped."""
        while True:
            line = self._read_line(deadline)
            try:
                reply = json.loads(line)
            except ValueError:
                self.kill()
                raise _Unavailable(f"the helper wrote a line that is not JSON: {line[:80]!r}") from None
            if isinstance(reply, dict) and reply.get("id") == request_id:
                return reply

    def _read_line(self, deadline: float) -> bytes:
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise _Unavailable("no reply in time; the helper was stopped")
            if not self._selector.select(remaining):
                continue
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                raise _Unavailable(self._ended())
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _ended(self) -> str:
        try:
            code = self.process.wait(timeout=5)
        except TimeoutExpired:
            self.kill()
            code = self.process.returncode
        self._stderr_reader.join(timeout=5)  # its last lines say why
        tail = next((line for line in reversed(self.stderr_tail) if line.strip()), "")
        return f"the helper exited with code {code}" + (f": {tail}" if tail else "")

    def _drain_stderr(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        for raw in iter(stream.readline, b""):
            line = self._scrub(raw.decode("utf-8", "replace"))
            self.stderr_tail.append(line)
            logger.debug("ramp-board helper: %s", line)
        stream.close()

    def stop(self, grace: float = 10.0) -> int:
        """End of stdin is the helper's signal to finish; killed if it does not. Its exit code."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=grace)
        except TimeoutExpired:
            self.kill()
        self._close_pipes()
        return self.process.returncode

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        self._selector.close()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None and not stream.closed:
                stream.close()


class RampBoardClient:
    """ramp-board's database, through one helper process in ramp-board's environment.

    ``python`` is that environment's interpreter; ``database`` is the
    deployment config's ``sqlalchemy`` section. ``timeout`` bounds each reply,
    ``retry_for`` how long a call keeps trying while the helper or the
    database is away. The helper starts here, and loads ramp-database while
    its caller goes on; :meth:`check_event` is the start-up check a
    dispatcher makes before anything runs. A first helper that cannot load
    ramp-database is the deployment's problem (:class:`RampBoardError` at
    the first call), not an outage to wait out.
    """

    def __init__(
        self,
        python: Path,
        database: Mapping[str, Any],
        *,
        timeout: float = 300.0,
        retry_for: float = 600.0,
        first_backoff: float = 0.5,
        max_backoff: float = 15.0,
        start_timeout: float = 120.0,
    ):
        self.python = Path(python)
        self.where = describe_database(database)
        self.timeout = timeout
        self.retry_for = retry_for
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.start_timeout = start_timeout
        #: How many times a crashed or stuck helper was replaced.
        self.restarts = 0
        self._database = dict(database)
        self._secret = str(database.get("password") or "")
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        if not self.python.is_file() or not os.access(self.python, os.X_OK):
            raise RampBoardError(f"ramp-board's python {self.python} is not an executable file")
        try:
            self._helper: _Helper | None = self._spawn()
        except _Unavailable as exc:
            raise RampBoardError(self._clean(f"ramp-board helper ({self.python}): {exc}")) from None
        #: A helper has said it is ready since this client started.
        self._proven = False

    # -- the operations -------------------------------------------------------

    def hello(self, event_name: str | None = None) -> HelperInfo:
        """Versions on ramp-board's side; asked once, without waiting for a missing database."""
        result = self._call("hello", {"event_name": event_name}, retry=False)
        return HelperInfo(**result)

    def check_event(self, event_name: str) -> EventInfo:
        """The start-up check: the database answers, its numpy can score, the event exists."""
        info = self.hello(event_name)
        if int(info.numpy.split(".")[0]) >= 2:
            raise RampBoardError(f"{self.python} has numpy {info.numpy}; ramp-database's score "
                                 "writing needs numpy<2 in ramp-board's environment")
        if not info.event_exists:
            raise RampBoardError(f"event '{event_name}' is not in ramp-board's database "
                                 f"{self.where} (check ramp.event_name, or deploy the event)")
        return self.event(event_name)

    def event(self, event_name: str) -> EventInfo:
        result = self._call("event", {"event_name": event_name})
        folder = result.pop("submissions_dir")
        return EventInfo(**result, submissions_dir=Path(folder) if folder else None)

    def new_submissions(self, event_name: str, after_id: int | None = None) -> list[NewSubmission]:
        """New submissions (not the sandbox) in submission order; only ids above ``after_id``.

        ``after_id`` keeps each poll proportional to what is new; a submission
        put back to ``new`` below it is seen by a call without ``after_id``.
        """
        result = self._call("new_submissions", {"event_name": event_name, "after_id": after_id})
        return [NewSubmission(**row) for row in result]

    def set_state(self, submission_id: int, state: str) -> None:
        self._call("set_state", {"submission_id": submission_id, "state": state})

    def set_error(self, submission_id: int, message: str, state: str | None = None) -> None:
        """ramp-board's ``error_msg``; with ``state`` (``training_error``...) in the same transaction."""
        self._call("set_error", {"submission_id": submission_id, "message": message, "state": state})

    def set_results(self, submission_id: int, predictions_path: Path,
                    max_ram_mb: float | None = None) -> None:
        """Times, scores and bagged scores from ``predictions_path``, then ``scored``: one transaction."""
        self._call("set_results", {"submission_id": submission_id,
                                   "predictions_path": str(predictions_path), "max_ram_mb": max_ram_mb})

    def set_queue_positions(self, event_name: str, positions: Mapping[int, int]) -> int:
        """``queue_position`` per submission id (1 = next, -1 = running); returns how many changed."""
        result = self._call("set_queue_positions", {
            "event_name": event_name, "positions": {str(k): int(v) for k, v in positions.items()}})
        return int(result)

    def update_leaderboards(self, event_name: str, teams: Sequence[str] | None = None) -> None:
        """ramp-database's event leaderboards recomputed, and those of ``teams`` (None: every
        team's)."""
        self._call("update_leaderboards", {"event_name": event_name,
                                           "teams": None if teams is None else list(teams)})

    def reset_interrupted(self, event_name: str) -> list[int]:
        """Submissions left in sent_to_training/training/tested go back to ``new``; their ids."""
        return [int(sid) for sid in self._call("reset_interrupted", {"event_name": event_name})]

    def states(self, event_name: str) -> dict[int, str]:
        """Every submission of the event (the sandbox too) and its state."""
        result = self._call("states", {"event_name": event_name})
        return {int(sid): str(state) for sid, state in result.items()}

    def submitted(self, event_name: str) -> dict[int, float]:
        """When each submission of the event was made, in epoch seconds."""
        result = self._call("submitted", {"event_name": event_name})
        return {int(sid): float(when) for sid, when in result.items()}

    # -- life cycle -----------------------------------------------------------

    @property
    def helper_pid(self) -> int | None:
        helper = self._helper
        return helper.pid if helper is not None and helper.alive() else None

    def close(self) -> None:
        """Let the call in flight finish, then end the helper."""
        self._closing.set()
        with self._lock:
            if self._helper is not None:
                code = self._helper.stop()
                logger.debug("ramp-board helper (pid %d) ended with code %d", self._helper.pid, code)
                self._helper = None

    def __enter__(self) -> RampBoardClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------

    def _call(self, op: str, args: dict[str, Any], *, retry: bool = True) -> Any:
        request = {"id": next(self._ids), "op": op, "args": args}
        with self._lock:
            if self._closing.is_set():
                raise RampBoardError(f"ramp-board's {op}: the client is closed")
            backoff = Backoff(deadline=self.retry_for, first=self.first_backoff, cap=self.max_backoff,
                              what=f"ramp-board's {op}", stop=self._closing)
            try:
                for attempt in backoff:
                    try:
                        return self._round_trip(op, request)
                    except _Unavailable as exc:
                        message = self._clean(f"ramp-board's {op} ({self.where}): {exc}")
                        if not retry:
                            raise DatabaseUnavailable(message) from None
                        logger.warning("%s; trying again (attempt %d)", message, attempt.number)
                        attempt.failed(_Unavailable(self._clean(str(exc))))
            except WaitTimeout as exc:
                raise DatabaseUnavailable(self._clean(str(exc))) from None
        raise AssertionError("unreachable")  # pragma: no cover - Backoff returns or raises

    def _round_trip(self, op: str, request: dict[str, Any]) -> Any:
        helper = self._helper
        if helper is None or not helper.alive():
            if helper is not None:
                helper.kill()
                self.restarts += 1
                logger.warning("ramp-board helper (pid %d) had exited; starting a new one", helper.pid)
            self._helper = None
            self._helper = helper = self._spawn()
        try:
            helper.wait_ready()
        except _Unavailable as exc:
            if not self._proven:
                self._helper = None
                raise RampBoardError(self._clean(f"ramp-board helper ({self.python}): {exc}")) \
                    from None
            raise
        self._proven = True
        try:
            helper.send(request)
            reply = helper.receive(request["id"], time.monotonic() + self.timeout)
        except _Unavailable:
            helper.kill()
            raise
        if reply.get("ok"):
            return reply.get("result")
        if reply.get("retry"):
            raise _Unavailable(str(reply.get("error")))
        where = f" ({self.where})" if reply.get("database") else ""
        raise RampBoardError(self._clean(f"ramp-board's {op}{where}: {reply.get('error')}"))

    def _spawn(self) -> _Helper:
        return _Helper(self.python, self._database, self._clean, self.start_timeout)

    def _clean(self, text: str) -> str:
        return one_line(text, self._secret or None)


__all__ = [
    "EventInfo",
    "HelperInfo",
    "NewSubmission",
    "RampBoardClient",
    "RampBoardError",
    "database_from_deployment",
]
