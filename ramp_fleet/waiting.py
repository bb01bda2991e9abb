"""The one helper for every wait and retry: a deadline and capped back-off.

    for attempt in Backoff(deadline=300, first=1, cap=15, stop=stop_event):
        try:
            return connect()
        except OSError as exc:
            attempt.failed(exc)      # re-raised when the deadline passes

"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


class WaitTimeout(TimeoutError):
    """The deadline passed; ``__cause__`` is the last real error, if any."""


def backoff_delay(attempt: int, first: float, cap: float) -> float:
    """Capped exponential back-off: first, 2×first, 4×first… never above cap."""
    return float(min(cap, first * (2 ** max(0, attempt - 1))))


@dataclass
class Attempt:
    number: int
    error: BaseException | None = None

    def failed(self, error: BaseException) -> None:
        self.error = error


@dataclass
class Backoff:
    """Yields attempts until the caller returns, the deadline passes or ``stop`` is set."""

    deadline: float
    first: float = 0.5
    cap: float = 15.0
    what: str = "operation"
    stop: threading.Event | None = None
    _started: float = field(default_factory=time.monotonic, init=False)

    def remaining(self) -> float:
        return self.deadline - (time.monotonic() - self._started)

    def __iter__(self) -> Iterator[Attempt]:
        number = 0
        last: BaseException | None = None
        while True:
            number += 1
            attempt = Attempt(number)
            yield attempt
            if attempt.error is not None:
                last = attempt.error
            remaining = self.remaining()
            if remaining <= 0:
                break
            delay = min(backoff_delay(number, self.first, self.cap), remaining)
            if self.stop is not None:
                if self.stop.wait(delay):
                    break
            else:
                time.sleep(delay)
        message = f"{self.what} did not succeed within {self.deadline:g} s"
        if last is not None:
            message += f": {last}"
        raise WaitTimeout(message) from last
