"""The report's figures, drawn with Bokeh (imported only when a page is rendered).

Sizes matter at 10 000 runs: the timeline is one ``ColumnDataSource`` of
compact columns (int8/int16/int32 indexes) shared by the four phase
renderers ``timeline-<phase>``. Its five instants are float64 epoch
milliseconds, drawn as they are: a float32 column shifted by the epoch in
the browser (``dodge``) is computed in float32 there, whose step at today's
epoch is 131 seconds, and snapped every bar to that grid. Submission names are stored
once, in the ``submission-names`` source, and looked up by index for the
tooltips. Canvas output, not WebGL: headless browsers and remote desktops
have no GPU, and canvas draws 10 000 bars fast enough.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from bokeh.embed import components
from bokeh.models import (
    ColumnDataSource,
    CustomJSHover,
    FixedTicker,
    HoverTool,
    LinearColorMapper,
    Range1d,
    SingleIntervalTicker,
)
from bokeh.plotting import figure
from bokeh.resources import Resources

from ramp_fleet.report.build import Report
from ramp_fleet.report.stats import log_scale
from ramp_fleet.report.timeline import OUTCOMES, PHASES

#: Up to this many submissions, the peak memory bars are labelled with their names.
NAMED_BARS = 20
#: Per phase: the colour of a run that went well (or still runs), failed, or ran again.
PHASE_COLOURS = {
    "queue_wait": ("#c7c7c7", "#f4a6a6", "#fdd0a2"),
    "setup": ("#9ecae1", "#e77c7c", "#fdae6b"),
    "training": ("#3182bd", "#d62728", "#e6550d"),
    "collection": ("#74c476", "#a50f15", "#a63603"),
}
_OUTCOME_KIND = {"running": 0, "scored": 0, "training_error": 1, "checking_error": 1,
                 "retry": 2, "interrupted": 2}
#: Queue waits are thin lead-ins: the slot was busy with other runs meanwhile.
_BAR_HEIGHT = {"queue_wait": 0.3, "setup": 0.8, "training": 0.8, "collection": 0.8}
_TOOLS = "xpan,xwheel_zoom,box_zoom,reset,save"
_DURATION_JS = """
const d = source.data, i = special_vars.index;
const f = (s) => s < 120 ? s.toFixed(0) + " s" : s < 7200 ? (s / 60).toFixed(1) + " min"
                                                 : (s / 3600).toFixed(1) + " h";
const t = [d.t0[i], d.t1[i], d.t2[i], d.t3[i], d.t4[i]].map((ms) => ms / 1000);
return "wait " + f(t[1] - t[0]) + ", setup " + f(t[2] - t[1]) + ", training " + f(t[3] - t[2])
       + ", collection " + f(t[4] - t[3]);
"""


def bokeh_js() -> str:
    """BokehJS itself, inlined (only the core bundle: no widgets, tables, GL or MathJax)."""
    return str(Resources(mode="inline", components=["bokeh"]).render_js())


def figures(report: Report) -> tuple[str, dict[str, str]]:
    """The ``<script>`` and one ``<div>`` per figure that has data to show."""
    names = ColumnDataSource({"name": list(report.submission_names)}, name="submission-names")
    name_of = CustomJSHover(args={"names": names}, code="return names.data.name[value]")
    plots: dict[str, Any] = {}
    if report.timeline.n_runs:
        plots["timeline"] = _timeline(report, name_of)
    if report.training.seconds.size:
        plots["training"] = _training(report)
    if report.peak_memory.submissions:
        plots["memory"] = _memory(report, name_of)
    if not plots:
        return "", {}
    script, divs = components(plots)
    return script, dict(divs)


def _timeline(report: Report, name_of: CustomJSHover) -> Any:
    timeline = report.timeline
    start_ms = timeline.start * 1000
    data: dict[str, Any] = {"lane": timeline.lane, "outcome": timeline.outcome,
                            "sub": timeline.submission, "attempt": timeline.attempt}
    for i in range(5):  # float64 epoch milliseconds: see the module docstring
        data[f"t{i}"] = (timeline.start + timeline.edges[:, i]) * 1000.0
    source = ColumnDataSource(data, name="timeline-source")
    n_lanes = len(timeline.slots)
    span_ms = float(timeline.edges.max()) * 1000 or 60_000.0
    plot = figure(name="timeline", x_axis_type="datetime", height=max(200, 22 * n_lanes + 90),
                  sizing_mode="stretch_width", tools=_TOOLS, output_backend="canvas",
                  x_range=Range1d(start=start_ms - 0.01 * span_ms, end=start_ms + 1.01 * span_ms),
                  y_range=Range1d(start=n_lanes - 0.5, end=-0.5))
    plot.yaxis.ticker = FixedTicker(ticks=list(range(n_lanes)))
    plot.yaxis.major_label_overrides = {i: slot for i, slot in enumerate(timeline.slots)}
    plot.ygrid.grid_line_color = None
    renderers: list[Any] = []
    for i, phase in enumerate(PHASES):
        palette = [PHASE_COLOURS[phase][_OUTCOME_KIND[outcome]] for outcome in OUTCOMES]
        mapper = LinearColorMapper(palette=palette, low=-0.5, high=len(OUTCOMES) - 0.5)
        renderers.append(plot.hbar(
            y="lane", left=f"t{i}", right=f"t{i + 1}",
            height=_BAR_HEIGHT[phase], source=source, name=f"timeline-{phase}",
            line_color=None if phase == "queue_wait" else "white", line_width=0.5,
            fill_color={"field": "outcome", "transform": mapper},
        ))
    outcome_of = CustomJSHover(args={"outcomes": list(OUTCOMES)}, code="return outcomes[value]")
    durations = CustomJSHover(args={"source": source}, code=_DURATION_JS)
    plot.add_tools(HoverTool(
        renderers=renderers,
        tooltips=[("submission", "@sub{name}"), ("attempt", "@attempt"),
                  ("outcome", "@outcome{outcome}"), ("phases", "@t0{phases}")],
        formatters={"@sub": name_of, "@outcome": outcome_of, "@t0": durations},
    ))
    plot.toolbar.active_scroll = None
    return plot


def _count_step(most: int) -> int:
    """Whole-number ticks for counts of attempts: 1, 2, 5, 10, 20, 50..."""
    k = 0
    while most / ((1, 2, 5)[k % 3] * 10 ** (k // 3)) > 8:
        k += 1
    return (1, 2, 5)[k % 3] * 10 ** (k // 3)


def _training(report: Report) -> Any:
    training = report.training
    log = log_scale(training)
    plot = figure(name="training-time", x_axis_type="log" if log else "linear", height=260,
                  sizing_mode="stretch_width",
                  y_range=Range1d(start=0, end=1.05 * max(int(training.counts.max()), 1)),
                  tools="xpan,box_zoom,reset,save",
                  x_axis_label="training time (s, log scale)" if log else "training time (s)",
                  y_axis_label="attempts", output_backend="canvas")
    plot.yaxis.ticker = SingleIntervalTicker(interval=_count_step(int(training.counts.max())))
    plot.yaxis.minor_tick_line_color = None
    source = ColumnDataSource({"left": training.edges[:-1], "right": training.edges[1:],
                               "count": training.counts}, name="training-source")
    bars = plot.quad(top="count", bottom=0, left="left", right="right", source=source,
                     fill_color=PHASE_COLOURS["training"][0], line_color="white", name="training-bars")
    plot.add_tools(HoverTool(renderers=[bars], tooltips=[("seconds", "@left{0,0} to @right{0,0}"),
                                                         ("attempts", "@count")]))
    return plot


def _memory(report: Report, name_of: CustomJSHover) -> Any:
    memory = report.peak_memory
    index = {name: i for i, name in enumerate(report.submission_names)}
    source = ColumnDataSource({
        "rank": np.arange(len(memory.mb), dtype=np.int32),
        "mb": np.array(memory.mb, dtype=np.float32),
        "sub": np.array([index[name] for name in memory.submissions], dtype=np.int32),
    }, name="memory-source")
    plot = figure(name="peak-memory", height=260, sizing_mode="stretch_width", tools=_TOOLS,
                  y_range=Range1d(start=0, end=1.05 * max(memory.mb)),
                  x_axis_label="submissions, highest first", y_axis_label="peak memory (MB)",
                  output_backend="canvas")
    bars = plot.vbar(x="rank", top="mb", width=0.9, source=source, line_color=None,
                     fill_color=PHASE_COLOURS["setup"][0], name="memory-bars")
    if len(memory.mb) <= NAMED_BARS:  # a few submissions: their names under their bars
        plot.xaxis.ticker = FixedTicker(ticks=list(range(len(memory.mb))))
        plot.xaxis.major_label_overrides = dict(enumerate(memory.submissions))
        plot.xaxis.major_label_orientation = 0.6 if len(memory.mb) > 6 else 0.0
    plot.add_tools(HoverTool(renderers=[bars], tooltips=[("submission", "@sub{name}"),
                                                         ("peak MB", "@mb{0,0}")],
                             formatters={"@sub": name_of}))
    plot.toolbar.active_scroll = None
    return plot
