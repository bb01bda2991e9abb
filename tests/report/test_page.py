"""The HTML page as text: self-contained, escaped, links to the logs, and the template setup."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from ramp_fleet.report import ReportData, SubmissionSummary, build_report, render_html
from ramp_fleet.report.page import log_href
from ramp_fleet.templating import environment, render_string
from tests.report import small_event

HOSTILE = "<img src=x onerror=alert(1)>"


def small_data(logs_dir: Path) -> ReportData:
    runs = [replace(run, submission=HOSTILE) if run.submission == "beta" else run for run in small_event.RUNS]
    summaries = [SubmissionSummary(HOSTILE, "training_error", error=runs[1].error)]
    return ReportData("iris <b>event</b>", small_event.NOW, summaries, runs, small_event.INSTANCES, logs_dir,
                      hourly_price=0.05, region="eu-west-3")


def test_the_page_is_self_contained(tmp_path: Path) -> None:
    html = render_html(build_report(small_data(tmp_path / "logs")), link_base=tmp_path)
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]+src=", html), "BokehJS must be inlined, not loaded"
    assert not re.search(r"<link[^>]+href=", html)
    assert "/* BEGIN bokeh.min.js */" in html
    assert "bokeh-widgets" not in html and "bokeh-gl" not in html, "only the core bundle"
    assert 'id="report-meta"' in html and "worker.hourly_price" in html


def test_every_value_is_escaped(tmp_path: Path) -> None:
    html = render_html(build_report(small_data(tmp_path / "logs")), link_base=tmp_path)
    assert HOSTILE not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<b>event</b>" not in html and "iris &lt;b&gt;event&lt;/b&gt;: operator&#39;s report" in html


def test_utilisation_says_over_which_span_and_missing_peaks_say_why(tmp_path: Path) -> None:
    html = render_html(build_report(small_data(tmp_path / "logs")), link_base=tmp_path)
    assert "Utilisation: busy time over the 30.0 min" in html  # to the report: eta runs
    assert ("Attempts without a peak:\n1 never started training (its setup failed, or it was "
            "stopped before); 1 still running; 2 not measured") in html


def test_failures_link_to_their_logs(tmp_path: Path) -> None:
    html = render_html(build_report(small_data(tmp_path / "logs")), link_base=tmp_path)
    assert '<a href="logs/gamma/log">gamma</a>' in html
    assert '<a href="logs/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E/log">' in html
    absolute = render_html(build_report(small_data(tmp_path / "logs")))
    assert f'<a href="{(tmp_path / "logs" / "gamma" / "log").as_uri()}">gamma</a>' in absolute


def test_links_climb_out_of_the_page_folder_when_needed(tmp_path: Path) -> None:
    log = tmp_path / "events" / "e" / "logs" / "a b" / "log"
    assert log_href(log, tmp_path / "reports") == "../events/e/logs/a%20b/log"


def test_an_event_without_runs_renders_its_empty_sections(tmp_path: Path) -> None:
    data = ReportData("empty", small_event.NOW, [SubmissionSummary("a", "new")], [], [], tmp_path)
    html = render_html(build_report(data))
    assert "No run recorded yet." in html and "No failed attempt." in html
    assert "No peak memory recorded" in html and "AWS instances" not in html


def test_html_templates_are_autoescaped_and_the_others_are_not() -> None:
    autoescape = environment().autoescape
    assert callable(autoescape)
    assert autoescape("report.html.j2") is True
    assert autoescape("remote_run.sh.j2") is False and autoescape("component.yml.j2") is False
    assert render_string("{{ v }}", v="a < b && c") == "a < b && c"
