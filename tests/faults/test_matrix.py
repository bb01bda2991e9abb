"""The fault matrix: each part of the outside world failing at each step of a run.

Every cell runs ``ramp-fleet dispatch`` for real, in a process of its own
(:mod:`tests.faults.inject`), against the real parts — moto EC2 behind an
endpoint that fails on demand, the instances' loopback sshd, real Dask
processes, the real PostgreSQL of a ramp-board deployment, a small tmpfs for
the disk — and breaks one part the first time the dispatcher enters one step
(start, setup, launch, running, fetch, publish, teardown, close). Most faults
are outages: the part comes back a few seconds later, as parts do. Then:

* the operator saw one line per fault naming the part and what to check,
  and no traceback;
* the exit status says what happened (0 done, 1 the outside world, 130 a
  signal);
* nothing is left behind (no instance, no run's process, no SSH connection,
  no scratch folder), or what could not be cleaned while the part was away is
  named and reaped at the next start;
* nothing half-written is in ``predictions_dir`` or ``logs_dir``;
* the submission is scored exactly once, if need be by a second dispatch.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from ramp_fleet.config import load_event_config
from ramp_fleet.store import State, Store
from tests.conftest import EventFactory
from tests.real_parts import require
from tests.store_helpers import history

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
#: How long a part stays broken (an outage), in seconds.
OUTAGE = 3.0
#: A dispatch that takes longer has hung.
DISPATCH_PATIENCE = 120


@dataclass(frozen=True)
class Cell:
    part: str
    step: str
    #: The exit status the operator gets.
    exit: int = 0
    #: The submission's state once the dispatch is over (before any second dispatch).
    state: State = State.SCORED
    #: What the operator's line about the fault contains.
    says: str = ""
    #: The part is back this many seconds after it broke; None: only once the dispatch is over.
    outage: float | None = OUTAGE

    @property
    def id(self) -> str:
        return f"{self.part}@{self.step}"


#: The matrix. A part is broken the first time its step is entered and comes back after
#: OUTAGE seconds, or where the cell says so only once the dispatch is over.
CELLS = [
    # EC2: the endpoint answers nothing, throttles, or refuses the credentials.
    Cell("ec2-refused", "start", 1, State.NEW, "AWS: cannot reach the endpoint"),
    Cell("ec2-refused", "setup", 0, State.SCORED, "AWS: cannot reach the endpoint"),
    Cell("ec2-refused", "running", 0, State.SCORED, "AWS: cannot reach the endpoint"),
    Cell("ec2-refused", "teardown", 1, State.SCORED, "reaped at the next start, or by", None),
    Cell("ec2-refused", "close", 1, State.SCORED, "reaped at the next start, or by", None),
    # Throttling is absorbed by the retries (the operator sees the run scored, a little later).
    Cell("ec2-throttled", "setup", 0, State.SCORED, ""),
    Cell("ec2-throttled", "running", 0, State.SCORED, ""),
    Cell("ec2-expired", "start", 1, State.NEW, "AuthFailure"),
    Cell("ec2-nocredentials", "start", 1, State.NEW, "AWS: no usable credentials", None),
    Cell("ec2-expired", "setup", 0, State.SCORED, "AuthFailure"),
    # SSH to the instance: refused, cut mid-transfer, a host that stops answering.
    Cell("ssh-refused", "launch", 0, State.SCORED, ""),
    Cell("ssh-dropped", "fetch", 0, State.SCORED, ""),
    Cell("ssh-hung", "running", 0, State.SCORED, ""),
    # The Dask scheduler: gone before the start, or frozen mid-run.
    Cell("dask-down", "start", 1, State.NEW, "check that the Dask scheduler runs there"),
    Cell("dask-hung", "running", 0, State.SCORED, ""),
    Cell("dask-hung", "fetch", 0, State.SCORED, ""),
    # ramp-board's PostgreSQL.
    Cell("postgres-down", "start", 1, State.NEW, "database"),
    Cell("postgres-down", "running", 0, State.SCORED, ""),
    Cell("postgres-down", "publish", 0, State.SCORED, ""),
    # The local disk: the predictions folder full or read-only while a result is
    # published, the store's folder full.
    Cell("disk-full", "publish", 0, State.SCORED, "the disk: cannot write"),
    Cell("disk-readonly", "publish", 0, State.SCORED, "the disk: cannot write"),
    Cell("store-full", "launch", 1, State.SENT_TO_TRAINING, "the disk: cannot write the event's store"),
    # A signal (SIGTERM) at every step: what runs ends, what is left runs next time.
    *[Cell("signal", step, 130, State.SCORED if step not in ("start",) else State.NEW, "")
      for step in ("start", "setup", "launch", "running", "fetch", "publish", "teardown", "close")],
]
BACKEND = {"ec2": "aws", "ssh": "aws", "dask": "dask", "postgres": "board", "disk": "conda",
           "store": "conda", "signal": "conda"}


# -- the controller: breaks a part when the dispatcher asks, mends it later -------------------


class Controller:
    """A unix socket the dispatcher's process calls when it enters the faulty step."""

    def __init__(self, folder: Path, breaking: Callable[[int], None],
                 mending: Callable[[], None] | None, outage: float | None):
        self.path = folder / "fault.sock"
        self.breaking = breaking
        self.mending = mending
        self.outage = outage
        self.over = threading.Event()
        self.broken = threading.Event()
        self.mended = threading.Event()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(self.path))
        self._server.listen(1)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            connection, _ = self._server.accept()
        except OSError:
            return
        with connection:
            pid = int(connection.recv(64).split()[1])
            self.breaking(pid)
            self.broken.set()
            connection.sendall(b"ok\n")
        if self.mending is not None:
            self.over.wait(self.outage)  # None: until the dispatch is over
            self.mending()
        self.mended.set()

    def close(self) -> None:
        """The dispatch is over: mend what is still broken."""
        self.over.set()
        self._server.close()
        if self.broken.is_set():
            self.mended.wait(OUTAGE + 30)


# -- the worlds: one event per backend, and its parts ------------------------------------------


@dataclass
class World:
    config: Path
    #: part → (break(pid), mend or None)
    parts: dict[str, tuple[Callable[[int], None], Callable[[], None] | None]]
    #: The dispatcher's environment, changed (None: a variable removed).
    env: dict[str, str | None] = field(default_factory=dict)
    #: What is left once the dispatch is over (instances, connections...), described.
    leftovers: Callable[[], list[str]] = lambda: []
    #: Instances may be left where the cloud was away at the end: ``ramp-fleet reap`` them.
    reap: bool = False
    #: Whether the part's fault was met (a request refused...), where that can be told.
    injected: Callable[[str], bool] = lambda part: True
    #: The submission's name in the event's store.
    store_name: str = "logreg"


def conda_world(make_event: EventFactory, tmp_path: Path) -> Iterator[World]:
    require("root (the disk cells mount small tmpfs folders)", os.geteuid() == 0)
    mounts: list[Path] = []

    def small_disk(folder: Path, size: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                       check=True)
        mounts.append(folder)
        return folder

    def fill(folder: Path) -> Callable[[int], None]:
        def breaking(pid: int) -> None:
            with (folder / "filler").open("wb") as out:
                try:
                    while True:
                        out.write(b"\0" * (1 << 16))
                        out.flush()
                except OSError:
                    pass
        return breaking

    def remount(folder: Path, mode: str) -> Callable[..., None]:
        return lambda *_: subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)],
                                         check=True)

    store_room = small_disk(tmp_path / "store-room", "4m")
    config = make_event(("logreg",), dispatcher={"retry_backoff": 0.5, "max_attempts": 5},
                        store={"path": str(store_room / "ramp-fleet.sqlite")})
    predictions = small_disk(config.parent / "events" / "iris_test" / "predictions", "4m")
    parts: dict[str, tuple[Callable[[int], None], Callable[[], None] | None]] = {
        "disk-full": (fill(predictions), lambda: (predictions / "filler").unlink()),
        "disk-readonly": (remount(predictions, "ro"), remount(predictions, "rw")),
        "store-full": (fill(store_room), lambda: (store_room / "filler").unlink()),
        "signal": (lambda pid: os.kill(pid, signal.SIGTERM), None),
    }
    try:
        yield World(config, parts)
    finally:
        for folder in reversed(mounts):
            subprocess.run(["umount", "-l", str(folder)], check=False)


def aws_world(request: pytest.FixtureRequest, make_event: EventFactory, cell: Cell
              ) -> Iterator[World]:
    from tests.fixtures.faulty_endpoint import FaultyEndpoint
    from tests.fixtures.moto_ec2 import live_instances

    moto = request.getfixturevalue("aws")
    request.getfixturevalue("loopback_only")
    keys = dict(request.getfixturevalue("aws_worker_keys"))
    hosts = request.getfixturevalue("instance_hosts")
    ec2 = moto.client()
    config = make_event(("logreg",), worker={**keys, "ssh_connect_timeout": 30},
                        dispatcher={"time_between_collection": 0.2, "retry_backoff": 1.0,
                                    "max_attempts": 5})
    frozen: list[psutil.Process] = []

    def freeze(pid: int) -> None:
        for host in list(hosts.hosts.values()):
            for process in [psutil.Process(host.server.process.pid),
                            *host.server.session_processes()]:
                process.suspend()
                frozen.append(process)

    def thaw() -> None:
        for process in frozen:
            with contextlib.suppress(psutil.Error):
                process.resume()

    stopped: list[Any] = []

    def stop_sshd(pid: int) -> None:
        for host in list(hosts.hosts.values()):
            host.server.cut_connections()
            host.server.stop()
            stopped.append(host)

    def start_sshd_again() -> None:
        from tests.fixtures.sshd import start_sshd

        for host in stopped:
            home = hosts.directory / host.instance_id
            host.server = start_sshd(home, host_key=home / "host_ed25519",
                                     client_key=hosts.client_key, port=host.server.port)

    with FaultyEndpoint(moto.url) as endpoint:
        def failing(mode: str) -> tuple[Callable[[int], None], Callable[[], None]]:
            return (lambda pid: setattr(endpoint, "mode", mode),
                    lambda: setattr(endpoint, "mode", "pass"))

        parts: dict[str, tuple[Callable[[int], None], Callable[[], None] | None]] = {
            "ec2-refused": failing("refused"),
            "ec2-throttled": failing("throttled"),
            "ec2-expired": failing("expired"),
            "ssh-refused": (stop_sshd, start_sshd_again),
            "ssh-dropped": (lambda pid: hosts.cut_connections(), None),
            "ssh-hung": (freeze, thaw),
            "ec2-nocredentials": (lambda pid: None, None),
        }
        env = {"AWS_ENDPOINT_URL": endpoint.url, "AWS_MAX_ATTEMPTS": "2",
               "AWS_RETRY_MODE": "standard", "AWS_EC2_METADATA_DISABLED": "true"}
        if cell.part == "ec2-nocredentials":  # none anywhere (and no metadata service to ask)
            env.update(AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="", AWS_SESSION_TOKEN="",
                       AWS_SHARED_CREDENTIALS_FILE="/nonexistent", AWS_CONFIG_FILE="/nonexistent",
                       AWS_PROFILE=None)

        def leftovers() -> list[str]:
            left = [f"instance {item['InstanceId']}" for item in live_instances(ec2)]
            return left + ([f"{hosts.connections()} SSH connections"] if hosts.connections() else [])

        try:
            yield World(config, parts, env=env, leftovers=leftovers, reap=True,
                                        injected=lambda part: part not in ("ec2-refused", "ec2-throttled",
                                                           "ec2-expired")
                        or endpoint.failed[part.split("-")[1]] > 0)
        finally:
            thaw()


def dask_world(request: pytest.FixtureRequest, make_event: EventFactory, cell: Cell
               ) -> Iterator[World]:
    from tests.fixtures.sshd import free_port

    cluster = request.getfixturevalue("plain_cluster")
    keys = {"worker_type": "dask", **cluster.worker_config(), "dask_connect_timeout": 3}
    if cell.part == "dask-down":  # a scheduler that is not there (stopped, or a wrong address)
        keys["dask_scheduler"] = f"tcp://127.0.0.1:{free_port()}"
    config = make_event(("logreg",), worker=keys,
                        dispatcher={"time_between_collection": 0.2, "retry_backoff": 1.0,
                                    "max_attempts": 5})
    scheduler = psutil.Process(cluster.scheduler.pid)

    def thaw() -> None:
        with contextlib.suppress(psutil.Error):
            scheduler.resume()

    parts: dict[str, tuple[Callable[[int], None], Callable[[], None] | None]] = {
        "dask-down": (lambda pid: None, None),
        "dask-hung": (lambda pid: scheduler.suspend(), thaw),
    }
    try:
        yield World(config, parts)
    finally:
        thaw()


def board_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    from tests.board.test_dispatch import serving

    postgres = request.getfixturevalue("postgres")
    deployment = request.getfixturevalue("ramp_board")
    config = serving(postgres, deployment, tmp_path / "deploy",
                     request.getfixturevalue("ramp_board_env"), n_workers=1,
                     retry_backoff=1.0, max_attempts=5)
    # One submission is enough: the others of the deployment are kept out of this cell.
    postgres.psql("UPDATE submissions SET state = 'scored' WHERE name != 'logreg' "
                  "AND state = 'new'", deployment.database_name)
    stopped: list[bool] = []

    def stop(pid: int) -> None:
        postgres.stop()
        stopped.append(True)

    def start() -> None:
        if stopped:
            postgres.start()

    try:
        name = f"submission_{deployment.submissions['alice/logreg']:09d}"
        yield World(config, {"postgres-down": (stop, start)}, store_name=name)
    finally:
        start()


# -- the cell ------------------------------------------------------------------------------


def dispatch(world: World, step: str | None, socket_path: Path | None) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name, value in world.env.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    if step is not None and socket_path is not None:
        env.update(RAMP_FLEET_FAULT_STEP=step, RAMP_FLEET_FAULT_SOCKET=str(socket_path))
        argv = [sys.executable, "-m", "tests.faults.inject", str(world.config)]
    else:
        argv = [sys.executable, "-m", "ramp_fleet", "dispatch", str(world.config)]
    env["PYTHONFAULTHANDLER"] = "1"
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, cwd=REPO)
    try:
        out, err = process.communicate(timeout=DISPATCH_PATIENCE)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)  # faulthandler: every thread's stack, then gone
        out, err = process.communicate()
        pytest.fail(f"the dispatcher hung:\n{out}{err}")
    return process.returncode, out + err


def run_processes(config: Path) -> list[str]:
    """Processes of the event's runs still alive (the runner, bwrap, ramp-test)."""
    event = str(config.parent)
    left = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if event in cmdline and ("ramp-test" in cmdline or "sandbox.runner" in cmdline):
            left.append(cmdline[:120])
    return left


def state_of(world: World) -> str:
    store = Store(load_event_config(world.config).store_path)
    try:
        row = store.get(world.store_name)
        return str(row.state) if row is not None else "new"
    finally:
        store.close()


def half_written(config: Path) -> list[str]:
    event_dir = config.parent / "events" / "iris_test"
    return [str(path) for folder in ("predictions", "logs") for path in (event_dir / folder).rglob(".*")
            if path.name != "filler"]


@pytest.fixture
def world(request: pytest.FixtureRequest, make_event: EventFactory, tmp_path: Path) -> Iterator[World]:
    cell: Cell = request.param
    backend = BACKEND[cell.part.split("-")[0]]
    if backend == "conda":
        yield from conda_world(make_event, tmp_path)
    elif backend == "aws":
        yield from aws_world(request, make_event, cell)
    elif backend == "dask":
        yield from dask_world(request, make_event, cell)
    else:
        yield from board_world(request, tmp_path)


@pytest.mark.parametrize("world", CELLS, indirect=True, ids=lambda cell: cell.id)
def test_a_fault_at_a_step_is_one_line_and_leaves_nothing(world: World, request: pytest.FixtureRequest,
                                                          tmp_path: Path) -> None:
    cell: Cell = request.node.callspec.params["world"]
    breaking, mending = world.parts[cell.part]
    controller = Controller(Path(tempfile.mkdtemp(dir=tmp_path)), breaking, mending, cell.outage)
    try:
        code, output = dispatch(world, cell.step, controller.path)
    finally:
        controller.close()
    lines = output.splitlines()
    assert controller.broken.is_set(), f"the step {cell.step} was never reached:\n{output}"
    assert world.injected(cell.part), f"the broken part was never met:\n{output}"
    assert "Traceback" not in output, output
    assert code == cell.exit, output
    said = [line for line in lines if cell.says in line] if cell.says else []
    if cell.says:
        assert said, output
    print(f"CELL {cell.id} exit {code} state {state_of(world)}: {said[0] if said else '-'}")
    store_path = load_event_config(world.config).store_path
    store = Store(store_path)
    try:
        row = store.get(world.store_name) if store_path.exists() else None
        state = row.state if row is not None else State.NEW
    finally:
        store.close()
    assert state == cell.state, (state, output)
    assert run_processes(world.config) == []
    assert half_written(world.config) == []
    if world.reap and world.leftovers():  # named, and reaped once the cloud is back
        assert [line for line in lines if "reap" in line], output
        done = subprocess.run([sys.executable, "-m", "ramp_fleet", "reap", str(world.config)],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, **{k: v for k, v in world.env.items() if v}})
        assert done.returncode == 0, done.stderr
    assert world.leftovers() == []
    if mending is None and cell.exit == 1:
        return  # the part is still away: nothing more can run (the line said what to check)
    if state != State.SCORED:  # the part is back: the next dispatch carries on
        code, output = dispatch(world, None, None)
        assert code == 0, output
    store = Store(store_path)
    try:
        seen = [entry for entry, _ in history(store, world.store_name)]
        assert seen.count("scored") == 1, seen
    finally:
        store.close()
