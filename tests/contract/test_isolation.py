"""What a submission can reach: the same sandbox on every backend (issue 16).

Each case runs on conda, AWS (moto + loopback sshd, the "instance" being this
machine), Dask (local scheduler and workers) and a guide-style custom worker,
through the real dispatcher, with real bwrap and real ramp-test.
"""

from __future__ import annotations

import re
import stat
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ramp_fleet.config import EventConfig
from ramp_fleet.store import State
from tests.conftest import needs_bwrap, write_submission
from tests.contract.conftest import Backend, RunEnvironment, dispatch, submissions_dir
from tests.contract.hostile import (
    PROBES,
    SECRETS,
    Targets,
    connections,
    hostile_estimator,
    loopback_listener,
    plant_credentials,
    probes_in,
    reached,
)

pytestmark = [pytest.mark.timeout(300), needs_bwrap]


def targets_of(event: EventConfig, backend: Backend, credentials: Path, port: int) -> Targets:
    """Where the things to protect are for this backend's runs."""
    if backend.name == "aws":  # the kit and the data as the instance holds them
        kit = Path(backend.worker["remote_ramp_kit_folder"])
        data, other = kit / "data", kit / "submissions" / "previous"
        write_submission(other.parent, other.name)  # left by a run on a reused instance
    else:
        kit, data = event.dirs.kit.path, event.dirs.data.path / "data"
        other = submissions_dir(event) / "other"
    return Targets(credentials=credentials, event_config=event.path, other_submission=other,
                   data_dir=data, kit_dir=kit, port=port)


@pytest.mark.parametrize("labels", ["visible", "hidden"])
def test_a_hostile_submission_reaches_nothing_and_is_still_scored(
    backend: Backend, contract_event, run_environment: RunEnvironment,  # type: ignore[no-untyped-def]
    tmp_path: Path, labels: str,
) -> None:
    home = tmp_path / "home"
    credentials = plant_credentials(home)
    keys = run_environment({**SECRETS, "HOME": str(home)})
    with loopback_listener() as listener:
        event = contract_event(("logreg",), worker={**keys, "isolation": {"labels": labels}})
        write_submission(submissions_dir(event), "other")
        targets = targets_of(event, backend, credentials, listener.getsockname()[1])
        write_submission(submissions_dir(event), "hostile", hostile_estimator(targets))
        store = dispatch(event)
        assert connections(listener) == 0, "the run reached a service on 127.0.0.1"
    rows = {row.name: row for row in store.all()}
    assert rows["hostile"].state == State.SCORED, rows["hostile"].error
    assert {rows[name].state for name in ("logreg", "other")} == {State.SCORED}
    results = probes_in((event.dirs.logs.path / "hostile" / "log").read_text())
    assert results and all(sorted(each) == sorted(PROBES) for each in results)
    assert [reached(each) for each in results] == [{}] * len(results)
    for folder in (targets.other_submission, targets.data_dir, targets.kit_dir):
        assert not (folder / "PWNED").exists()
    assert "REACHED" not in (event.dirs.logs.path / "hostile" / "log").read_text()


HOG = '''
    from sklearn.linear_model import LogisticRegression

    class Hog(LogisticRegression):
        def fit(self, X, y):
            chunks = []
            for _ in range(64):  # up to 4 GiB, every page touched
                chunk = bytearray(64 << 20)
                chunk[::4096] = b"x" * len(chunk[::4096])
                chunks.append(chunk)
            return super().fit(X, y)

    def get_estimator():
        return Hog(max_iter=500)
'''


def test_a_run_over_its_memory_limit_fails_naming_the_limit_and_the_others_score(
    backend: Backend, contract_event  # type: ignore[no-untyped-def]
) -> None:
    event = contract_event(("logreg", "knn"), worker={"isolation": {"memory_mb": 1024}})
    write_submission(submissions_dir(event), "hog", textwrap.dedent(HOG))
    store = dispatch(event)
    rows = {row.name: row for row in store.all()}
    assert (rows["logreg"].state, rows["knn"].state) == (State.SCORED, State.SCORED)
    hog = rows["hog"]
    assert hog.state == State.TRAINING_ERROR
    last = (hog.error or "").splitlines()[-1]
    assert hog.error == last, "one line"
    assert re.fullmatch(r"the run went over its memory limit of 1024 MB \(worker\.isolation\."
                        r"memory_mb, (cgroup v1|cgroup v2|watchdog): the resident memory of the "
                        r"(whole run|run's processes, sampled every 100 ms)\); "
                        r"(it reached (\d+) MB and the kernel stopped it|it had reached (\d+) MB "
                        r"when it was stopped)", last), last
    log = (event.dirs.logs.path / "hog" / "log").read_text()
    assert f"\nramp-fleet: {last}\n" in log
    assert hog.peak_memory_mb is not None and 1000 < hog.peak_memory_mb <= 1024 + 200
    honest = [rows[name].peak_memory_mb for name in ("logreg", "knn")]
    assert all(peak is not None and 20 < peak < 1024 for peak in honest), honest


FAILING_BWRAP = "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n"


def test_required_isolation_refuses_a_run_where_bubblewrap_does_not_work(
    backend: Backend, contract_event, run_environment: RunEnvironment,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    fake = tmp_path / "fake-bin"
    fake.mkdir()
    (fake / "bwrap").write_text(FAILING_BWRAP)
    (fake / "bwrap").chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    worker: dict[str, Any] = {"isolation": {"mode": "required"}}
    event = contract_event(("logreg",), worker={**worker, **run_environment({"PATH": str(fake)})})
    store = dispatch(event)
    [row] = store.all()
    assert row.state == State.CHECKING_ERROR
    assert (row.error or "").startswith("worker.isolation.mode is required, but bubblewrap "
                                        "does not work here:"), row.error
    assert not (event.dirs.predictions.path / "logreg").exists()
