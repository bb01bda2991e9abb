"""``report``: the operator's view of an event, as one HTML page or as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ramp_fleet.cli.common import config_argument, load
from ramp_fleet.errors import UsageError
from ramp_fleet.extras import require
from ramp_fleet.text import strict_json

if TYPE_CHECKING:
    from ramp_fleet.config import EventConfig


@click.command()
@config_argument
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html"),
              show_default=True, help="Where to write the page.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the figures as JSON instead of writing the page.")
def report(config: Path, output: Path, as_json: bool) -> None:
    """Write one self-contained HTML page about the event: submissions by state, a timeline
    per worker slot, training times, failures grouped with links to their logs, peak memory,
    and AWS instance-hours and cost. It opens offline, from the file."""
    require("report", "ramp-fleet report")
    from ramp_fleet.report import as_json as report_json
    from ramp_fleet.report import build_report, render_html
    from ramp_fleet.report.prices import PriceList, pricing_client_factory
    from ramp_fleet.report.source import report_data, with_prices
    from ramp_fleet.store import Store

    event = load(config, runtime_files=False, check_env=False)
    if not event.store_path.is_file():
        raise UsageError(f"event {event.event_name!r} has no store yet ({event.store_path}): "
                         "nothing was dispatched")
    store = Store(event.store_path)
    try:
        data = report_data(event, store)
    finally:
        store.close()
    data = with_prices(data, PriceList(pricing_client_factory(lambda: _aws_session(event))))
    figures = build_report(data)
    if as_json:
        click.echo(strict_json(report_json(figures), indent=2))
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_html(figures, link_base=output.parent), encoding="utf-8")
    click.echo(f"wrote {output} ({figures.timeline.n_runs} runs, {sum(figures.counts.values())} submissions)")


def _aws_session(event: EventConfig) -> Any:
    """The AWS worker's session (its profile or keys), else the default credential chain.

    Without the aws extra the price look-up says so in its warning; the report still
    prices instances from the cache or ``hourly_price``."""
    require("aws", "the AWS Price List look-up")
    import boto3

    from ramp_fleet.aws.session import make_session
    from ramp_fleet.config.sections import AWSWorkerSection

    if isinstance(event.worker, AWSWorkerSection):
        return make_session(event.worker)
    return boto3.Session()
