"""Make docs/report.png, the README's picture of a report, from a real dispatch.

    python docs/report_png.py

Copies the bundled iris event, adds a few submissions that take longer (and
one that fails), dispatches them for real on two conda slots, renders the
report, opens it in the browser test's headless Chromium and keeps the top of
the page (counts and timeline) as a 64-colour PNG.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from ramp_fleet.config import load_event_config  # noqa: E402
from ramp_fleet.dispatcher import Dispatcher  # noqa: E402
from ramp_fleet.progress import LogReporter  # noqa: E402
from ramp_fleet.report import build_report, render_html  # noqa: E402
from ramp_fleet.report.source import report_data  # noqa: E402
from ramp_fleet.store import Store  # noqa: E402
from tests.report.browser import open_report  # noqa: E402

OUTPUT = REPO / "docs" / "report.png"
EXAMPLE = REPO / "examples" / "iris"
#: A random forest made slower, as participants' models are: ``seconds`` of training.
SLOW = """
import time
from sklearn.ensemble import RandomForestClassifier


class Slow(RandomForestClassifier):
    def fit(self, X, y):
        time.sleep({seconds})
        return super().fit(X, y)


def get_estimator():
    return Slow(n_estimators=50)
"""


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="report-png-") as folder:
        root = Path(folder)
        shutil.copytree(EXAMPLE, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("events"))
        for seconds in (2, 4, 6, 3):
            submission = root / "submissions" / f"forest_{seconds}s"
            submission.mkdir()
            (submission / "estimator.py").write_text(textwrap.dedent(SLOW.format(seconds=seconds)))
        event = load_event_config(root / "config.yml")
        Dispatcher(event, LogReporter()).run()
        store = Store(event.store_path)
        try:
            data = report_data(event, store)
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
