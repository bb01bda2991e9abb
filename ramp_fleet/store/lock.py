"""One dispatcher per event: an advisory lock the kernel drops when the holder dies."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from ramp_fleet.errors import UsageError


class DispatcherLock:
    """Held for a dispatcher's whole life; a SIGKILLed holder releases it at once."""

    def __init__(self, store_path: Path, event_name: str):
        self.path = store_path.with_name(store_path.name + ".lock")
        self.event_name = event_name
        self._fd: int | None = None

    def __enter__(self) -> DispatcherLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UsageError(
                f"event {self.event_name!r} is already served by a dispatcher (pid {holder}); "
                "stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
