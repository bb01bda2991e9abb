"""A run's log, read by offset and bounded: the same rule on the host and at the dispatcher.

A log past its bound keeps its first quarter and its end around a
``[… truncated: N bytes]`` marker; bounding twice changes nothing. Standard
library only: the Dask task bounds a log on its host before sending it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

#: A log longer than this keeps its first quarter and its end around the marker.
MAX_LOG_BYTES = 4 << 20


class LogSource:
    """A run's log, read by offset (never whole): from bytes, a descriptor, or a remote file."""

    def __init__(self, size: int, read_at: Callable[[int, int], bytes]):
        self.size = size
        self.read_at = read_at

    @classmethod
    def from_bytes(cls, data: bytes) -> LogSource:
        return cls(len(data), lambda offset, length: data[offset:offset + length])

    @classmethod
    def from_fd(cls, fd: int) -> LogSource:
        """A log file we opened ourselves: whatever the run did to its name, we read our file."""
        return cls(os.fstat(fd).st_size, lambda offset, length: os.pread(fd, length, offset))

    @classmethod
    def from_path(cls, path: Path, max_bytes: int = MAX_LOG_BYTES) -> LogSource:
        """A log file on this machine, opened without following a link, read bounded."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return cls.from_bytes(b"")
        try:
            return cls.from_bytes(b"".join(bounded_chunks(cls.from_fd(fd), max_bytes)))
        finally:
            os.close(fd)


def bounded_chunks(log: LogSource, max_bytes: int = MAX_LOG_BYTES) -> Iterator[bytes]:
    """The log in chunks; past ``max_bytes``, its head, a marker, and its end — never
    more than ``max_bytes`` in all, so bounding it twice changes nothing."""
    size = log.size
    if size <= max_bytes:
        yield from _range(log, 0, size)
        return
    head = max_bytes // 4
    marker = b""
    for _ in range(2):  # the marker's length depends on the count it shows
        tail = max(0, max_bytes - head - len(marker))
        marker = f"\n[… truncated: {size - head - tail} bytes]\n".encode()
    yield from _range(log, 0, head)
    yield marker
    yield from _range(log, size - tail, tail)


def _range(log: LogSource, start: int, length: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    offset = start
    while offset < start + length:
        data = log.read_at(offset, min(chunk, start + length - offset))
        if not data:
            return
        offset += len(data)
        yield data
