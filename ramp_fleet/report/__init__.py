"""The operator's report: figures from the store, one self-contained HTML page, JSON.

``build_report(data)`` computes every figure from a :class:`ReportData`;
``render_html(report)`` draws the page (Bokeh is imported there, not here);
``as_json(report)`` gives the same figures as plain data.
"""

from ramp_fleet.report.build import Report, build_report
from ramp_fleet.report.data import ReportData, SubmissionSummary
from ramp_fleet.report.export import as_json
from ramp_fleet.report.page import render_html

__all__ = ["Report", "ReportData", "SubmissionSummary", "as_json", "build_report", "render_html"]
