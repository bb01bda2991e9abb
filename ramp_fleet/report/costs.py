"""AWS instance-hours and the estimated cost of each submission.

An instance's cost is its lifetime (launch to termination, or to now for one
still running) times its hourly price. A reused instance serves several runs:
its cost is shared between them in proportion to the time each spent on it
(setup to collection), so the submissions' costs add up to the total.
Instances the store has no record of, but that runs name, are counted from
their runs' first setup to their last collection.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from ramp_fleet.report.data import ReportData
from ramp_fleet.report.prices import CONFIG_SOURCE, NO_SOURCE, SPOT_NOTE, HourlyPrice
from ramp_fleet.store.records import Outcome, RunRecord

SPOT = "spot"
ON_DEMAND = "on-demand"


@dataclass(frozen=True)
class Machine:
    """One instance with a known lifetime."""

    instance_id: str
    instance_type: str
    market: str
    region: str | None
    hours: float


@dataclass(frozen=True)
class PriceUsed:
    instance_type: str
    region: str | None
    usd_per_hour: float | None
    source: str
    hours: float


@dataclass(frozen=True)
class SubmissionCost:
    submission: str
    instances: int
    hours: float
    usd: float | None


@dataclass(frozen=True)
class AwsCosts:
    n_instances: int
    #: Instance-hours by market (``spot``, ``on-demand``).
    hours: dict[str, float]
    #: Sum over the priced instances; ``None`` when none has a price.
    total_usd: float | None
    #: Hours of instance types with no price at all (not in the total).
    unpriced_hours: float
    #: Cost of instances that served no recorded run (in the total, in no submission).
    unattributed_usd: float
    prices: tuple[PriceUsed, ...]
    #: Most expensive first.
    per_submission: tuple[SubmissionCost, ...]
    #: How many submissions used 1, 2, 3... instances.
    instances_per_submission: dict[int, int]
    notes: tuple[str, ...]


def machines(data: ReportData) -> list[Machine]:
    """Every instance of the event with its lifetime in hours."""
    found: list[Machine] = []
    known = set()
    for record in data.instances:
        end = record.terminated if record.terminated is not None else data.generated_at
        found.append(Machine(record.instance_id, record.instance_type, record.market,
                             record.region or data.region, max(end - record.launched, 0.0) / 3600))
        known.add(record.instance_id)
    spans: dict[str, list[RunRecord]] = defaultdict(list)
    for run in data.runs:
        if run.instance_id and run.instance_id not in known:
            spans[run.instance_id].append(run)
    for instance_id, runs in spans.items():
        start = min(_start(run) for run in runs)
        end = max(_end(run, data.generated_at) for run in runs)
        first = runs[0]
        found.append(Machine(instance_id, first.instance_type or "unknown", first.market or ON_DEMAND,
                             data.region, max(end - start, 0.0) / 3600))
    return found


def aws_costs(data: ReportData) -> AwsCosts | None:
    """The AWS figures, or ``None`` when no run of the event used an instance."""
    fleet = machines(data)
    if not fleet:
        return None
    prices = {(m.instance_type, m.region): _price(data, m.instance_type, m.region) for m in fleet}
    hours = {SPOT: 0.0, ON_DEMAND: 0.0}
    cost: dict[str, float | None] = {}
    hours_by_pair: dict[tuple[str, str | None], float] = defaultdict(float)
    for machine in fleet:
        hours[SPOT if machine.market == SPOT else ON_DEMAND] += machine.hours
        hours_by_pair[(machine.instance_type, machine.region)] += machine.hours
        usd = prices[(machine.instance_type, machine.region)].usd
        cost[machine.instance_id] = None if usd is None else usd * machine.hours
    shares, unattributed = _shares(data, fleet, cost)
    priced = [usd for usd in cost.values() if usd is not None]
    per_submission = sorted(shares.values(), key=lambda s: (-(s.usd or 0.0), s.submission))
    notes = [SPOT_NOTE] if hours[SPOT] > 0 else []
    if any(price.source == NO_SOURCE for price in prices.values()):
        notes.append("some instance types have no price: set worker.hourly_price to count them")
    return AwsCosts(
        n_instances=len(fleet),
        hours=hours,
        total_usd=sum(priced) if priced else None,
        unpriced_hours=sum(m.hours for m in fleet if cost[m.instance_id] is None),
        unattributed_usd=unattributed,
        prices=tuple(PriceUsed(t, r, p.usd, p.source, hours_by_pair[(t, r)])
                     for (t, r), p in sorted(prices.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))),
        per_submission=tuple(per_submission),
        instances_per_submission=dict(sorted(Counter(s.instances for s in per_submission).items())),
        notes=tuple(notes),
    )


def _price(data: ReportData, instance_type: str, region: str | None) -> HourlyPrice:
    found = data.prices.get((instance_type, region))
    if found is not None:
        return found
    if data.hourly_price is not None:
        return HourlyPrice(instance_type, region, data.hourly_price, CONFIG_SOURCE)
    return HourlyPrice(instance_type, region, None, NO_SOURCE)


def _shares(
    data: ReportData, fleet: list[Machine], cost: dict[str, float | None]
) -> tuple[dict[str, SubmissionCost], float]:
    """Each submission's share of the instances it ran on; and the cost nobody ran on."""
    runs_on: dict[str, list[RunRecord]] = defaultdict(list)
    for run in data.runs:
        if run.instance_id:
            runs_on[run.instance_id].append(run)
    usd: dict[str, float | None] = {}
    hours: dict[str, float] = defaultdict(float)
    instances: dict[str, set[str]] = defaultdict(set)
    unattributed = 0.0
    for machine in fleet:
        runs = runs_on.get(machine.instance_id, [])
        instance_usd = cost[machine.instance_id]
        if not runs:
            unattributed += instance_usd or 0.0
        weights = [max(_end(run, data.generated_at) - _start(run), 0.0) for run in runs]
        total = sum(weights)
        for run, weight in zip(runs, weights, strict=True):
            share = weight / total if total > 0 else 1 / len(runs)
            name = run.submission
            instances[name].add(machine.instance_id)
            hours[name] += share * machine.hours
            so_far = usd.get(name, 0.0)
            # One unpriced instance leaves the submission's cost unknown.
            usd[name] = None if so_far is None or instance_usd is None else so_far + share * instance_usd
    result = {name: SubmissionCost(name, len(instances[name]), hours[name], usd[name]) for name in usd}
    return result, unattributed


def _start(run: RunRecord) -> float:
    return run.setup_start if run.setup_start is not None else run.queued


def _end(run: RunRecord, now: float) -> float:
    """When the run left its instance: collected, else ended, else now if it still runs."""
    for value in (run.collected, run.ended):
        if value is not None:
            return value
    if run.outcome == Outcome.RUNNING:
        return now
    return max(v for v in (run.queued, run.setup_start, run.launched) if v is not None)
