"""Isolation as the organiser meets it: the CLI, the config, mode off, and no root needed.

The contract suite (tests/contract/test_isolation.py) proves the sandbox on
every backend; here the conda worker runs through the real ``ramp-fleet``
command line, with real bwrap, as root and as an unprivileged user.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from ramp_fleet.sandbox import cgroups
from ramp_fleet.store import State, Store
from tests.conftest import EventFactory, needs_bwrap, write_submission
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
from tests.fixtures.unprivileged import DEV_SITE, Unprivileged, chown_tree, unprivileged

__all__ = ["unprivileged"]

pytestmark = [pytest.mark.timeout(600)]
VENV_BIN = str(Path(sys.executable).parent)
HOW_TO_INSTALL = ("install bubblewrap (Debian/Ubuntu: apt install bubblewrap; RHEL/Fedora: dnf "
                  "install bubblewrap; Ubuntu 24.04: also load its AppArmor profile, see the "
                  "README)")
NO_BWRAP_HERE = (f"no bwrap on PATH; {HOW_TO_INSTALL}; or set worker.isolation.mode: off to run "
                 "participants' code unisolated")


def cli(*args: str, path: str, extra: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/root"), **(extra or {})}
    return subprocess.run([sys.executable, "-m", "ramp_fleet", *args], capture_output=True,
                          text=True, env=env, timeout=600, check=False)


def fake_bwrap(folder: Path, script: str) -> str:
    folder.mkdir()
    (folder / "bwrap").write_text(script)
    (folder / "bwrap").chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    return f"{folder}:{VENV_BIN}"


# -- the command line -----------------------------------------------------------------------


@needs_bwrap
def test_validate_says_which_mode_applies_and_that_bwrap_works_here(
    make_event: EventFactory,
) -> None:
    config = make_event(("logreg",), worker={"isolation": {"memory_mb": 400}})
    done = cli("validate", str(config), path=os.environ["PATH"])
    assert done.returncode == 0, done.stderr
    isolation = yaml.safe_load(done.stdout)["isolation"]
    assert (isolation["mode"], isolation["applies"], isolation["network"]) == (
        "required", "isolated", "none"), "isolated by default"
    assert isolation["bubblewrap"].startswith("bubblewrap ")
    assert isolation["bubblewrap"].endswith("/bwrap works here")
    kind, detail = cgroups.available()
    if kind is None:
        assert isolation["memory"].startswith("400 MB of resident memory per run (watchdog")
        assert isolation["processes"] == "4096 per run (RLIMIT_NPROC of the run's own uid)"
    else:
        assert isolation["memory"] == f"400 MB of resident memory per run ({detail})"
        assert isolation["processes"] == f"4096 per run (pids.max, {kind})"
    assert isolation["disk"] == "1024 MB in its own folder and in its /tmp, each (memory-backed)"
    assert done.stderr == ""


def test_validate_of_an_unisolated_event_claims_no_process_cap(make_event: EventFactory) -> None:
    config = make_event(worker={"isolation": {"mode": "off", "memory_mb": 512}})
    done = cli("validate", str(config), path=os.environ["PATH"])
    isolation = yaml.safe_load(done.stdout)["isolation"]
    assert (isolation["applies"], isolation["processes"], isolation["disk"]) == (
        "NOT isolated (mode off)", "not capped: runs are not isolated",
        "not capped: runs are not isolated")
    assert isolation["memory"].startswith("512 MB of resident memory per run (")


def test_required_by_default_without_bwrap_exits_2_with_one_line_saying_what_to_do(
    make_event: EventFactory,
) -> None:
    config = make_event(("logreg",))
    for command in ("validate", "dispatch"):
        done = cli(command, str(config), path=f"/nonexistent:{VENV_BIN}")
        assert done.returncode == 2, (command, done.stderr)
        assert done.stderr == (f"error: {config}: worker.isolation.mode is required, but "
                               f"bubblewrap does not work here: {NO_BWRAP_HERE}\n")
    assert not (config.parent / "events" / "iris_test" / "logs" / "logreg").exists()


def test_required_with_a_bwrap_that_fails_exits_2(make_event: EventFactory, tmp_path: Path) -> None:
    config = make_event(("logreg",), worker={"isolation": {"mode": "required"}})
    # Answers like bwrap, but cannot build a sandbox (user namespaces disabled, say).
    path = fake_bwrap(tmp_path / "fake", textwrap.dedent("""\
        #!/bin/sh
        case "$1" in
          --version) echo "bubblewrap 0.8.0" ;;
          --help) echo "usage: bwrap [OPTIONS...] [--] COMMAND [ARGS...]" ;;
          *) echo "bwrap: setting up uid map: Permission denied" >&2; exit 1 ;;
        esac
    """))
    done = cli("dispatch", str(config), path=path)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: {config}: worker.isolation.mode is required, but "
                           f"bubblewrap does not work here: bubblewrap 0.8.0 at {tmp_path}/fake/"
                           "bwrap failed a test sandbox (bwrap: setting up uid map: Permission "
                           "denied); unprivileged user namespaces are")


def test_auto_without_bwrap_warns_once_and_runs_not_isolated(make_event: EventFactory) -> None:
    config = make_event(("logreg",), worker={"conda_env": sys.prefix,
                                              "isolation": {"mode": "auto"}})
    done = cli("dispatch", str(config), path=f"/nonexistent:{VENV_BIN}")
    assert done.returncode == 0, done.stderr
    [warning] = done.stderr.splitlines()
    assert warning == (
        "warning: submissions run NOT isolated (bubblewrap does not work here: no bwrap on "
        "PATH): a submission can read whatever the dispatcher's user can (its home and "
        "credentials, the event and deployment configs, other submissions), write wherever it "
        f"can, and reach the network; {HOW_TO_INSTALL}")
    assert "1 scored" in done.stdout


@pytest.mark.parametrize(("key", "value", "problem"), [
    ("mode", "sandbox", "must be one of 'auto', 'required' or 'off', got 'sandbox'"),
    ("memory_mb", 0, "must be a whole number of at least 1, got 0"),
    ("read_only_paths", ["data/extra"], "must be an absolute path (or start with ~/), got "
                                        "'data/extra'"),
])
def test_a_bad_isolation_key_is_one_line(make_event: EventFactory, key: str, value: Any,
                                         problem: str) -> None:
    config = make_event(worker={"isolation": {key: value}})
    done = cli("validate", str(config), path=os.environ["PATH"])
    assert done.returncode == 2
    where = f"{key}.0" if key == "read_only_paths" else key
    assert done.stderr == f"error: {config}: worker.isolation.{where}: {problem}\n"


# -- what "off" means ---------------------------------------------------------------------------


def hostile_event(make_event: EventFactory, tmp_path: Path, port: int,
                  **worker: Any) -> tuple[Path, Targets]:
    config = make_event(("logreg",), worker=worker)
    event_dir = config.parent
    targets = Targets(credentials=plant_credentials(tmp_path / "home"), event_config=config,
                      other_submission=event_dir / "submissions" / "logreg",
                      data_dir=event_dir / "ramp-data" / "iris" / "data",
                      kit_dir=event_dir / "ramp-kits" / "iris", port=port)
    write_submission(event_dir / "submissions", "hostile", hostile_estimator(targets))
    return config, targets


def test_with_isolation_off_a_submission_reaches_all_it_is_kept_from(
    make_event: EventFactory, tmp_path: Path
) -> None:
    """The security page's "off" column, for real: every probe the sandbox blocks gets through."""
    with loopback_listener() as listener:
        config, targets = hostile_event(make_event, tmp_path, listener.getsockname()[1],
                                        isolation={"mode": "off"})
        done = cli("dispatch", str(config), path=os.environ["PATH"],
                   extra={**SECRETS, "HOME": str(targets.credentials.parents[1])})
        assert done.returncode == 0, done.stderr
        assert connections(listener) > 0
    assert done.stderr.startswith("warning: worker.isolation.mode is off: submissions run NOT "
                                  "isolated: a submission can read whatever")
    log = (config.parent / "events" / "iris_test" / "logs" / "hostile" / "log").read_text()
    assert set(reached(probes_in(log)[0])) == set(PROBES)
    # The hard link to the credential file is the one thing publishing still stops.
    [row] = [row for row in Store(config.parent / "events" / "iris_test" / "ramp-fleet.sqlite")
             .all() if row.name == "hostile"]
    assert row.state == State.CHECKING_ERROR and "hard link" in (row.error or "")


# -- no root needed -------------------------------------------------------------------------------


FORKER = '''
    import os, time
    from sklearn.linear_model import LogisticRegression

    class Forker(LogisticRegression):
        def fit(self, X, y):
            children, error = [], None
            for _ in range(200):
                try:
                    pid = os.fork()
                except OSError as exc:
                    error = type(exc).__name__
                    break
                if pid == 0:
                    time.sleep(1)
                    os._exit(0)
                children.append(pid)
            print("FORKED", len(children), error, flush=True)
            for pid in children:
                os.waitpid(pid, 0)
            return super().fit(X, y)

    def get_estimator():
        return Forker(max_iter=500)
'''


@needs_bwrap
def test_an_unprivileged_dispatcher_isolates_limits_and_scores(
    unprivileged: Unprivileged, make_event: EventFactory, tmp_path: Path
) -> None:
    event_dir = make_event(("logreg",)).parent.rename(unprivileged.root / "event")
    home = unprivileged.root / "home"
    with loopback_listener() as listener:
        targets = Targets(credentials=plant_credentials(home), event_config=event_dir / "config.yml",
                          other_submission=event_dir / "submissions" / "logreg",
                          data_dir=event_dir / "ramp-data" / "iris" / "data",
                          kit_dir=event_dir / "ramp-kits" / "iris",
                          port=listener.getsockname()[1])
        write_submission(event_dir / "submissions", "hostile", hostile_estimator(targets))
        write_submission(event_dir / "submissions", "forker", textwrap.dedent(FORKER))
        config = yaml.safe_load((event_dir / "config.yml").read_text())
        config["worker"].update(conda_env=str(unprivileged.venv), isolation={
            "max_processes": 64, "memory_mb": 1024, "read_only_paths": [str(DEV_SITE)]})
        (event_dir / "config.yml").write_text(yaml.safe_dump(config))
        chown_tree(unprivileged.root, unprivileged)
        done = unprivileged.run(
            [str(unprivileged.venv / "bin" / "python"), "-m", "ramp_fleet", "dispatch",
             str(event_dir / "config.yml")],
            env={"PATH": "/usr/bin:/bin", "HOME": str(home), **SECRETS})
        assert done.returncode == 0, done.stdout + done.stderr
        assert connections(listener) == 0
    assert done.stderr == "", done.stderr
    store = Store(event_dir / "events" / "iris_test" / "ramp-fleet.sqlite")
    assert {row.name: row.state for row in store.all()} == dict.fromkeys(
        ("logreg", "hostile", "forker"), State.SCORED)
    logs = event_dir / "events" / "iris_test" / "logs"
    results = probes_in((logs / "hostile" / "log").read_text())
    assert results and [reached(each) for each in results] == [{}] * len(results)
    forked = [line.split() for line in (logs / "forker" / "log").read_text().splitlines()
              if line.startswith("FORKED ")]
    assert forked and all(int(count) < 64 and error == "BlockingIOError"
                          for _, count, error in forked), forked


BOMB = '''
    import threading, time
    from sklearn.linear_model import LogisticRegression

    class Bomb(LogisticRegression):
        def fit(self, X, y):
            for _ in range(100_000):
                threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
            return super().fit(X, y)

    def get_estimator():
        return Bomb()
'''


@needs_bwrap
@pytest.mark.parametrize("no_cgroup", [False, True], ids=["cgroup", "watchdog"])
def test_memory_mb_400_scores_an_honest_run_and_stops_a_hog_in_one_line(
    make_event: EventFactory, no_cgroup: bool
) -> None:
    """The limits as organisers write them, on each path this machine has: the resident
    memory of the run (an address-space cap at 400 MB failed every honest iris run)."""
    from tests.contract.test_isolation import HOG

    config = make_event(("logreg",), worker={"conda_env": sys.prefix, "isolation": {
        "memory_mb": 400, "max_processes": 200}})
    write_submission(config.parent / "submissions", "hog", textwrap.dedent(HOG))
    write_submission(config.parent / "submissions", "bomb", textwrap.dedent(BOMB))
    argv = [sys.executable, "-m", "ramp_fleet", "dispatch", str(config)]
    if no_cgroup:  # the runner finds no cgroup hierarchy at all
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount -t tmpfs none /sys/fs/cgroup && exec "$@"', "sh", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    store = Store(config.parent / "events" / "iris_test" / "ramp-fleet.sqlite")
    rows = {row.name: row for row in store.all()}
    logreg, hog, bomb = rows["logreg"], rows["hog"], rows["bomb"]
    assert logreg.state == State.SCORED, logreg.error
    assert logreg.peak_memory_mb is not None and 50 < logreg.peak_memory_mb < 400
    assert hog.state == State.TRAINING_ERROR
    how = "watchdog" if no_cgroup else "cgroup v"
    assert (hog.error or "").startswith(
        f"the run went over its memory limit of 400 MB (worker.isolation.memory_mb, {how}"), hog.error
    assert "\n" not in (hog.error or "")
    assert bomb.state == State.TRAINING_ERROR
    assert (bomb.error or "").startswith("the run reached its limit of 200 processes and threads "
                                         "(worker.isolation.max_processes, "), bomb.error
    print(f"{'watchdog' if no_cgroup else 'cgroup'}: honest peak {logreg.peak_memory_mb:.0f} MB; "
          f"hog: {hog.error}; bomb: {(bomb.error or '').splitlines()[-1]}")
