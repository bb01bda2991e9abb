"""The ramp-board writes' queue: in order, with a state that lasted less than a batch dropped."""

from __future__ import annotations

import threading
import time

import pytest

from ramp_fleet.ramp_board import sync
from ramp_fleet.ramp_board.sync import _Write, _WriteQueue


def write(what: str, submission: str, **kinds: bool) -> _Write:
    return _Write(what, lambda client: None, submission, **kinds)


def test_a_state_superseded_by_a_later_state_or_result_is_not_written() -> None:
    writes = _WriteQueue()
    for item in (write("sent_to_training a", "a", state_only=True),
                 write("sent_to_training b", "b", state_only=True),
                 write("training a", "a", state_only=True),
                 write("queue position a", "a"),
                 write("training b", "b", state_only=True),
                 write("scores b", "b", result=True)):
        writes.put(item)
    taken = []
    while (item := writes.take(timeout=0)) is not None:
        taken.append(item.what)
        writes.done()
    assert taken == ["training a", "queue position a", "scores b"]
    assert not writes.pending()


def taken_within(writes: _WriteQueue, item: _Write, seconds: float) -> bool:
    """Put ``item`` into an idle queue; whether ``take`` hands it over within ``seconds``."""
    taken: list[_Write | None] = []
    taker = threading.Thread(target=lambda: taken.append(writes.take(timeout=60)), daemon=True)
    taker.start()
    while not writes._changed._waiters:  # type: ignore[attr-defined]  # until it waits, idle
        time.sleep(0.01)
    writes.put(item)
    taker.join(timeout=seconds)
    return taken == [item]


def test_a_result_is_sent_at_once_a_state_waits_for_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    # A state that lasts less than the batch window is never written; a result is never
    # superseded, so a participant's score does not wait for the window.
    monkeypatch.setattr(sync, "BATCH_WINDOW", 20.0)  # the taker of the state ends after it
    assert taken_within(_WriteQueue(), write("scores a", "a", result=True), seconds=10)
    assert not taken_within(_WriteQueue(), write("training a", "a", state_only=True), seconds=1)
