"""The config keys of the operator's view: metrics_port/metrics_host and hourly_price."""

from __future__ import annotations

from typing import Any

import pytest

from ramp_fleet.config import load_event_config
from ramp_fleet.errors import ConfigError
from tests.conftest import EventFactory


def test_metrics_are_off_and_loopback_by_default(make_event: EventFactory) -> None:
    event = load_event_config(make_event())
    assert event.dispatcher.metrics_port is None
    assert event.dispatcher.metrics_host == "127.0.0.1"
    assert event.worker.hourly_price is None


def test_the_keys_are_read(make_event: EventFactory) -> None:
    config = make_event(dispatcher={"metrics_port": "9101", "metrics_host": "0.0.0.0"},
                        worker={"hourly_price": "0.0416"})
    event = load_event_config(config)
    assert event.dispatcher.metrics_port == 9101
    assert event.dispatcher.metrics_host == "0.0.0.0"
    assert event.worker.hourly_price == pytest.approx(0.0416)
    assert event.describe()["dispatcher"]["metrics_port"] == 9101


@pytest.mark.parametrize(("section", "key", "value", "message"), [
    ("dispatcher", "metrics_port", 0, "must be a port number from 1 to 65535, got 0"),
    ("dispatcher", "metrics_port", 70000, "must be a port number from 1 to 65535, got 70000"),
    ("dispatcher", "metrics_port", 91.5, "must be a whole number, got 91.5"),
    ("dispatcher", "metrics_port", "http", "must be a whole number, got 'http'"),
    ("dispatcher", "metrics_host", "", "must not be empty, got ''"),
    ("worker", "hourly_price", 0, "must be a positive number, got 0"),
    ("worker", "hourly_price", -1.5, "must be a positive number, got -1.5"),
    ("worker", "hourly_price", "cheap", "must be a positive number, got 'cheap'"),
    ("worker", "hourly_price", True, "must be a positive number, got True"),
])
def test_bad_values_are_one_line_naming_the_key(
    make_event: EventFactory, section: str, key: str, value: Any, message: str
) -> None:
    config = make_event(**{section: {key: value}})
    with pytest.raises(ConfigError) as info:
        load_event_config(config)
    assert info.value.problems == [f"{config}: {section}.{key}: {message}"]
