"""The official score (name, direction) is recorded by the dispatcher at the first scored
result, as the trusted scorer read it from the kit in its own process; a dispatcher that
is done stops that process rather than wait for it."""

from __future__ import annotations

import threading
import time

from ramp_fleet.config import load_event_config
from ramp_fleet.dispatcher import Dispatcher
from ramp_fleet.store import Store
from tests.conftest import EventFactory
from tests.processes import wait_until_gone
from tests.test_dispatcher import Quiet
from tests.waiting import PATIENCE, wait_for


def test_the_first_scored_result_records_the_official_score(make_event: EventFactory) -> None:
    config = make_event(("logreg",), dispatcher={"hunger_policy": "sleep", "sleep_interval": 1})
    event = load_event_config(config)
    dispatcher = Dispatcher(event, Quiet())
    serving = threading.Thread(target=dispatcher.run, name="dispatcher")
    store = Store(event.store_path)
    serving.start()
    try:
        wait_for(lambda: store.official_score() is not None, "the official score recorded")
        assert store.official_score() == ("acc", False)
    finally:
        dispatcher.request_stop()
        serving.join()
        store.close()


def test_a_dispatcher_that_is_done_stops_the_scorer_instead_of_waiting(
    make_event: EventFactory,
) -> None:
    config = make_event()
    problem = config.parent / "ramp-kits" / "iris" / "problem.py"
    problem.write_text("import time\ntime.sleep(600)\n" + problem.read_text())
    event = load_event_config(config)
    dispatcher = Dispatcher(event, Quiet())
    kit = str(problem.parent)
    began = time.monotonic()
    dispatcher.run()  # nothing to run: done at once, the scorer still importing problem.py
    assert time.monotonic() - began < PATIENCE / 2
    assert wait_until_gone("rampwf", kit) == [], "the scorer is gone"
    store = Store(event.store_path)
    try:
        assert store.official_score() is None
    finally:
        store.close()
