"""One persistent, host-key-checked SSH connection per instance (fabric).

Host keys are known before the first connection: the fleet generates each
instance's key and gives it to the instance at launch (:mod:`ramp_fleet.aws.host_keys`),
and records it in the event's known_hosts file under the instance id. A
connection is accepted only with that very key; any other key, or an
instance with no record, is refused before anything is sent. A new instance
(new id) never inherits an old instance's record, even at the same IP
address. Jump hosts (``ProxyJump``) are checked against the user's own
known_hosts and refused when unknown — never accepted blindly.

``ssh_config_file`` is read for ``HostName``, ``Port``, ``User``,
``IdentityFile``, ``ProxyJump``/``ProxyCommand`` and ``ConnectTimeout``,
exactly like OpenSSH would.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fabric
import invoke
import paramiko

from ramp_fleet.archive import UnsafeResult
from ramp_fleet.errors import CommandError, RampFleetError
from ramp_fleet.sandbox.logs import LogSource, bounded_chunks
from ramp_fleet.waiting import Backoff, WaitTimeout

logger = logging.getLogger("ramp_fleet.aws")

#: What a dropped or refused connection raises, from paramiko, sockets or invoke.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    paramiko.SSHException, OSError, EOFError, invoke.exceptions.ThreadException,
)


class ConnectionLost(RampFleetError):
    """The SSH connection could not be (re)established or dropped mid-command."""


class HostKeyChanged(RampFleetError):
    """An instance presented a key other than the one it was given: refused."""


class KnownHosts:
    """The event's known_hosts file; entries are named by instance id.

    Writes take an exclusive ``flock`` and replace the file atomically, so
    several workers (threads or processes) can record keys at once.
    """

    def __init__(self, path: Path):
        self.path = path

    @contextmanager
    def _locked(self) -> Iterator[paramiko.HostKeys]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                keys = paramiko.HostKeys()
                if self.path.exists():
                    keys.load(str(self.path))
                yield keys
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _save(self, keys: paramiko.HostKeys) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        keys.save(str(temporary))
        os.chmod(temporary, 0o600)
        os.replace(temporary, self.path)

    def record(self, alias: str, key: paramiko.PKey) -> None:
        """Trust ``key``, and only it, for ``alias`` (an instance id)."""
        with self._locked() as keys:
            if keys.lookup(alias) is not None:
                del keys[alias]
            keys.add(alias, key.get_name(), key)
            self._save(keys)
        logger.debug("recorded the host key of %s (%s %s)", alias, key.get_name(),
                     key.fingerprint)

    def check(self, alias: str, key: paramiko.PKey) -> None:
        """Accept ``key`` only if it is the one recorded for ``alias``."""
        with self._locked() as keys:
            known = keys.lookup(alias)
        if known is None:
            raise HostKeyChanged(f"no SSH host key is recorded for {alias} in {self.path}; "
                                 "refusing to connect")
        if known.get(key.get_name()) != key:
            raise HostKeyChanged(
                f"{alias} presented an SSH host key ({key.get_name()} {key.fingerprint}) "
                f"other than the one it was given at launch (recorded in {self.path}); "
                "refusing to connect (a man in the middle, or an image whose cloud-init does not "
                "install ssh_keys from the user-data)")

    def forget(self, alias: str) -> None:
        with self._locked() as keys:
            if keys.lookup(alias) is not None:
                del keys[alias]
                self._save(keys)


class RecordedKeyOnly(paramiko.MissingHostKeyPolicy):
    """Accepts the server's key only if it is the one recorded for one instance id."""

    def __init__(self, known_hosts: KnownHosts, alias: str):
        self.known_hosts = known_hosts
        self.alias = alias

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        self.known_hosts.check(self.alias, key)


@dataclass(frozen=True)
class SSHSettings:
    user: str
    key_path: Path | None
    ssh_config_file: Path | None
    connect_deadline: float
    #: Per-attempt TCP/handshake timeout.
    attempt_timeout: float = 20.0
    #: Deadline for a short remote command (mkdir, cat, tar).
    command_timeout: float = 300.0


class RemoteHost:
    """A fabric connection to one instance, reopened with back-off when it drops."""

    def __init__(
        self,
        address: str,
        alias: str,
        settings: SSHSettings,
        known_hosts: KnownHosts,
        on_connect: Callable[[], None] | None = None,
    ):
        self.address = address
        self.alias = alias
        self.settings = settings
        self.known_hosts = known_hosts
        self._on_connect = on_connect
        self._connection: fabric.Connection | None = None
        self._lock = threading.RLock()

    # -- connection -----------------------------------------------------------

    def _new_connection(self) -> fabric.Connection:
        overrides: dict[str, Any] = {"user": self.settings.user, "load_ssh_configs": True}
        config = fabric.Config(
            overrides=overrides,
            runtime_ssh_path=str(self.settings.ssh_config_file)
            if self.settings.ssh_config_file else None,
        )
        connect_kwargs: dict[str, Any] = {"banner_timeout": self.settings.attempt_timeout,
                                          "auth_timeout": self.settings.attempt_timeout}
        if self.settings.key_path is not None:
            connect_kwargs["key_filename"] = [str(self.settings.key_path)]
        connection = fabric.Connection(self.address, config=config,
                                       connect_kwargs=connect_kwargs)
        if connection.connect_timeout is None:
            connection.connect_timeout = int(self.settings.attempt_timeout)
        connection.client.set_missing_host_key_policy(
            RecordedKeyOnly(self.known_hosts, self.alias))
        _check_gateways(connection)
        return connection

    def connect(self, stop: threading.Event | None = None,
                alive: Callable[[], object] | None = None) -> None:
        """Open the connection, retrying until ``connect_deadline``.

        ``alive`` is called before each attempt and may raise to give up early
        (the instance is gone). A changed host key is never retried.
        """
        with self._lock:
            if self.connected:
                return
            self.close()
            what = f"SSH connection to {self.alias} ({self.address})"
            try:
                for attempt in Backoff(deadline=self.settings.connect_deadline, first=0.5,
                                       cap=10.0, what=what, stop=stop):
                    if alive is not None:
                        alive()
                    connection = self._new_connection()
                    try:
                        connection.open()
                    except HostKeyChanged:
                        connection.close()
                        raise
                    except CONNECTION_ERRORS as exc:
                        connection.close()
                        attempt.failed(exc)
                        continue
                    self._connection = connection
                    if self._on_connect is not None:
                        self._on_connect()
                    logger.debug("connected to %s", what)
                    return
            except WaitTimeout as exc:
                raise ConnectionLost(str(exc)) from exc.__cause__
            if stop is not None and stop.is_set():
                raise ConnectionLost(f"{what}: stopped")

    @property
    def connected(self) -> bool:
        return self._connection is not None and bool(self._connection.is_connected)

    def close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # a dead transport may fail to close; it is gone anyway
                logger.debug("closing %s failed", self.alias, exc_info=True)

    def _require(self) -> fabric.Connection:
        connection = self._connection
        if connection is None or not connection.is_connected:
            raise ConnectionLost(f"not connected to {self.alias}")
        return connection

    # -- remote work -------------------------------------------------------------

    def run(self, command: str, what: str, timeout: float | None = None) -> str:
        """Run one rendered command line; returns its stdout.

        Raises :class:`ConnectionLost` when the connection drops and
        :class:`CommandError` when the command fails.
        """
        connection = self._require()
        try:
            result = connection.run(command, hide=True, warn=True, in_stream=False,
                                    timeout=timeout or self.settings.command_timeout)
        except invoke.exceptions.CommandTimedOut as exc:
            raise CommandError([f"ssh {self.alias}", what], 124,
                               stderr=f"no answer within {exc.timeout} s") from None
        except CONNECTION_ERRORS as exc:
            self.close()
            raise ConnectionLost(f"connection to {self.alias} dropped during {what}: "
                                 f"{exc.__class__.__name__}: {exc}") from exc
        if not self.connected:
            self.close()
            raise ConnectionLost(f"connection to {self.alias} dropped during {what}")
        if result.exited != 0:
            raise CommandError([f"ssh {self.alias}", what], result.exited,
                               result.stdout, result.stderr)
        return str(result.stdout)

    def put(self, local: Path | bytes, remote: str) -> None:
        """Upload a local file, or bytes, to ``remote``."""
        connection = self._require()
        try:
            connection.put(io.BytesIO(local) if isinstance(local, bytes) else str(local),
                           remote=remote)
        except CONNECTION_ERRORS as exc:
            self._after_transfer_error()
            raise ConnectionLost(f"upload to {self.alias} failed: {exc}") from exc

    def get_bounded(self, remote: str, local: Path, max_bytes: int) -> bool:
        """Download the regular file ``remote`` if it exists; refuse one over ``max_bytes``.

        Returns False when there is no such file. Whatever the instance claims
        about the size, no more than ``max_bytes`` is ever written here.
        """
        sftp = self._sftp()
        try:
            info = sftp.lstat(remote)
        except FileNotFoundError:
            return False
        except CONNECTION_ERRORS as exc:
            self._after_transfer_error()
            raise ConnectionLost(f"download from {self.alias} failed: {exc}") from exc
        _require_regular(remote, info.st_mode)
        if (info.st_size or 0) > max_bytes:
            raise UnsafeResult(f"{remote} is {info.st_size} bytes, more than "
                               f"worker.result_limits.max_bytes ({max_bytes})")
        written = 0
        try:
            with sftp.open(remote, "rb") as source, open(local, "wb") as target:
                while chunk := source.read(1 << 20):
                    written += len(chunk)
                    if written > max_bytes:
                        raise UnsafeResult(f"{remote} grew past {max_bytes} bytes while read")
                    target.write(chunk)
        except CONNECTION_ERRORS as exc:
            self._after_transfer_error()
            raise ConnectionLost(f"download from {self.alias} failed: {exc}") from exc
        return True

    def read_log(self, remote: str, max_bytes: int) -> bytes:
        """The run's log, bounded (its head and end past ``max_bytes``); never a link's target."""
        sftp = self._sftp()
        try:
            info = sftp.lstat(remote)
            if info.st_mode is None or not stat.S_ISREG(info.st_mode):
                return b"ramp-fleet: the run's log is not a regular file (a link?); not read\n"
            with sftp.open(remote, "rb") as source:
                def read_at(offset: int, length: int) -> bytes:
                    source.seek(offset)
                    return bytes(source.read(length))

                return b"".join(bounded_chunks(LogSource(info.st_size or 0, read_at), max_bytes))
        except FileNotFoundError:
            return b""
        except CONNECTION_ERRORS as exc:
            self._after_transfer_error()
            raise ConnectionLost(f"reading the log from {self.alias} failed: {exc}") from exc

    def _sftp(self) -> paramiko.SFTPClient:
        sftp: paramiko.SFTPClient = self._require().sftp()
        return sftp

    def _after_transfer_error(self) -> None:
        # An SFTP error on a live connection (disk full...) may clear up; a dead
        # transport must be reopened.
        if not self.connected:
            self.close()


def _require_regular(remote: str, mode: int | None) -> None:
    if mode is None or not stat.S_ISREG(mode):
        raise UnsafeResult(f"{remote} is not a regular file (a link?): refused")


def _check_gateways(connection: fabric.Connection) -> None:
    """Jump hosts: the user's known_hosts, unknown keys refused."""
    gateway = connection.gateway
    while isinstance(gateway, fabric.Connection):
        gateway.client.load_system_host_keys()
        known = gateway.ssh_config.get("userknownhostsfile")
        for path in (known.split() if isinstance(known, str) else known or []):
            if os.path.exists(os.path.expanduser(path)):
                gateway.client.load_host_keys(os.path.expanduser(path))
        gateway.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        gateway = gateway.gateway
