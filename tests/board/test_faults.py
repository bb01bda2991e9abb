"""What goes wrong around the client: the helper dies or hangs, PostgreSQL restarts,
the settings are wrong, the dispatcher is killed. Each case ends in a clear
outcome: the request succeeds once things are back, or one line without the
password.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest

from ramp_fleet.ramp_board import RampBoardClient, RampBoardError
from ramp_fleet.ramp_board.client import DatabaseUnavailable
from tests.board.helpers import row_locked, submission_row, waiting_on_locks
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.ramp_board_event import Deployment
from tests.fixtures.sshd import free_port
from tests.waiting import wait_for


class Call(threading.Thread):
    """A client call in a thread, its result or error kept for the test to check."""

    def __init__(self, function: Any, *args: Any):
        super().__init__(daemon=True)
        self.function, self.args = function, args
        self.result: Any = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.function(*self.args)
        except BaseException as exc:
            self.error = exc

    def outcome(self) -> Any:
        self.join(timeout=300)
        assert not self.is_alive(), "the call never returned"
        if self.error is not None:
            raise self.error
        return self.result


def test_a_killed_helper_is_replaced_before_the_next_request(
        client: RampBoardClient, ramp_board: Deployment) -> None:
    first = client.helper_pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    psutil.Process(first).wait(timeout=60)
    assert client.states(ramp_board.event_name)[ramp_board.submissions["bob/knn"]] == "new"
    assert client.restarts == 1 and client.helper_pid not in (None, first)


def test_a_request_in_flight_is_resent_when_its_helper_dies(
        client: RampBoardClient, postgres: PostgresServer, ramp_board: Deployment) -> None:
    knn = ramp_board.submissions["bob/knn"]
    first = client.helper_pid
    assert first is not None
    with row_locked(postgres, ramp_board, knn):
        call = Call(client.set_state, knn, "training")
        wait_for(lambda: waiting_on_locks(postgres, ramp_board) == 1, "the helper waits for the lock")
        os.kill(first, signal.SIGKILL)
        # The dead helper's session still waits (PostgreSQL notices the client is gone
        # only when it answers); the second waiter is the new helper with the same request.
        wait_for(lambda: client.restarts == 1 and waiting_on_locks(postgres, ramp_board) == 2,
                 "a new helper re-sent the request")
    call.outcome()
    assert submission_row(postgres, ramp_board, knn, "state") == ["training"]


def test_a_helper_that_does_not_answer_in_time_is_replaced(
        ramp_board_env: Path, postgres: PostgresServer, ramp_board: Deployment) -> None:
    knn = ramp_board.submissions["bob/knn"]
    with RampBoardClient(ramp_board_env, ramp_board.database, timeout=1, retry_for=300,
                         first_backoff=0.1, max_backoff=0.5) as client:
        with row_locked(postgres, ramp_board, knn):
            call = Call(client.set_error, knn, "stuck", "training_error")
            wait_for(lambda: client.restarts >= 1, "the stuck helper was replaced")
        call.outcome()
    assert submission_row(postgres, ramp_board, knn, "state, error_msg") == ["training_error", "stuck"]


def test_a_request_waits_for_postgresql_to_come_back(
        client: RampBoardClient, postgres: PostgresServer, ramp_board: Deployment,
        caplog: pytest.LogCaptureFixture) -> None:
    """The pool's connection dies with the server; the request retries until it is back."""
    logreg = ramp_board.submissions["alice/logreg"]
    client.set_state(logreg, "sent_to_training")  # the helper now holds a pooled connection
    caplog.set_level(logging.WARNING, logger="ramp_fleet.ramp_board")
    postgres.stop()
    try:
        call = Call(client.set_state, logreg, "training")
        wait_for(lambda: any("trying again" in r.getMessage() for r in caplog.records),
                 "the client noticed the database is gone")
    finally:
        postgres.start()
    call.outcome()
    assert submission_row(postgres, ramp_board, logreg, "state") == ["training"]
    assert client.restarts == 0
    retried = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
    assert retried and all("\n" not in m and postgres.password not in m for m in retried)


def test_a_wrong_password_is_one_line_without_it(
        ramp_board_env: Path, postgres: PostgresServer, ramp_board: Deployment) -> None:
    wrong = "wrong-Secret-4711"
    database = postgres.sqlalchemy(ramp_board.database_name, password=wrong)
    with RampBoardClient(ramp_board_env, database) as client, \
            pytest.raises(RampBoardError) as info:
        client.check_event(ramp_board.event_name)
    message = str(info.value)
    assert message.startswith(f"ramp-board's hello (postgresql://mrramp@127.0.0.1:{postgres.port}/"
                              f"{ramp_board.database_name}): database: ")
    assert 'password authentication failed for user "mrramp"' in message
    assert "\n" not in message and wrong not in message and postgres.password not in message


def test_an_unreachable_database_is_one_line_at_once(
        ramp_board_env: Path, postgres: PostgresServer, ramp_board: Deployment) -> None:
    database = {**ramp_board.database, "port": free_port()}
    with RampBoardClient(ramp_board_env, database, retry_for=3600) as client, \
            pytest.raises(RampBoardError, match=r"^ramp-board's hello \(postgresql://mrramp@127\.0\.0\.1:"
                                                r"\d+/iris_\d+\): database: .*Connection refused") as info:
        client.check_event(ramp_board.event_name)
    assert "\n" not in str(info.value) and postgres.password not in str(info.value)


def test_a_missing_event_is_named(client: RampBoardClient, postgres: PostgresServer,
                                  ramp_board: Deployment) -> None:
    with pytest.raises(RampBoardError) as info:
        client.check_event("iris_tset")
    assert str(info.value) == (
        f"event 'iris_tset' is not in ramp-board's database postgresql://mrramp@127.0.0.1:"
        f"{postgres.port}/{ramp_board.database_name} (check ramp.event_name, or deploy the event)")


def test_an_environment_without_ramp_database_is_refused_at_start(ramp_board: Deployment) -> None:
    # The helper loads ramp-database while its dispatcher starts: the first call says why not.
    with RampBoardClient(Path(sys.executable), ramp_board.database) as client, \
            pytest.raises(RampBoardError) as info:
        client.check_event(ramp_board.event_name)
    assert not isinstance(info.value, DatabaseUnavailable)  # a usage error, not an outage
    assert str(info.value) == (
        f"ramp-board helper ({sys.executable}): cannot load ramp-database in {sys.executable}: "
        "ModuleNotFoundError: No module named 'ramp_database'")


def test_a_missing_interpreter_is_refused_at_start(tmp_path: Path, ramp_board: Deployment) -> None:
    with pytest.raises(RampBoardError) as info:
        RampBoardClient(tmp_path / "python", ramp_board.database)
    assert str(info.value) == f"ramp-board's python {tmp_path}/python is not an executable file"


def test_the_password_is_in_no_command_line_nor_environment(
        client: RampBoardClient, postgres: PostgresServer) -> None:
    helper = psutil.Process(client.helper_pid)
    assert not any(postgres.password in arg for arg in helper.cmdline())
    assert not any(postgres.password in value for value in helper.environ().values())


def test_close_ends_the_helper(client: RampBoardClient, ramp_board: Deployment,
                               caplog: pytest.LogCaptureFixture) -> None:
    """It finishes on the end of its stdin, without being killed."""
    helper = psutil.Process(client.helper_pid)
    caplog.set_level(logging.DEBUG, logger="ramp_fleet.ramp_board")
    client.close()
    assert not helper.is_running()
    assert f"ramp-board helper (pid {helper.pid}) ended with code 0" in caplog.messages
    with pytest.raises(RampBoardError, match=r"^ramp-board's states: the client is closed$"):
        client.states(ramp_board.event_name)


DISPATCHER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from ramp_fleet.ramp_board import RampBoardClient
    client = RampBoardClient(Path(sys.argv[1]), json.loads(sys.stdin.readline()))
    print(client.helper_pid, flush=True)
    time.sleep(600)
""")


def test_the_helper_dies_with_its_dispatcher(ramp_board_env: Path, ramp_board: Deployment) -> None:
    dispatcher = subprocess.Popen([sys.executable, "-c", DISPATCHER, str(ramp_board_env)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert dispatcher.stdin is not None and dispatcher.stdout is not None
    try:
        dispatcher.stdin.write(json.dumps(ramp_board.database) + "\n")
        dispatcher.stdin.flush()
        helper = psutil.Process(int(dispatcher.stdout.readline()))
        assert helper.is_running()
        dispatcher.kill()
        dispatcher.wait()
        helper.wait(timeout=60)  # psutil.TimeoutExpired if it outlived the dispatcher
    finally:
        if dispatcher.poll() is None:
            dispatcher.kill()
            dispatcher.wait()
