"""ramp-fleet's hands inside ramp-board's environment: a line-protocol server on stdin/stdout.

ramp-database pins libraries that ramp-fleet's own environment has outgrown
(numpy<2, SQLAlchemy<2), so everything that touches ramp-board's database
runs here, in the organiser's ramp-board environment, through ramp-database's
own functions. This file is a self-contained script (standard library plus
ramp_database) started as ``<ramp-board python> -u helper.py``; ramp-fleet is
not installed beside it. It runs on Python 3.8 or newer.

Protocol, one JSON object per line in each direction:

* the first line the helper reads holds the settings, ``{"database": {...}}``
  (ramp-board's ``sqlalchemy`` section), so the password never appears in
  argv or in the environment;
* the helper answers ``{"id": null, "ok": true, "result": {"protocol": 1}}``
  once ramp_database is imported (or ``"ok": false`` and exits);
* then each request ``{"id": 7, "op": "set_state", "args": {...}}`` gets
  ``{"id": 7, "ok": true, "result": ...}`` or
  ``{"id": 7, "ok": false, "error": "one line", "retry": bool}``; ``retry``
  says the database could not be reached and the same request may succeed
  later; ``"database": true`` marks an error of the database itself.

Every operation is idempotent and runs in one database transaction, even
though ramp-database's functions call ``session.commit()`` themselves: the
session is bound to a connection whose transaction we opened, and SQLAlchemy
1.4 leaves such an outer transaction to its owner. The helper exits at the
end of its stdin, so it dies with the dispatcher that holds the pipe.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
import types
from collections.abc import Callable
from typing import IO, Any

PROTOCOL = 1
#: States a dead dispatcher can leave a submission in while it was ours.
INTERRUPTED_STATES = ("sent_to_training", "training", "tested")
MAX_ERROR_CHARS = 2000


class NotFound(Exception):
    """A submission or event the request names is not in the database."""


def one_line(text: str, secret: str | None = None) -> str:
    """Whitespace collapsed, the password masked, bounded: what a log line can hold."""
    if secret:
        text = text.replace(secret, "****")
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_ERROR_CHARS else flat[: MAX_ERROR_CHARS - 3] + "..."


class ScoreCache:
    """What ramp-database's leaderboards read of each scored submission, kept between refreshes.

    ``update_leaderboards`` rebuilds every leaderboard from scratch: for each
    scored submission, for each of the leaderboards that show scores, it reads
    the submission's bagged scores, fold scores, fold times and peak memory
    again — several queries each time, so a refresh costs queries in
    proportion to the event's size, however little changed. Those values
    change only when this helper writes them (only a dispatcher scores, and
    the dispatcher's lock makes this the only one of the event), so they are
    kept per submission and forgotten as soon as a write touches it. The
    leaderboards themselves are still ramp-database's own code: the cache
    only answers its four getters (in ``ramp_database.tools.leaderboard``'s
    namespace, where it looks them up), with copies.
    """

    GETTERS = ("get_bagged_scores", "get_scores", "get_time", "get_submission_max_ram")

    def __init__(self) -> None:
        self._values: dict[tuple[str, int], Any] = {}

    def install(self, module: Any) -> None:
        for name in self.GETTERS:
            setattr(module, name, self._cached(name, getattr(module, name)))

    def _cached(self, name: str, getter: Callable[[Any, int], Any]) -> Callable[[Any, int], Any]:
        def cached(session: Any, submission_id: int) -> Any:
            key = (name, int(submission_id))
            if key not in self._values:
                self._values[key] = getter(session, submission_id)
            value = self._values[key]
            return value.copy() if hasattr(value, "copy") else value  # callers may change it

        cached.__wrapped__ = getter  # type: ignore[attr-defined]
        return cached

    def forget(self, *submission_ids: int) -> None:
        gone = {int(sid) for sid in submission_ids}
        for key in [key for key in self._values if key[1] in gone]:
            del self._values[key]


class Board:
    """The operations, each a function of a session inside one transaction."""

    def __init__(self, database: dict[str, Any]) -> None:
        import ramp_database.tools.leaderboard
        import ramp_database.tools.submission  # fail at start, not mid-event
        from sqlalchemy import create_engine
        from sqlalchemy.engine.url import URL
        from sqlalchemy.orm import sessionmaker

        connect_args = {}
        if str(database.get("drivername", "")).startswith("postgresql"):
            connect_args["connect_timeout"] = 10
        # Not ramp_database.utils.setup_db: that would run create_all() on the
        # website's database at every start.
        self.engine = create_engine(URL.create(**database), connect_args=connect_args,
                                    pool_size=1, max_overflow=2)
        self.session_factory = sessionmaker()
        self.scores = ScoreCache()
        self.scores.install(ramp_database.tools.leaderboard)
        self.operations: dict[str, Callable[..., Any]] = {
            "hello": self.hello,
            "event": self.event,
            "new_submissions": self.new_submissions,
            "set_state": self.set_state,
            "set_error": self.set_error,
            "set_results": self.set_results,
            "set_queue_positions": self.set_queue_positions,
            "update_leaderboards": self.update_leaderboards,
            "reset_interrupted": self.reset_interrupted,
            "states": self.states,
            "submitted": self.submitted,
        }

    # -- plumbing -------------------------------------------------------------

    def run(self, op: str, args: dict[str, Any]) -> Any:
        """Run one operation in one transaction; a dropped connection is retried once at once."""
        from sqlalchemy.exc import DBAPIError

        operation = self.operations.get(op)
        if operation is None:
            raise ValueError(f"unknown operation {op!r}")
        try:
            return self._in_transaction(operation, args)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        # The pool held a connection to a server that has since restarted.
        return self._in_transaction(operation, args)

    def _in_transaction(self, operation: Callable[..., Any], args: dict[str, Any]) -> Any:
        with self.engine.connect() as connection:
            transaction = connection.begin()
            session = self.session_factory(bind=connection)
            try:
                result = operation(session, **args)
                session.flush()
                transaction.commit()
                return result
            except BaseException:
                if transaction.is_active:
                    with contextlib.suppress(Exception):  # a lost connection has nothing to undo
                        transaction.rollback()
                raise
            finally:
                session.close()

    @staticmethod
    def _submission(session: Any, submission_id: int) -> Any:
        from ramp_database.model import Submission

        submission = session.get(Submission, int(submission_id))
        if submission is None:
            raise NotFound(f"no submission {submission_id} in ramp-board's database")
        return submission

    @staticmethod
    def _event_submissions(session: Any, event_name: str, *columns: Any) -> Any:
        from ramp_database.model import Event, EventTeam, Submission

        return (session.query(*columns)
                .join(EventTeam, Submission.event_team_id == EventTeam.id)
                .join(Event, EventTeam.event_id == Event.id)
                .filter(Event.name == event_name))

    # -- operations -----------------------------------------------------------

    def hello(self, session: Any, event_name: str | None = None) -> dict[str, Any]:
        import numpy
        import ramp_database
        import sqlalchemy
        from ramp_database.model import Event

        exists = None
        if event_name is not None:
            exists = session.query(Event.id).filter(Event.name == event_name).first() is not None
        return {
            "protocol": PROTOCOL,
            "python": sys.version.split()[0],
            "ramp_database": getattr(ramp_database, "__version__", "unknown"),
            "sqlalchemy": sqlalchemy.__version__,
            "numpy": numpy.__version__,
            "event_exists": exists,
        }

    def event(self, session: Any, event_name: str) -> dict[str, Any]:
        from ramp_database.model import Event, Problem

        row = (session.query(Problem.name, Event.ramp_sandbox_name, Event.path_ramp_submissions)
               .join(Problem, Event.problem_id == Problem.id)
               .filter(Event.name == event_name).first())
        if row is None:
            return {"name": event_name, "exists": False, "problem": None,
                    "sandbox_name": None, "submissions_dir": None}
        return {"name": event_name, "exists": True, "problem": row[0],
                "sandbox_name": row[1], "submissions_dir": row[2]}

    def new_submissions(self, session: Any, event_name: str,
                        after_id: int | None = None) -> list[dict[str, Any]]:
        """New submissions of the event but its sandbox, in id order; one SELECT."""
        from ramp_database.model import Event, EventTeam, Submission, Team

        query = (self._event_submissions(session, event_name, Submission.id, Submission.name,
                                         Team.name)
                 .join(Team, EventTeam.team_id == Team.id)
                 .filter(Submission.state == "new")
                 .filter(Submission.name != Event.ramp_sandbox_name))
        if after_id is not None:
            query = query.filter(Submission.id > int(after_id))
        return [{"id": sid, "basename": _basename(sid), "name": name, "team": team}
                for sid, name, team in query.order_by(Submission.id)]

    def set_state(self, session: Any, submission_id: int, state: str) -> None:
        from ramp_database.tools.submission import set_submission_state

        self.scores.forget(submission_id)
        self._submission(session, submission_id)
        set_submission_state(session, int(submission_id), state)

    def set_error(self, session: Any, submission_id: int, message: str,
                  state: str | None = None) -> None:
        """The error message, and with ``state`` the error state too, in one transaction."""
        from ramp_database.tools.submission import (
            set_submission_error_msg,
            set_submission_state,
        )

        self.scores.forget(submission_id)
        self._submission(session, submission_id)
        if state is not None:
            set_submission_state(session, int(submission_id), state)
        set_submission_error_msg(session, int(submission_id), message)

    def set_results(self, session: Any, submission_id: int, predictions_path: str,
                    max_ram_mb: float | None = None) -> None:
        """Times, fold scores, bagged scores (and peak memory), then ``scored``.

        These functions overwrite the rows ramp-database created with the
        submission, so a second call leaves the same rows, not new ones.
        """
        from ramp_database.tools.submission import (
            set_bagged_scores,
            set_scores,
            set_submission_max_ram,
            set_submission_state,
            set_time,
        )

        self.scores.forget(submission_id)
        self._submission(session, submission_id)
        if not os.path.isfile(os.path.join(predictions_path, "bagged_scores.csv")):
            raise NotFound(f"no predictions for submission {submission_id}: "
                           f"{predictions_path} has no bagged_scores.csv")
        sid = int(submission_id)
        set_time(session, sid, predictions_path)
        set_scores(session, sid, predictions_path)
        set_bagged_scores(session, sid, predictions_path)
        if max_ram_mb is not None:
            set_submission_max_ram(session, sid, float(max_ram_mb))
        set_submission_state(session, sid, "scored")

    def set_queue_positions(self, session: Any, event_name: str,
                            positions: dict[str, int]) -> int:
        """``queue_position`` of the given submissions of the event (-1: running)."""
        from ramp_database.model import Submission
        from sqlalchemy import case, update

        wanted = {int(key): int(value) for key, value in positions.items()}
        if not wanted:
            return 0
        ours = [row.id for row in self._event_submissions(session, event_name, Submission.id)
                .filter(Submission.id.in_(sorted(wanted)))]
        if not ours:
            return 0
        # One statement for them all (a shift of the queue moves every position).
        position = case({sid: wanted[sid] for sid in ours}, value=Submission.id)
        result = session.execute(update(Submission)
                                 .where(Submission.id.in_(ours), Submission.queue_position != position)
                                 .values(queue_position=position)
                                 .execution_options(synchronize_session=False))
        return int(result.rowcount or 0)

    def update_leaderboards(self, session: Any, event_name: str,
                            teams: list[str] | None = None) -> None:
        """The event's leaderboards, and the user leaderboards of ``teams`` (None: all): a
        team's own leaderboards show only its submissions, so the others' stay as they are."""
        from ramp_database.tools.leaderboard import (
            update_all_user_leaderboards,
            update_leaderboards,
            update_user_leaderboards,
        )

        update_leaderboards(session, event_name)
        if teams is None:
            update_all_user_leaderboards(session, event_name)
        for team in teams or ():
            update_user_leaderboards(session, event_name, str(team))

    def reset_interrupted(self, session: Any, event_name: str) -> list[int]:
        """Back to ``new`` (with their folds) what a dead dispatcher left half done."""
        from ramp_database.model import Submission
        from ramp_database.tools.submission import set_submission_state

        ids = [sid for (sid,) in self._event_submissions(session, event_name, Submission.id)
               .filter(Submission.state.in_(INTERRUPTED_STATES)).order_by(Submission.id)]
        self.scores.forget(*ids)
        for sid in ids:
            set_submission_state(session, sid, "new")
        return ids

    def states(self, session: Any, event_name: str) -> dict[str, str]:
        from ramp_database.model import Submission

        rows = self._event_submissions(session, event_name, Submission.id, Submission.state)
        return {str(sid): state for sid, state in rows.order_by(Submission.id)}


    def submitted(self, session: Any, event_name: str) -> dict[str, float]:
        """When each submission of the event was made (epoch seconds; ramp-board keeps UTC)."""
        import datetime

        from ramp_database.model import Submission

        rows = self._event_submissions(session, event_name, Submission.id,
                                       Submission.submission_timestamp)
        return {str(sid): stamp.replace(tzinfo=datetime.timezone.utc).timestamp()  # noqa: UP017 - 3.8+
                for sid, stamp in rows if stamp is not None}


def _basename(submission_id: int) -> str:
    """ramp-board's folder name for a submission, from its own ``Submission.basename``."""
    from ramp_database.model import Submission

    basename: str = Submission.basename.fget(types.SimpleNamespace(id=submission_id))
    return basename


def describe_error(exc: BaseException, secret: str | None) -> dict[str, Any]:
    """One line, and whether waiting for the database could make the request succeed."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(exc, DBAPIError):
        message = "database: " + one_line(str(exc.orig), secret)
        lost = exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError))
        return {"error": message, "database": True,
                "retry": bool(lost) and "authentication failed" not in message}
    if isinstance(exc, NotFound):
        return {"error": one_line(str(exc), secret), "retry": False}
    return {"error": one_line(f"{type(exc).__name__}: {exc}", secret), "retry": False}


def serve(requests: IO[str], replies: IO[str]) -> int:
    """Read the settings line, then answer requests until stdin ends."""

    def send(reply: dict[str, Any]) -> None:
        replies.write(json.dumps(reply) + "\n")
        replies.flush()

    try:
        settings = json.loads(requests.readline() or "null")
        database = dict(settings["database"])
    except (ValueError, TypeError, KeyError):
        send({"id": None, "ok": False, "error": "the first line must be {\"database\": {...}}",
              "retry": False})
        return 2
    secret = str(database.get("password") or "") or None
    try:
        board = Board(database)
    except Exception as exc:
        send({"id": None, "ok": False, "retry": False, "error": one_line(
            f"cannot load ramp-database in {sys.executable}: {type(exc).__name__}: {exc}", secret)})
        return 3
    send({"id": None, "ok": True, "result": {"protocol": PROTOCOL}})
    for line in requests:
        if not line.strip():
            continue
        request_id = None
        try:
            request = json.loads(line)
            request_id = request.get("id")
            result = board.run(str(request["op"]), dict(request.get("args") or {}))
            reply = {"id": request_id, "ok": True, "result": result}
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            reply = {"id": request_id, "ok": False, **describe_error(exc, secret)}
        send(reply)
    board.engine.dispose()
    return 0


def main() -> int:
    # Replies go to a private copy of stdout; whatever a library prints lands on stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    code = serve(sys.stdin, replies)
    # Every reply is sent and the engine disposed: nothing is left to do but tear down the
    # interpreter (pandas, SQLAlchemy...), which takes longer than all the rest of the end.
    replies.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    # Run as a script, this folder heads sys.path; its modules (client, database)
    # must not shadow anything ramp_database imports.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != here]
    sys.exit(main())
