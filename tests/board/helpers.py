"""Reading ramp-board's tables directly (over the trusted local socket), to check what the client wrote."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator

from tests.fixtures.postgres import PostgresServer
from tests.fixtures.ramp_board_event import Deployment


def query(postgres: PostgresServer, deployment: Deployment, sql: str) -> list[list[str]]:
    return postgres.psql(sql, deployment.database_name)


def bagged_scores(postgres: PostgresServer, deployment: Deployment,
                  submission_id: int) -> list[tuple[str, float, float]]:
    """(score name, valid bagged, test bagged), one row per row in ramp-board's table."""
    rows = query(postgres, deployment,
                 "SELECT t.name, s.valid_score_cv_bag, s.test_score_cv_bag FROM submission_scores s "
                 "JOIN event_score_types t ON t.id = s.event_score_type_id "
                 f"WHERE s.submission_id = {submission_id} ORDER BY t.name")
    return [(name, float(valid), float(test)) for name, valid, test in rows]


def fold_rows(postgres: PostgresServer, deployment: Deployment, submission_id: int) -> list[list[str]]:
    """(state, train_time) of each CV fold of a submission, in fold order."""
    return query(postgres, deployment,
                 "SELECT state, train_time FROM submission_on_cv_folds "
                 f"WHERE submission_id = {submission_id} ORDER BY id")


def submission_row(postgres: PostgresServer, deployment: Deployment, submission_id: int,
                   columns: str) -> list[str]:
    rows = query(postgres, deployment, f"SELECT {columns} FROM submissions WHERE id = {submission_id}")
    return rows[0]


@contextlib.contextmanager
def row_locked(postgres: PostgresServer, deployment: Deployment, submission_id: int) -> Iterator[None]:
    """Hold a lock on a submission's row in an open transaction, so writes to it wait."""
    psql = subprocess.Popen(
        [str(postgres.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-h", str(postgres.socket_dir),
         "-p", str(postgres.port), "-U", postgres.user, "-d", deployment.database_name],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert psql.stdin is not None and psql.stdout is not None
    try:
        psql.stdin.write(f"BEGIN;\nSELECT 'locked' FROM submissions WHERE id = {submission_id} "
                         "FOR UPDATE;\n")
        psql.stdin.flush()
        assert psql.stdout.readline().strip() == "locked"
        yield
        psql.stdin.write("COMMIT;\n")
        psql.stdin.close()
        psql.wait(timeout=60)
    finally:
        if psql.poll() is None:
            psql.kill()
            psql.wait()


def waiting_on_locks(postgres: PostgresServer, deployment: Deployment) -> int:
    """How many sessions of the test's database are waiting for a lock."""
    rows = postgres.psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                         f"AND datname = '{deployment.database_name}'")
    return int(rows[0][0])
