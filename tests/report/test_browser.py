"""The report page in a real headless Chromium: it renders offline, without errors, one bar per run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ramp_fleet.config import load_event_config
from ramp_fleet.report import build_report, render_html
from ramp_fleet.report.plots import PHASE_COLOURS
from ramp_fleet.report.source import report_data
from ramp_fleet.store import Store
from ramp_fleet.store.records import RunRecord
from tests.report.browser import colour_spread, misplaced, open_report
from tests.report.synthetic import fill_store, synthetic_event

#: A name `submit` accepts: markup in it must stay text everywhere on the page.
HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A report of 400 synthetic runs on 8 slots (2 on AWS), and its number of run records."""
    root = tmp_path_factory.mktemp("browser")
    (root / "config.yml").write_text(
        "ramp: {problem_name: iris, event_name: browser_test}\n"
        "worker: {worker_type: aws, ami_image_name: ramp-iris, region_name: eu-west-3,\n"
        "         hourly_price: 0.0416}\n"
    )
    event = load_event_config(root / "config.yml", runtime_files=False, check_env=False)
    store = Store(event.store_path)
    try:
        synthetic = synthetic_event(400, 8, aws_slots=2, names=(HOSTILE,), seed=3)
        fill_store(store, synthetic)
        data = report_data(event, store, now=synthetic.end + 60)
    finally:
        store.close()
    html = root / "report.html"
    html.write_text(render_html(build_report(data), link_base=root), encoding="utf-8")
    return html, len(data.runs)


def test_the_page_renders_offline_with_one_bar_per_run(chromium: Path, page: tuple[Path, int],
                                                       tmp_path: Path) -> None:
    html, n_runs = page
    check = open_report(html, tmp_path / "report.png", hover=HOSTILE)
    assert check.console_errors == []
    assert check.requests == [], "the page must not load anything from the network"
    assert check.meta["n_runs"] == n_runs == 400
    assert check.bars == {f"timeline-{phase}": n_runs for phase in PHASE_COLOURS}
    # The hostile name shows as text in the tooltip; nothing ran and no element was injected.
    assert f"submission:\t{HOSTILE}" in check.tooltip and "attempt:\t1" in check.tooltip
    assert check.dialogs == [] and check.tags["img"] == 0

    colours, spread = colour_spread(tmp_path / "report.png")
    assert colours >= 50 and spread >= 10, f"blank screenshot? {colours} colours, stddev {spread:.1f}"
    from PIL import Image

    with Image.open(tmp_path / "report.png") as image:
        present = {colour for _, colour in image.convert("RGB").getcolors(maxcolors=1 << 24) or []}
    for hex_colour in (PHASE_COLOURS["training"][0], PHASE_COLOURS["training"][1]):
        rgb = tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
        assert rgb in present, f"no {hex_colour} bar drawn in the timeline"


def test_the_checks_catch_errors_and_requests(chromium: Path, page: tuple[Path, int], tmp_path: Path) -> None:
    """The page checks are not vacuous: a console error and remote loads are seen (and aborted)."""
    html, _ = page
    broken = tmp_path / "broken.html"
    broken.write_text(html.read_text().replace(
        "</body>",
        '<img src="https://127.0.0.2:9/pixel.png">'
        '<script>console.error("boom"); fetch("http://127.0.0.2:9/data.json").catch(() => {});</script>'
        "</body>",
    ))
    check = open_report(broken, tmp_path / "broken.png")
    assert "boom" in check.console_errors
    assert set(check.requests) == {"https://127.0.0.2:9/pixel.png", "http://127.0.0.2:9/data.json"}
    assert check.tags["img"] == 1


def test_the_meta_block_is_json(page: tuple[Path, int]) -> None:
    html, n_runs = page
    text = html.read_text()
    start = text.index('<script type="application/json" id="report-meta">') + len(
        '<script type="application/json" id="report-meta">')
    meta = json.loads(text[start:text.index("</script>", start)])
    assert meta["n_runs"] == n_runs and meta["event"] == "browser_test"
    assert meta["slots"] == ["aws-01", "aws-02", *(f"conda-{i:02d}" for i in range(3, 9))]


def complete_attempts(runs: list[RunRecord]) -> dict[tuple[str, int], list[float]]:
    """The five instants of every attempt that went through all of them, as recorded."""
    return {(run.submission, run.attempt): [run.queued, run.setup_start, run.launched, run.ended,
                                            run.collected]
            for run in runs if None not in (run.setup_start, run.launched, run.ended, run.collected)}


@pytest.mark.parametrize(("stretch", "hours"), [(1, (4, 12)), (40, (200, 400))],
                         ids=["6 hours", "10 days"])
def test_every_bar_of_a_long_event_is_where_its_attempt_was(
    chromium: Path, tmp_path: Path, stretch: float, hours: tuple[float, float]
) -> None:
    """Epochs of today (1.8e12 ms): a float32 column shifted by the epoch in the browser
    snaps every edge to a 131-second grid."""
    root = tmp_path / "event"
    root.mkdir()
    (root / "config.yml").write_text("ramp: {problem_name: iris, event_name: long}\n"
                                     "worker: {worker_type: conda}\n")
    event = load_event_config(root / "config.yml", runtime_files=False, check_env=False)
    store = Store(event.store_path)
    try:
        start = 1_796_000_000.0
        synthetic = synthetic_event(300, 4, seed=11, start=start, stretch=stretch)
        assert hours[0] < (synthetic.end - start) / 3600 < hours[1]
        fill_store(store, synthetic)
        data = report_data(event, store, now=synthetic.end + 60)
    finally:
        store.close()
    html = root / "report.html"
    html.write_text(render_html(build_report(data), link_base=root), encoding="utf-8")
    check = open_report(html, tmp_path / "long.png")
    expected = complete_attempts(list(data.runs))
    placed = misplaced(check.drawn, expected)
    print(f"{(synthetic.end - start) / 3600:.0f} h: {placed.bars} bars, "
          f"worst {placed.worst_ms:.3f} ms, {placed.worst_px:.3f} px")
    assert placed.bars >= 4 * len(expected) > 0
    assert placed.worst_ms <= 1.0 and placed.worst_px <= 1.0
