"""The report's figures, from a store filled through its own methods (tests/report/small_event.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.stub import Stubber

from ramp_fleet.config import EventConfig, load_event_config
from ramp_fleet.report import ReportData, as_json, build_report
from ramp_fleet.report.prices import API_SOURCE, CONFIG_SOURCE, NO_SOURCE, SPOT_NOTE, PriceList
from ramp_fleet.report.source import report_data, with_prices
from ramp_fleet.report.stats import log_scale
from ramp_fleet.store import Store
from tests.conftest import EventFactory
from tests.report import small_event
from tests.report.pricing_answers import expected_request, pricing_client, product
from tests.report.small_event import NOW, ON_DEMAND_SECONDS, SPOT_SECONDS


@pytest.fixture
def event(make_event: EventFactory) -> EventConfig:
    config = make_event(worker={"hourly_price": 0.05})
    return load_event_config(config, runtime_files=False, check_env=False)


@pytest.fixture
def data(event: EventConfig) -> ReportData:
    store = Store(event.store_path)
    try:
        small_event.fill(store)
        return report_data(event, store, now=NOW)
    finally:
        store.close()


def offline(tmp_path: Path) -> PriceList:
    def no_api() -> Any:
        raise ConnectionError("no network in this test")

    return PriceList(no_api, tmp_path / "cache")


def test_counts_and_success_rate(data: ReportData) -> None:
    report = build_report(data)
    assert report.counts == {"new": 1, "sent_to_training": 0, "training": 1, "tested": 0, "scored": 2,
                             "checking_error": 1, "training_error": 2}
    assert report.success_rate == pytest.approx(2 / 5)
    assert report.runs_by_outcome == {"running": 1, "scored": 2, "training_error": 2, "checking_error": 1,
                                      "retry": 1, "interrupted": 0}


def test_failures_are_grouped_by_their_last_line(data: ReportData, event: EventConfig) -> None:
    groups = build_report(data).failures
    assert [(g.outcome, g.runs, g.submissions) for g in groups] == [
        ("training_error", 2, ("beta", "gamma")),
        ("checking_error", 1, ("epsilon",)),
        ("retry", 1, ("delta",)),
    ]
    message = "ValueError: X has {} features, but LogisticRegression is expecting {} features as input."
    assert groups[0].key == message.format("N", "N")
    assert groups[0].title == message.format(3, 4)
    assert groups[0].example.startswith("Traceback") and "submissions/beta/estimator.py" in groups[0].example
    logs = as_json(build_report(data))["failures"][0]["submissions"]
    assert logs == [{"name": "beta", "log": str(event.dirs.logs.path / "beta" / "log")},
                    {"name": "gamma", "log": str(event.dirs.logs.path / "gamma" / "log")}]


def test_the_timeline_fills_missing_steps_and_orders_slots_naturally(data: ReportData) -> None:
    timeline = build_report(data).timeline
    assert timeline.slots == ("aws-1", "aws-2", "aws-10")
    assert timeline.n_runs == 7 and timeline.start == small_event.T
    durations = timeline.durations()
    epsilon = 5  # failed at setup: no training, no launch
    assert durations[epsilon].tolist() == [998, 3, 0, 1]
    eta = 6  # still training: until the report's time
    assert durations[eta].tolist() == [896, 60, NOW - small_event.T - 960, 0]
    assert timeline.trained.tolist() == [True, True, True, True, True, False, False]


def test_training_times_and_peak_memory(data: ReportData) -> None:
    report = build_report(data)
    assert sorted(report.training.seconds.tolist()) == [69, 300, 300, 300, 600]
    assert int(report.training.counts.sum()) == 5
    assert report.phases["training"] is not None
    assert report.peak_memory.submissions == ("beta", "alpha", "gamma")
    assert report.peak_memory.mb == (1500.0, 900.0, 300.0)
    # delta's two attempts ran unmeasured, epsilon's setup failed, eta is still running.
    assert report.peak_memory.without == {"never_ran": 1, "running": 1, "not_measured": 2}
    # Five training times within a factor of ten: a few even bins, not forty slivers.
    assert report.training.edges.size - 1 == 3 and not log_scale(report.training)
    by_slot = {s.slot: s for s in report.slots}
    assert (by_slot["aws-1"].runs, by_slot["aws-1"].failed) == (3, 2)
    assert by_slot["aws-1"].busy_seconds == pytest.approx((680 - 10) + (1000 - 681) + (1005 - 1001))


def test_aws_cost_with_the_price_list_api(data: ReportData, tmp_path: Path) -> None:
    client = pricing_client()
    with Stubber(client) as stub:
        stub.add_response("get_products", {"PriceList": [product("t3.medium", "eu-west-3", 0.0472)]},
                          expected_request("t3.medium", "eu-west-3"))
        priced = with_prices(data, PriceList(lambda: client, tmp_path / "cache"))
        stub.assert_no_pending_responses()
    aws = build_report(priced).aws
    assert aws is not None
    assert aws.n_instances == 5
    assert aws.hours["spot"] == pytest.approx(SPOT_SECONDS / 3600)
    assert aws.hours["on-demand"] == pytest.approx(ON_DEMAND_SECONDS / 3600)
    total = 0.0472 * (SPOT_SECONDS + ON_DEMAND_SECONDS) / 3600
    assert aws.total_usd == pytest.approx(total)
    assert [(p.instance_type, p.region, p.source) for p in aws.prices] == [
        ("t3.medium", "eu-west-3", API_SOURCE)]
    assert SPOT_NOTE in aws.notes
    # i-a served alpha (setup to collection: 670 s) and gamma (319 s): its cost is shared in proportion.
    cost = {c.submission: c for c in aws.per_submission}
    instance_a = 0.0472 * 1080 / 3600
    assert cost["alpha"].usd == pytest.approx(instance_a * 670 / 989)
    assert cost["gamma"].usd == pytest.approx(instance_a * 319 / 989)
    assert (cost["delta"].instances, cost["delta"].usd) == (2, pytest.approx(0.0472 * (129 + 370) / 3600))
    assert sum(c.usd or 0 for c in aws.per_submission) == pytest.approx(total)
    assert aws.instances_per_submission == {1: 4, 2: 1}
    assert aws.per_submission[0].submission == "eta"  # running for 900 s: the costliest so far


def test_aws_cost_falls_back_to_the_configured_price(data: ReportData, tmp_path: Path) -> None:
    aws = build_report(with_prices(data, offline(tmp_path))).aws
    assert aws is not None
    assert [(p.usd_per_hour, p.source) for p in aws.prices] == [(0.05, CONFIG_SOURCE)]
    assert aws.total_usd == pytest.approx(0.05 * (SPOT_SECONDS + ON_DEMAND_SECONDS) / 3600)


def test_without_any_price_the_cost_is_unknown_and_said_so(data: ReportData, tmp_path: Path) -> None:
    from dataclasses import replace

    aws = build_report(with_prices(replace(data, hourly_price=None), offline(tmp_path))).aws
    assert aws is not None
    assert aws.total_usd is None and [p.source for p in aws.prices] == [NO_SOURCE]
    assert aws.unpriced_hours == pytest.approx((SPOT_SECONDS + ON_DEMAND_SECONDS) / 3600)
    assert all(cost.usd is None for cost in aws.per_submission)
    assert any("worker.hourly_price" in note for note in aws.notes)


def test_the_json_has_the_same_figures(data: ReportData, tmp_path: Path) -> None:
    report = build_report(with_prices(data, offline(tmp_path)))
    figures = json.loads(json.dumps(as_json(report)))  # plain JSON types only
    assert figures["event"] == "iris_test"
    assert figures["generated_at"] == "2025-06-15T15:36:40+00:00"
    assert figures["submissions"] == {"total": 7, "by_state": report.counts, "success_rate": 0.4}
    assert figures["runs"]["total"] == 7 and figures["runs"]["by_outcome"]["retry"] == 1
    assert figures["runs"]["phases_s"]["setup"]["max"] == 60
    assert [s["slot"] for s in figures["slots"]] == ["aws-1", "aws-2", "aws-10"]
    assert figures["training_time_s"]["quantiles"]["median"] == 300
    assert sum(figures["training_time_s"]["histogram"]["counts"]) == 5
    assert [g["runs"] for g in figures["failures"]] == [2, 1, 1]
    assert figures["peak_memory_mb"][0] == {"submission": "beta", "peak_memory_mb": 1500.0}
    aws = figures["aws"]
    assert aws["instances"] == 5 and aws["instances_per_submission"] == {"1": 4, "2": 1}
    assert aws["total_usd"] == pytest.approx(report.aws.total_usd)  # type: ignore[union-attr]
    assert aws["prices"] == [{"instance_type": "t3.medium", "region": "eu-west-3", "usd_per_hour": 0.05,
                              "source": CONFIG_SOURCE, "hours": pytest.approx(2849 / 3600)}]


def test_an_event_without_runs_has_empty_figures(event: EventConfig) -> None:
    report = build_report(ReportData("empty", NOW, [], [], [], event.dirs.logs.path))
    assert report.timeline.n_runs == 0 and report.aws is None and report.success_rate is None
    assert report.training.seconds.size == 0 and report.failures == ()
    figures = as_json(report)
    assert figures["runs"]["total"] == 0 and figures["aws"] is None
    assert np.isfinite(report.timeline.start)
