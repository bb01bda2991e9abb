"""The dispatcher's connection to a Dask scheduler: one client, shared, re-opened.

One :class:`DaskConnection` per dispatcher (``DaskWorker.open_shared``) is
shared by every worker slot. ``distributed.Client`` reconnects by itself
after a short scheduler outage; when it gives up and closes, the next
:meth:`DaskConnection.client` call opens a fresh client (with back-off), so a
restarted scheduler only costs the runs that were in flight — those come
back as ``retry``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Mapping
from typing import Any

from ramp_fleet.config.sections import DaskWorkerSection
from ramp_fleet.dask.no_pickles import refuse_pickles, refusing
from ramp_fleet.errors import RampFleetError
from ramp_fleet.waiting import Backoff, WaitTimeout

logger = logging.getLogger("ramp_fleet.dask")

#: A Dask worker advertising this resource takes one submission per unit.
SLOT_RESOURCE = "ramp-slot"


class DaskUnavailable(RampFleetError):
    """The Dask scheduler cannot be reached (down, wrong address, TLS refused)."""


def security_from_tls(tls: Mapping[str, Any] | None) -> Any:
    """``distributed.security.Security`` for ``dask_tls`` (``ca_file``, ``cert``, ``key``).

    Encryption is then required for every connection; None without TLS.
    """
    if not tls:
        return None
    from distributed.security import Security

    return Security(
        tls_ca_file=str(tls["ca_file"]),
        tls_client_cert=str(tls["cert"]),
        tls_client_key=str(tls["key"]),
        require_encryption=True,
    )


class DaskConnection:
    """A lazily opened, thread-safe ``distributed.Client`` for one scheduler."""

    def __init__(self, address: str, security: Any = None, connect_timeout: float = 30.0):
        self.address = address
        self.security = security
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: DaskWorkerSection) -> DaskConnection:
        """From the Dask worker's section (``dask_scheduler``, ``dask_tls``...)."""
        tls = settings.dask_tls
        if settings.dask_scheduler is None:
            raise DaskUnavailable("worker.dask_scheduler: is not set (an elastic cluster opens "
                                  "its own scheduler)")
        return cls(
            address=settings.dask_scheduler,
            security=security_from_tls(tls.model_dump() if tls is not None else None),
            connect_timeout=settings.dask_connect_timeout,
        )

    def client(self) -> Any:
        """The open client, connecting (again) if there is none or it closed."""
        with self._lock:
            if self._client is None or self._client.status in ("closing", "closed"):
                if self._client is not None:
                    logger.warning("Dask client closed; reconnecting to %s", self.address)
                    discard(self._client)
                self._client = self._connect()
            return self._client

    def current(self) -> Any:
        """The client if it is open, else None (never connects)."""
        client = self._client
        return client if client is not None and client.status == "running" else None

    def uses_slot_resource(self) -> bool:
        """True when some Dask worker advertises the ``ramp-slot`` resource."""
        workers = self.client().scheduler_info(n_workers=-1).get("workers", {})
        return any(SLOT_RESOURCE in (w.get("resources") or {}) for w in workers.values())

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            discard(client, timeout=10)

    def _connect(self) -> Any:
        backoff = Backoff(deadline=self.connect_timeout, first=0.5, cap=5.0,
                          what=f"connecting to the Dask scheduler at {self.address}")
        try:
            for attempt in backoff:
                try:
                    return open_client(self.address, self.security, max(1.0, backoff.remaining()))
                except Exception as exc:  # OSError, TimeoutError, TLS errors...
                    attempt.failed(exc)
        except WaitTimeout as exc:
            raise DaskUnavailable(f"{exc}; check that the Dask scheduler runs there "
                                  "(worker.dask_scheduler) and the network") from exc.__cause__
        raise AssertionError("unreachable")  # pragma: no cover


#: What the dispatcher accepts from the cluster: plain data only. It sends pickle (the task
#: and its arguments), but never unpickles what a worker or scheduler sends back: a
#: compromised host could otherwise run code on the dispatcher (see
#: :mod:`ramp_fleet.dask.no_pickles`, which holds it whatever distributed's protocol allows).
SENDS = ["dask", "pickle", "msgpack"]
ACCEPTS = ["msgpack", "error"]


def open_client(address: str, security: Any, timeout: float) -> Any:
    """A connected ``distributed.Client`` that never unpickles what the cluster sends, or an
    exception and nothing left running."""
    refuse_pickles()
    return _discarding_client_class()(address, security=security, timeout=timeout,
                                      set_as_default=False, serializers=SENDS,
                                      deserializers=ACCEPTS)


@functools.cache
def _discarding_client_class() -> type:
    """``distributed.Client`` that is discarded on the spot when it cannot connect, and that
    refuses pickles in what it reads from its scheduler.

    A Client that fails to connect keeps its IO-loop thread and is left to
    ``__del__``, which the cyclic garbage collector runs at any moment in any
    thread; there its ``close()`` blocks for seconds, or deadlocks when the
    collection happens under ``LoopRunner``'s class-wide lock.
    """
    from distributed import Client

    class DiscardingClient(Client):
        def start(self, **kwargs: Any) -> None:
            try:
                super().start(**kwargs)
            except BaseException:
                discard(self)
                raise

        async def _ensure_connected(self, timeout: float | None = None) -> Any:
            return await refusing(super()._ensure_connected, timeout=timeout)

        async def _handle_report(self) -> Any:
            return await refusing(super()._handle_report)

    return DiscardingClient


def discard(client: Any, timeout: float = 2.0) -> None:
    """Close ``client`` if it is not closed and stop its IO-loop thread; never raises.

    ``Client.close`` returns early for a client that closed itself (scheduler
    gone, connection failed) without stopping the thread; stopping it here
    also leaves ``__del__`` nothing to do.
    """
    if client.status != "closed":
        try:
            client.close(timeout=timeout)
        except Exception as exc:  # closing must never mask the real outcome
            logger.warning("closing the Dask client: %s", exc)
        client.status = "closed"
    client._loop_runner.stop()
