"""``as_json``: the report's figures as plain JSON data, for ``ramp-fleet report --json``.

The same figures as the page, except the timeline's bars (one per attempt:
read the store for those); durations in seconds, times in ISO 8601 UTC.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ramp_fleet.report.build import Report
from ramp_fleet.report.costs import AwsCosts
from ramp_fleet.report.stats import Quantiles


def log_path(logs_dir: Path, submission: str) -> Path:
    return logs_dir / submission / "log"


def as_json(report: Report) -> dict[str, Any]:
    training = report.training
    return {
        "event": report.event,
        "generated_at": _iso(report.generated_at),
        "submissions": {"total": sum(report.counts.values()), "by_state": report.counts,
                        "success_rate": report.success_rate},
        "runs": {"total": report.timeline.n_runs, "by_outcome": report.runs_by_outcome,
                 "started": _iso(report.timeline.start) if report.timeline.n_runs else None,
                 "phases_s": {phase: _quantiles(q) for phase, q in report.phases.items()}},
        "slots": [{"slot": s.slot, "runs": s.runs, "failed": s.failed,
                   "busy_hours": s.busy_seconds / 3600, "utilisation": s.utilisation}
                  for s in report.slots],
        "training_time_s": {
            "quantiles": _quantiles(report.phases["training"] if training.seconds.size else None),
            "histogram": {"edges": [round(float(e), 3) for e in training.edges],
                          "counts": [int(c) for c in training.counts]},
        },
        "failures": [
            {"outcome": g.outcome, "excerpt": g.key, "title": g.title, "example": g.example,
             "runs": g.runs,
             "submissions": [{"name": name, "log": str(log_path(report.logs_dir, name))}
                             for name in g.submissions]}
            for g in report.failures
        ],
        "peak_memory_mb": [{"submission": name, "peak_memory_mb": mb}
                           for name, mb in zip(report.peak_memory.submissions, report.peak_memory.mb,
                                               strict=True)],
        "aws": _aws(report.aws),
        "queue": {"policy": report.queue_policy,
                  "waiting": [{"position": entry.position, "submission": entry.name,
                               "team": entry.team,
                               "starts_in_s": None if entry.starts_in is None
                               else round(entry.starts_in, 1)}
                              for entry in report.queue]},
    }


def _quantiles(q: Quantiles | None) -> dict[str, float] | None:
    return None if q is None else asdict(q)


def _aws(aws: AwsCosts | None) -> dict[str, Any] | None:
    if aws is None:
        return None
    return {
        "instances": aws.n_instances,
        "instance_hours": aws.hours,
        "total_usd": aws.total_usd,
        "unpriced_hours": aws.unpriced_hours,
        "unattributed_usd": aws.unattributed_usd,
        "prices": [asdict(price) for price in aws.prices],
        "instances_per_submission": {str(k): v for k, v in aws.instances_per_submission.items()},
        "per_submission": [asdict(cost) for cost in aws.per_submission],
        "notes": list(aws.notes),
    }


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
