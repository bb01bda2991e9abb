"""``ramp-fleet report``: the page and ``--json`` from an event's store, prices from a loopback API.

The Price List API is reached through ``AWS_ENDPOINT_URL_PRICING``: a small
HTTP server on 127.0.0.1 answering ``GetProducts`` as AWS does, or a closed
port (no answer: the configured price is used). Nothing leaves 127.0.0.0/8.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ramp_fleet.config import load_event_config
from ramp_fleet.report.prices import API_SOURCE, CONFIG_SOURCE
from ramp_fleet.store import Store
from tests.conftest import EventFactory
from tests.report import small_event
from tests.report.pricing_answers import product


class PricingServer(ThreadingHTTPServer):
    """Records the requests its handler answers."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), PricingAPI)
        self.requests: list[dict[str, Any]] = []


class PricingAPI(BaseHTTPRequestHandler):
    """``GetProducts`` of the AWS Price List API (JSON 1.1 protocol), one price for every type."""

    server: PricingServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"target": self.headers["X-Amz-Target"], **body})
        terms = {f["Field"]: f["Value"] for f in body["Filters"]}
        answer = json.dumps({"FormatVersion": "aws_v1",
                             "PriceList": [product(terms["instanceType"], terms["regionCode"], 0.0472)]})
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def pricing_api() -> Iterator[PricingServer]:
    server = PricingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture
def config(make_event: EventFactory) -> Path:
    path = make_event(worker={"hourly_price": 0.05})
    store = Store(load_event_config(path, runtime_files=False, check_env=False).store_path)
    try:
        small_event.fill(store)
    finally:
        store.close()
    return path


def report(*args: str, endpoint: str, cache: Path, cwd: Path | None = None
           ) -> subprocess.CompletedProcess[str]:
    """The command, with AWS reachable only at ``endpoint`` (no credential look-up elsewhere)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL_PRICING=endpoint, AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing", AWS_EC2_METADATA_DISABLED="true",
               AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
               XDG_CACHE_HOME=str(cache))
    return subprocess.run([sys.executable, "-m", "ramp_fleet", "report", *args], capture_output=True,
                          text=True, timeout=120, env=env, cwd=cwd)


def test_the_page_is_written_with_prices_from_the_api(
    config: Path, pricing_api: PricingServer, tmp_path: Path
) -> None:
    output = tmp_path / "out" / "report.html"
    endpoint = f"http://127.0.0.1:{pricing_api.server_address[1]}"
    done = report(str(config), "-o", str(output), endpoint=endpoint, cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {output} (7 runs, 7 submissions)"
    html = output.read_text()
    assert API_SOURCE in html and '"n_runs": 7' in html
    assert f'<a href="../{config.parent.relative_to(tmp_path)}/events/iris_test/logs/beta/log">' in html
    assert [r["target"] for r in pricing_api.requests] == ["AWSPriceListService.GetProducts"]
    region_filter = {"Type": "TERM_MATCH", "Field": "regionCode", "Value": "eu-west-3"}
    assert region_filter in pricing_api.requests[0]["Filters"]
    cached = json.loads((tmp_path / "cache" / "ramp-fleet" / "aws-prices" / "eu-west-3" / "t3.medium.json")
                        .read_text())
    assert cached["usd_per_hour"] == pytest.approx(0.0472)


def test_json_has_the_figures_and_the_configured_price_without_an_api(config: Path, tmp_path: Path) -> None:
    done = report(str(config), "--json", endpoint=closed_port(), cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["submissions"]["by_state"]["scored"] == 2 and figures["runs"]["total"] == 7
    assert [(p["usd_per_hour"], p["source"]) for p in figures["aws"]["prices"]] == [(0.05, CONFIG_SOURCE)]
    hours = figures["aws"]["instance_hours"]
    assert hours["spot"] == pytest.approx(small_event.SPOT_SECONDS / 3600)
    # i-e is still running: its hours (and cost) grow until the report's time.
    assert hours["on-demand"] > small_event.ON_DEMAND_SECONDS / 3600
    assert figures["aws"]["total_usd"] == pytest.approx(0.05 * (hours["spot"] + hours["on-demand"]))
    assert "AWS Price List API unavailable" in done.stderr
    assert not (tmp_path / "cwd-report.html").exists()


def test_the_default_output_is_report_html_here(config: Path, tmp_path: Path) -> None:
    here = tmp_path / "here"
    here.mkdir()
    done = report(str(config), endpoint=closed_port(), cache=tmp_path / "cache", cwd=here)
    assert done.returncode == 0, done.stderr
    assert (here / "report.html").is_file()


def test_an_event_never_dispatched_is_one_line(make_event: EventFactory, tmp_path: Path) -> None:
    config = make_event()
    done = report(str(config), endpoint=closed_port(), cache=tmp_path / "cache")
    assert done.returncode == 2
    assert done.stderr.startswith("error: event 'iris_test' has no store yet (")
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_command_imports_bokeh_only_to_draw() -> None:
    probe = (
        "import sys\n"
        "from ramp_fleet.cli import main\n"
        "try:\n    main(['report', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('LOADED', [m for m in ('bokeh', 'numpy', 'boto3') if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "--json" in done.stdout and "LOADED []" in done.stdout
