"""Open a report in Debian's headless Chromium (through Playwright) and look at it.

The page is loaded from a file with every http(s)/ws(s) request aborted and
recorded (a self-contained page makes none), console errors and uncaught
exceptions collected, the timeline's bars counted from the Bokeh document
model in the page, and a screenshot taken. Never ``playwright install``: the
browser is the distribution's ``/usr/bin/chromium``.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
#: Bars per phase renderer, as BokehJS holds them, and the page's own metadata.
COUNT_BARS_JS = """() => {
  const meta = JSON.parse(document.getElementById('report-meta').textContent);
  const doc = Bokeh.documents[0];
  const bars = {};
  for (const name of meta.timeline_renderers) {
    const renderer = doc.get_model_by_name(name);
    bars[name] = renderer === null ? null : renderer.data_source.get_length();
  }
  return {meta, bars};
}"""
#: Where a submission's training bar is on screen (the timeline scrolled to the top of the window).
BAR_POSITION_JS = """(name) => {
  const doc = Bokeh.documents[0];
  const sub = doc.get_model_by_name('submission-names').data.name.indexOf(name);
  const renderer = doc.get_model_by_name('timeline-training');
  const data = renderer.data_source.data;
  const i = Array.from(data.sub).indexOf(sub);
  if (sub < 0 || i < 0) return null;
  const x = (data.t2[i] + data.t3[i]) / 2;
  const view = [...Bokeh.index.all_views()].find((v) => v.model.name === 'timeline');
  view.el.scrollIntoView({block: 'start'});
  const box = view.el.getBoundingClientRect();
  return {x: box.left + view.frame.x_scale.compute(x), y: box.top + view.frame.y_scale.compute(data.lane[i])};
}"""
#: Where BokehJS drew every bar of the timeline: each phase renderer's edges in data space
#: (epoch milliseconds, after any transform) and on screen (pixels), and two points of the
#: x scale to map one onto the other.
DRAWN_BARS_JS = """() => {
  const doc = Bokeh.documents[0];
  const views = [...Bokeh.index.all_views()];
  const plot = views.find((v) => v.model.name === 'timeline');
  const meta = JSON.parse(document.getElementById('report-meta').textContent);
  const data = doc.get_model_by_name('timeline-source').data;
  const scale = plot.frame.x_scale, a = plot.frame.x_range.start, b = plot.frame.x_range.end;
  const out = {scale: [a, b, scale.compute(a), scale.compute(b)], phases: {},
               sub: Array.from(data.sub), attempt: Array.from(data.attempt),
               names: doc.get_model_by_name('submission-names').data.name};
  for (const name of meta.timeline_renderers) {
    const renderer = doc.get_model_by_name(name);
    const glyph = views.find((v) => v.model === renderer).glyph;
    out.phases[name] = {left: Array.from(glyph.left), right: Array.from(glyph.right),
                        sleft: Array.from(glyph.sleft), sright: Array.from(glyph.sright)};
  }
  return out;
}"""
_REMOTE = re.compile(r"^(https?|wss?)://")


@dataclass
class PageCheck:
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    bars: dict[str, int | None] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    dialogs: list[str] = field(default_factory=list)
    #: Elements of the page whose tag is in ``count_tags``.
    tags: dict[str, int] = field(default_factory=dict)
    #: The timeline's tooltip over the hovered submission's bar.
    tooltip: str = ""
    #: Where the bars were drawn (see :data:`DRAWN_BARS_JS`).
    drawn: dict[str, Any] = field(default_factory=dict)


def open_report(html: Path, screenshot: Path, *, hover: str | None = None, full_page: bool = False,
                width: int = 1400, height: int = 1100, count_tags: tuple[str, ...] = ("img",)) -> PageCheck:
    """Load ``html``, check it, and screenshot it (after hovering ``hover``'s training bar, if given)."""
    from playwright.sync_api import sync_playwright

    check = PageCheck()
    with tempfile.TemporaryDirectory(prefix="report-chromium-") as profile, sync_playwright() as playwright:
        # A persistent context is the way to give Chromium a fresh, private profile folder.
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": width, "height": height},
        )
        try:
            context.route(_REMOTE, lambda route: (check.requests.append(route.request.url), route.abort()))
            page = context.pages[0] if context.pages else context.new_page()
            page.on("console", lambda message: message.type == "error"
                    and check.console_errors.append(message.text))
            page.on("pageerror", lambda error: check.console_errors.append(f"uncaught: {error}"))
            page.on("dialog", lambda dialog: (check.dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(html.resolve().as_uri(), wait_until="load")
            page.wait_for_function(
                "() => window.Bokeh && Bokeh.documents.length > 0 && Bokeh.documents[0].is_idle",
                timeout=60_000,
            )
            counted = page.evaluate(COUNT_BARS_JS)
            check.meta, check.bars = counted["meta"], counted["bars"]
            if check.meta["n_runs"]:
                check.drawn = page.evaluate(DRAWN_BARS_JS)
            if hover is not None:
                position = page.evaluate(BAR_POSITION_JS, hover)
                assert position is not None, f"no training bar of {hover!r} in the timeline"
                page.mouse.move(position["x"], position["y"])
                tip = page.locator(".bk-tooltip-content", has_text="submission")
                tip.first.wait_for(state="visible", timeout=10_000)
                check.tooltip = "\n".join(tip.all_inner_texts())
            check.tags = {tag: page.locator(tag).count() for tag in count_tags}
            page.screenshot(path=str(screenshot), full_page=full_page)
        finally:
            context.close()
    return check


@dataclass(frozen=True)
class Misplaced:
    """How far the drawn bars are from where their records put them."""

    worst_ms: float
    worst_px: float
    bars: int


def misplaced(drawn: dict[str, Any], expected: dict[tuple[str, int], list[float]]) -> Misplaced:
    """Compare every drawn bar edge with ``expected[(submission, attempt)]``: the five instants
    of the attempt (queued, setup start, launch, end, collection), epoch seconds (attempts
    not in ``expected`` are not compared)."""
    a, b, sa, sb = drawn["scale"]

    def screen(ms: float) -> float:
        return sa + (ms - a) * (sb - sa) / (b - a)

    worst_ms = worst_px = 0.0
    count = 0
    for phase, edges in enumerate(drawn["phases"].values()):
        for row, (sub, attempt) in enumerate(zip(drawn["sub"], drawn["attempt"], strict=True)):
            instants = expected.get((drawn["names"][sub], attempt))
            if instants is None:
                continue
            for side, index in (("left", phase), ("right", phase + 1)):
                want_ms = instants[index] * 1000
                worst_ms = max(worst_ms, abs(edges[side][row] - want_ms))
                worst_px = max(worst_px, abs(edges[f"s{side}"][row] - screen(want_ms)))
            count += 1
    return Misplaced(worst_ms, worst_px, count)


def colour_spread(png: Path) -> tuple[int, float]:
    """Distinct colours and mean per-channel standard deviation of an image."""
    from PIL import Image, ImageStat

    with Image.open(png) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 24) or []
        stddev = sum(ImageStat.Stat(rgb).stddev) / 3
    return len(colours), stddev
