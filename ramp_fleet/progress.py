"""What ``dispatch`` shows while it works: a live view on a terminal, log lines elsewhere."""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any

from ramp_fleet.store.states import FINAL, State


class Reporter:
    """Receives the dispatcher's events; the base class keeps the counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total_count = 0
        self.done = 0
        self.errors = 0
        self.running: dict[str, tuple[str, float]] = {}

    def total(self, count: int) -> None:
        with self._lock:
            self.total_count = count
        self.refresh()

    def started(self, name: str, slot: str, attempt: int) -> None:
        with self._lock:
            self.running[name] = (slot, time.monotonic())
        self.line(f"{name}: training on {slot}" + (f" (attempt {attempt})" if attempt > 1 else ""))

    def finished(self, name: str, state: State, detail: str) -> None:
        with self._lock:
            _, began = self.running.pop(name, ("", time.monotonic()))
            if state in FINAL:
                self.done += 1
                self.errors += state != State.SCORED
        took = time.monotonic() - began
        first_line = detail.strip().splitlines()[-1] if detail.strip() else ""
        self.line(f"{name}: {state} after {took:.1f} s" + (f" — {first_line}" if first_line else ""))

    def message(self, text: str) -> None:
        self.line(text)

    def line(self, text: str) -> None:
        raise NotImplementedError

    def refresh(self) -> None:
        """Redraw a live view, where there is one."""

    def close(self) -> None:
        """Stop a live view, where there is one."""


class LogReporter(Reporter):
    """Plain timestamped lines: for logs, pipes and CI."""

    def __init__(self, stream: IO[str] | None = None):
        super().__init__()
        self.stream = stream or sys.stdout

    def line(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        with self._lock:
            print(f"{stamp} {text}", file=self.stream, flush=True)


class LiveReporter(Reporter):
    """A rich live panel (running submissions, done/total, errors) above the log lines."""

    def __init__(self) -> None:
        super().__init__()
        from rich.console import Console
        from rich.live import Live

        self.console = Console()
        self._live = Live(self._render(), console=self.console, refresh_per_second=2,
                          transient=True, get_renderable=self._render)
        self._live.start()

    def _render(self) -> Any:
        from rich.table import Table

        table = Table(box=None, show_header=True, header_style="bold")
        table.add_column("running")
        table.add_column("slot")
        table.add_column("for", justify="right")
        now = time.monotonic()
        for name, (slot, began) in sorted(self.running.items()):
            table.add_row(name, slot, f"{now - began:.0f} s")
        table.caption = (f"{self.done}/{self.total_count} done, {self.errors} failed, "
                         f"{len(self.running)} running")
        return table

    def line(self, text: str) -> None:
        self.console.log(text)

    def close(self) -> None:
        self._live.stop()


def make_reporter() -> Reporter:
    return LiveReporter() if sys.stdout.isatty() else LogReporter()
