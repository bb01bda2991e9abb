"""How long ``ramp-fleet report`` takes on a big event, and how big the page is.

A synthetic store of N runs (default 10 000) on 32 slots, about 8 % failed
attempts, 2 % retries, and a quarter of the slots on EC2 instances (spot and
on-demand, some reused), written through the Store's methods. Prints:

* the time to read the store, build the figures and render the page (in this
  process, Bokeh imported cold), against the 3 s target;
* the page's size against the 2 MB target, and the share of BokehJS in it;
* the wall time of the whole ``ramp-fleet report`` command (a new process);
* the size of ``--json``.

Prices come from ``worker.hourly_price``: the Price List API is pointed at a
closed port on 127.0.0.1, so nothing leaves the machine.

    python benchmarks/report.py [--runs 10000] [--slots 32]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ramp_fleet.config import load_event_config  # noqa: E402
from ramp_fleet.report.prices import PriceList  # noqa: E402
from ramp_fleet.report.source import report_data, with_prices  # noqa: E402
from ramp_fleet.store import Store  # noqa: E402
from tests.report.synthetic import fill_store, synthetic_event  # noqa: E402

TARGET_SECONDS = 3.0
TARGET_BYTES = 2_000_000


def offline_env(cache: Path) -> dict[str, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL_PRICING=closed, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
               AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=os.devnull,
               AWS_SHARED_CREDENTIALS_FILE=os.devnull, XDG_CACHE_HOME=str(cache))
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--slots", type=int, default=32)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="report-bench-") as folder:
        root = Path(folder)
        config = root / "config.yml"
        config.write_text("ramp: {problem_name: iris, event_name: report_bench}\n"
                          "worker: {worker_type: conda, hourly_price: 0.0416}\n")
        event = load_event_config(config, runtime_files=False, check_env=False)

        started = time.perf_counter()
        synthetic = synthetic_event(args.runs, args.slots, aws_slots=args.slots // 4, seed=1)
        store = Store(event.store_path)
        fill_store(store, synthetic)
        fill = time.perf_counter() - started

        started = time.perf_counter()
        data = with_prices(report_data(event, store, now=synthetic.end + 60), PriceList(None, root / "cache"))
        store.close()
        read = time.perf_counter() - started

        from ramp_fleet.report import build_report, render_html

        started = time.perf_counter()
        report = build_report(data)
        build = time.perf_counter() - started
        started = time.perf_counter()
        html = render_html(report, link_base=root).encode()
        render = time.perf_counter() - started

        from ramp_fleet.report.plots import bokeh_js

        bokeh_bytes = len(bokeh_js().encode())
        env = offline_env(root / "cache")
        command = [sys.executable, "-m", "ramp_fleet", "report", str(config)]
        started = time.perf_counter()
        subprocess.run([*command, "-o", str(root / "report.html")], check=True, env=env, capture_output=True)
        cli = time.perf_counter() - started
        as_json_run = subprocess.run([*command, "--json"], check=True, env=env, capture_output=True)
        json_bytes = len(as_json_run.stdout)

    failed = sum(g.runs for g in report.failures if g.outcome != "retry")
    in_process = read + build + render
    print(f"synthetic store: {len(data.runs)} runs, {len(data.submissions)} submissions, "
          f"{len(report.timeline.slots)} slots, {failed} failed attempts "
          f"({100 * failed / len(data.runs):.1f} %), {len(data.instances)} instances "
          f"(written in {fill:.1f} s)")
    print(f"read store {read:.2f} s + build figures {build:.2f} s + render page {render:.2f} s "
          f"= {in_process:.2f} s (target <= {TARGET_SECONDS:.0f} s: "
          f"{'met' if in_process <= TARGET_SECONDS else 'MISSED'})")
    print(f"page: {len(html):,} bytes (target <= {TARGET_BYTES:,}: "
          f"{'met' if len(html) <= TARGET_BYTES else 'MISSED'}); BokehJS {bokeh_bytes:,} bytes of it, "
          f"the event's data and tables {len(html) - bokeh_bytes:,}")
    print(f"`ramp-fleet report` wall time, new process: {cli:.2f} s; --json output: {json_bytes:,} bytes")


if __name__ == "__main__":
    main()
