"""What ``dispatch`` shows while it works: a live view on a terminal, log lines elsewhere.

A reporter is one of the dispatcher's listeners (:mod:`ramp_fleet.listeners`).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, Any

from ramp_fleet.listeners import Finished, Listener, Requeued
from ramp_fleet.store import Submission
from ramp_fleet.store.states import FINAL, State
from ramp_fleet.text import visible


class Reporter(Listener):
    """Says what the dispatcher does, a line per event; the base class keeps the counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total_count = 0
        self.done = 0
        self.errors = 0
        self.running: dict[str, tuple[str, float]] = {}

    def queued(self, total: int, added: Sequence[str] = ()) -> None:
        with self._lock:
            self.total_count = total
        self.refresh()

    def claimed(self, submission: Submission, slot: str) -> None:
        name, attempt = submission.name, submission.attempts
        with self._lock:
            self.running[name] = (slot, time.monotonic())
        self.line(f"{name}: training on {slot}" + (f" (attempt {attempt})" if attempt > 1 else ""))

    def finished(self, result: Finished) -> None:
        if result.score is not None:
            detail = f"{result.score[0]} {result.score[1]:.4g}"
        else:
            detail = result.error or ("scored" if result.state == State.SCORED else "")
        self._ended(result.name, result.state, detail)

    def requeued(self, requeued: Requeued) -> None:
        self._ended(requeued.name, State.NEW,
                    f"retry in {requeued.retry_in:g} s: {requeued.reason}" if requeued.counted
                    else "stopped; will run again next time")

    def _ended(self, name: str, state: State, detail: str) -> None:
        with self._lock:
            _, began = self.running.pop(name, ("", time.monotonic()))
            if state in FINAL:
                self.done += 1
                self.errors += state != State.SCORED
        took = time.monotonic() - began
        lines = visible(detail).strip().split("\n")
        first_line = lines[-1] if lines != [""] else ""
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

    def __init__(self, stream: IO[str] | None = None, prefix: str = ""):
        super().__init__()
        self.stream = stream or sys.stdout
        #: Names the event on every line, when several share the output (a fleet).
        self.prefix = f"[{visible(prefix)}] " if prefix else ""

    def line(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        with self._lock:
            print(f"{stamp} {self.prefix}{visible(text)}", file=self.stream, flush=True)


class LiveReporter(Reporter):
    """A live panel (done/total, errors, what runs where) under the scrolling log lines."""

    def __init__(self) -> None:
        super().__init__()
        from rich.console import Console
        from rich.live import Live

        self.console = Console(highlight=False)
        self._live = Live(console=self.console, refresh_per_second=2, transient=True,
                          get_renderable=self._render)
        self._live.start()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        now = time.monotonic()
        with self._lock:
            running = sorted(self.running.items())
            summary = (f"{self.done}/{self.total_count} done, {self.errors} failed, "
                       f"{len(running)} running")
        table = Table(box=None, show_header=bool(running), header_style="bold", pad_edge=False)
        for column in ("running", "slot", "for"):
            table.add_column(column, no_wrap=True, justify="right" if column == "for" else "left")
        for name, (slot, began) in running:
            table.add_row(name, slot, f"{now - began:.0f} s")
        return Group(Text(summary, style="bold"), table)

    def line(self, text: str) -> None:
        from rich.text import Text

        stamped = Text.assemble((time.strftime("%H:%M:%S"), "dim"), " ", visible(text))
        self.console.print(stamped, highlight=False, soft_wrap=True)  # text, never markup

    def close(self) -> None:
        self._live.stop()  # a no-op when stopped already


def make_reporter() -> Reporter:
    return LiveReporter() if sys.stdout.isatty() else LogReporter()
