"""Make docs/report.png, the README's picture of a report, from a synthetic event.

    python docs/report_png.py

Renders the report of 600 synthetic runs on 12 slots (3 on EC2), opens it in
the browser test's headless Chromium, and keeps the top of the page (counts
and timeline) as a 64-colour PNG.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from ramp_fleet.config import load_event_config  # noqa: E402
from ramp_fleet.report import build_report, render_html  # noqa: E402
from ramp_fleet.report.prices import PriceList  # noqa: E402
from ramp_fleet.report.source import report_data, with_prices  # noqa: E402
from ramp_fleet.store import Store  # noqa: E402
from tests.report.browser import open_report  # noqa: E402
from tests.report.synthetic import fill_store, synthetic_event  # noqa: E402

OUTPUT = REPO / "docs" / "report.png"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="report-png-") as folder:
        root = Path(folder)
        (root / "config.yml").write_text("ramp: {problem_name: iris, event_name: iris_2025}\n"
                                         "worker: {worker_type: conda, hourly_price: 0.0416}\n")
        event = load_event_config(root / "config.yml", runtime_files=False, check_env=False)
        synthetic = synthetic_event(600, 12, aws_slots=3, seed=7)
        store = Store(event.store_path)
        try:
            fill_store(store, synthetic)
            data = with_prices(report_data(event, store, now=synthetic.end + 60), PriceList(None, root))
        finally:
            store.close()
        html = root / "report.html"
        html.write_text(render_html(build_report(data), link_base=root), encoding="utf-8")
        shot = root / "report.png"
        open_report(html, shot, width=1200, height=940)
        with Image.open(shot) as image:
            image.convert("RGB").quantize(colors=64).save(OUTPUT, optimize=True)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
