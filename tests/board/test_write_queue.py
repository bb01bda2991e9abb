"""The ramp-board writes' queue: in order, with a state that lasted less than a batch dropped."""

from __future__ import annotations

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
