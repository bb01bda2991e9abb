"""The dispatcher's Dask client never unpickles what the cluster sends, whatever it sends.

``deserializers=["msgpack", "error"]`` is not enough: distributed unpickles
``ToPickle`` / ``__Pickled__`` frames whatever a client's deserializers say,
and reads its scheduler stream with every deserializer. So a scheduler, or
any process holding a certificate of the cluster's CA (it can reach the
scheduler's ``run_function`` and have it send anything), could run code in
the dispatcher.

:func:`refuse_pickles` patches distributed's one door to ``pickle.loads``
(``distributed.protocol.pickle.loads``) so that it refuses while a
refusing client is reading: inside its scheduler stream and handshake
(:func:`refusing`, used by the dispatcher's client class), and in any read
made with deserializers that leave pickle out. Other clients of the same
process (none in a dispatcher; a test's own) are untouched. The refusal
reaches distributed as an error while decoding, and the client treats the
message as a broken connection.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

_REFUSING: contextvars.ContextVar[bool] = contextvars.ContextVar("ramp_fleet_no_pickles",
                                                                 default=False)
T = TypeVar("T")


class PickleRefused(Exception):
    """The cluster sent a pickle to a client that never unpickles."""


def refuse_pickles() -> None:
    """Install the patch (once per process; idempotent)."""
    from distributed import protocol
    from distributed.protocol import core
    from distributed.protocol import pickle as dask_pickle

    if getattr(dask_pickle.loads, "_ramp_fleet_refusing", False):
        return
    original_pickle_loads = dask_pickle.loads
    original_loads = core.loads

    def pickle_loads(data: Any, *, buffers: Any = ()) -> Any:
        if _REFUSING.get():
            raise PickleRefused("the Dask cluster sent a pickle: refused (the dispatcher never "
                                "unpickles what a cluster sends)")
        return original_pickle_loads(data, buffers=buffers)

    def loads(frames: Any, deserialize: bool = True, deserializers: Any = None) -> Any:
        if deserializers is not None and "pickle" not in deserializers:
            token = _REFUSING.set(True)
            try:
                return original_loads(frames, deserialize=deserialize, deserializers=deserializers)
            finally:
                _REFUSING.reset(token)
        return original_loads(frames, deserialize=deserialize, deserializers=deserializers)

    pickle_loads._ramp_fleet_refusing = True  # type: ignore[attr-defined]
    dask_pickle.loads = pickle_loads
    core.loads = protocol.loads = loads


async def refusing(call: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Await ``call`` with pickles refused in everything it reads (its task's context)."""
    token = _REFUSING.set(True)
    try:
        return await call(*args, **kwargs)
    finally:
        _REFUSING.reset(token)
