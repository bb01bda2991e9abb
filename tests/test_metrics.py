"""Prometheus metrics: served on loopback, scraped over HTTP, stopped without leftovers."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ramp_fleet.errors import UsageError
from ramp_fleet.metrics import DispatcherMetrics


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition text, by name and labels."""
    with urllib.request.urlopen(url, timeout=30) as answer:  # http, on loopback
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_a_scrape_shows_what_the_dispatcher_reported() -> None:
    metrics = DispatcherMetrics()
    metrics.submission_states({"new": 3, "training": 1, "scored": 2})
    metrics.submission_states({"new": 2, "training": 2, "scored": 2})  # the latest counts win
    for _ in range(2):
        metrics.run_started("conda")
    metrics.run_finished("conda", 42.0, "scored")
    metrics.run_finished("conda", None, "checking_error")  # never trained: no observation
    metrics.run_started("aws")
    metrics.retried("aws")
    metrics.queue_length(3)
    metrics.instances_alive(1)
    server = metrics.serve("127.0.0.1", 0)
    try:
        samples = scrape(server.url)
    finally:
        server()
    assert samples[("ramp_fleet_submissions", (("state", "new"),))] == 2
    assert samples[("ramp_fleet_submissions", (("state", "training"),))] == 2
    assert samples[("ramp_fleet_submissions", (("state", "training_error"),))] == 0
    assert samples[("ramp_fleet_runs_in_progress", (("backend", "conda"),))] == 0
    assert samples[("ramp_fleet_runs_in_progress", (("backend", "aws"),))] == 1
    assert samples[("ramp_fleet_queue_length", ())] == 3
    assert samples[("ramp_fleet_instances_alive", ())] == 1
    assert samples[("ramp_fleet_retries_total", (("backend", "aws"),))] == 1
    scored = (("backend", "conda"), ("outcome", "scored"))
    assert samples[("ramp_fleet_training_seconds_count", scored)] == 1
    assert samples[("ramp_fleet_training_seconds_sum", scored)] == 42
    assert samples[("ramp_fleet_training_seconds_bucket", (*scored[:1], ("le", "30.0"), scored[1]))] == 0
    assert samples[("ramp_fleet_training_seconds_bucket", (*scored[:1], ("le", "60.0"), scored[1]))] == 1
    assert not any(name == "ramp_fleet_training_seconds_count" and ("outcome", "checking_error") in labels
                   for name, labels in samples)
    assert ("process_cpu_seconds_total", ()) in samples


def test_stopping_leaves_no_thread_and_no_socket() -> None:
    before = set(threading.enumerate())
    server = DispatcherMetrics().serve()
    assert server.url == f"http://127.0.0.1:{server.port}/metrics"  # loopback unless told otherwise
    for _ in range(3):
        scrape(server.url)
    server.stop()
    server.stop()  # twice is harmless
    assert set(threading.enumerate()) - before == set(), "a server or request thread outlived stop()"
    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(server.url, timeout=30)
    assert isinstance(refused.value.reason, ConnectionRefusedError)


def test_an_idle_client_never_holds_up_the_stop() -> None:
    """A connection that sends half a request and waits (or a scraper that hangs) must not
    keep a finished dispatcher from exiting."""
    server = DispatcherMetrics().serve()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as idle:
        idle.sendall(b"GET /metrics HTTP/1.1\r\n")  # and nothing more
        time.sleep(0.2)
        stopper = threading.Thread(target=server.stop, daemon=True)
        began = time.monotonic()
        stopper.start()
        stopper.join(timeout=10)
        assert not stopper.is_alive(), "stop() waits for the idle client"
        assert time.monotonic() - began < 5


def test_a_busy_port_is_one_line_naming_the_key() -> None:
    first = DispatcherMetrics().serve("127.0.0.1", 0)
    try:
        with pytest.raises(UsageError) as busy:
            DispatcherMetrics().serve("127.0.0.1", first.port)
    finally:
        first.stop()
    where = f"127.0.0.1:{first.port}"
    assert str(busy.value).startswith(f"dispatcher.metrics_port: cannot serve metrics on {where}: ")
    assert "\n" not in str(busy.value)


def test_two_dispatchers_in_one_process_keep_their_own_metrics() -> None:
    one, two = DispatcherMetrics(), DispatcherMetrics()
    one.queue_length(5)
    assert one.registry.get_sample_value("ramp_fleet_queue_length") == 5
    assert two.registry.get_sample_value("ramp_fleet_queue_length") == 0
