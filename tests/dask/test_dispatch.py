"""The dispatcher with ``worker_type: dask``: an event trained and scored on a real cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from ramp_fleet.config import load_event_config
from ramp_fleet.dask.local import LocalDaskCluster
from ramp_fleet.dispatcher import Dispatcher
from ramp_fleet.progress import Reporter
from ramp_fleet.store import State, Store
from tests.conftest import EventFactory
from tests.dask.helpers import add_hanging_submission, wait_until_gone

pytestmark = pytest.mark.timeout(240)


class Quiet(Reporter):
    def line(self, text: str) -> None:
        pass


def test_an_event_is_trained_and_scored_on_dask(
    plain_cluster: LocalDaskCluster, make_event: EventFactory
) -> None:
    config = make_event(("logreg", "dummy", "broken"),
                        worker={"worker_type": "dask", **plain_cluster.worker_config()},
                        dispatcher={"n_workers": 2, "time_between_collection": 0.5})
    marker = add_hanging_submission(config.parent, "hang")
    _set_timeout(config, 12)
    event = load_event_config(config)
    Dispatcher(event, Quiet()).run()

    store = Store(event.store_path)
    states = {s.name: s.state for s in store.all()}
    assert states == {"logreg": State.SCORED, "dummy": State.SCORED,
                      "broken": State.TRAINING_ERROR, "hang": State.TRAINING_ERROR}
    hang = store.get("hang")
    assert hang is not None and hang.returncode == 124
    logreg = store.get("logreg")
    assert logreg is not None and logreg.score is not None and 0.5 < logreg.score <= 1
    predictions = config.parent / "events" / "iris_test" / "predictions"
    assert (predictions / "logreg" / "bagged_scores.csv").is_file()
    assert not (predictions / "broken").exists()
    assert wait_until_gone(marker, timeout=5) == []


def _set_timeout(config: Path, seconds: float) -> None:
    import yaml

    data = yaml.safe_load(config.read_text())
    data["worker"]["timeout"] = seconds
    config.write_text(yaml.safe_dump(data, sort_keys=False))
