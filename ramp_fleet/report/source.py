"""Gathering :class:`ReportData` for an event: its store's records, its config, prices."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Protocol

from ramp_fleet.config import EventConfig
from ramp_fleet.report.costs import machines
from ramp_fleet.report.data import ReportData, SubmissionSummary, Waiting
from ramp_fleet.report.prices import PriceList
from ramp_fleet.store.db import Submission
from ramp_fleet.store.fair import Forecast, QueuePolicy
from ramp_fleet.store.records import InstanceRecord, RunRecord


class RecordSource(Protocol):
    """What the report reads from a store (``ramp_fleet.store.Store`` has it)."""

    def all(self) -> list[Submission]: ...

    def runs(self) -> list[RunRecord]: ...

    def instances(self) -> list[InstanceRecord]: ...

    def queue_forecast(self, n_slots: int, policy: QueuePolicy) -> dict[str, Forecast]: ...


def report_data(event: EventConfig, store: RecordSource, now: float | None = None) -> ReportData:
    """The event's records as they are now; no price is looked up yet (see :func:`with_prices`)."""
    submissions = store.all()
    summaries = [
        SubmissionSummary(s.name, str(s.state), s.score, s.error, s.attempts, s.peak_memory_mb)
        for s in submissions
    ]
    team = {s.name: s.team for s in submissions}
    forecast = store.queue_forecast(event.n_slots, QueuePolicy.of(event.dispatcher))
    queue = sorted((Waiting(place.position, name, team.get(name), place.starts_in)
                    for name, place in forecast.items()), key=lambda entry: entry.position)
    return ReportData(
        event=event.event_name,
        generated_at=time.time() if now is None else now,
        submissions=summaries,
        runs=store.runs(),
        instances=store.instances(),
        logs_dir=event.dirs.logs.path,
        hourly_price=event.worker.hourly_price,
        region=getattr(event.worker, "region_name", None),
        queue_policy=event.dispatcher.queue,
        queue=queue,
    )


def with_prices(data: ReportData, prices: PriceList) -> ReportData:
    """``data`` with the hourly price of each (instance type, region) its instances used."""
    pairs = sorted({(m.instance_type, m.region) for m in machines(data)}, key=lambda p: (p[0], p[1] or ""))
    found = {(kind, region): prices.price(kind, region, data.hourly_price) for kind, region in pairs}
    return replace(data, prices=found)
