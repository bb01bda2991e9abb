"""``validate``, ``submit``, ``dispatch``, ``status``, ``leaderboard``."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click
import yaml

from ramp_fleet.cli.common import config_argument, deployment_dir_option, load
from ramp_fleet.errors import UsageError
from ramp_fleet.faults import cleanups
from ramp_fleet.text import strict_json, strict_json_text, visible

if TYPE_CHECKING:
    from collections.abc import Callable

    from ramp_fleet.config import EventConfig
    from ramp_fleet.dispatcher import Summary
    from ramp_fleet.ramp_board.sync import BoardSync as RampBoard
    from ramp_fleet.store.fair import Forecast


@click.command()
@config_argument
def validate(config: Path) -> None:
    """Check CONFIG and print it resolved (secrets masked), and how submissions are
    isolated here (bubblewrap is tried for real). Contacts nothing."""
    from ramp_fleet import isolation

    event = load(config)
    described = {**event.describe(), "isolation": isolation.describe(event, _runs_here(event))}
    click.echo(yaml.safe_dump(described, sort_keys=False, width=1000).rstrip())
    _isolation_at_start(event)


def _runs_here(event: EventConfig) -> bool:
    """Whether the event's runs start on this machine (else on instances or Dask hosts)."""
    from ramp_fleet.workers import worker_class

    return bool(getattr(worker_class(event.worker_type), "runs_on_this_machine", True))


def _isolation_at_start(event: EventConfig) -> None:
    """One warning line when submissions will not be isolated; exit 2 when they must be."""
    from ramp_fleet.isolation import start_check

    warning = start_check(event, _runs_here(event))
    if warning:
        click.echo(f"warning: {warning}", err=True)


@click.command()
@config_argument
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", help="Submission name (default: the folder's name).")
@click.option("--team", help="The team it is from: the fair queue runs the first submissions "
                             "of every team before a team's tenth (default: a team of its own).")
def submit(config: Path, path: Path, name: str | None, team: str | None) -> None:
    """Copy the submission folder PATH into the event as a new submission."""
    from ramp_fleet.sources import submit as add_submission
    from ramp_fleet.store import Store

    event = load(config)
    if not path.exists():
        raise UsageError(f"{path}: no such folder")
    store = Store(event.store_path)
    try:
        added = add_submission(event, store, path, name, team)
    finally:
        store.close()
    click.echo(f"submitted {added!r} to event {event.event_name!r}")


#: Exit status of a dispatch an operator's signal stopped (as a shell reports Ctrl-C).
INTERRUPTED = 130


@contextmanager
def _stop_on_signals(request_stop: Any) -> Iterator[None]:
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: request_stop())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.command()
@click.argument("configs", nargs=-1, required=True, type=click.Path(path_type=Path),
                metavar="CONFIG...")
@deployment_dir_option
@click.option("--ramp-board", "ramp_board", is_flag=True,
              help="Serve the event from ramp-board's database (as store.backend: ramp-board).")
@click.option("--deployment-config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="ramp-board's config.yml, with the database [default: store.deployment_config, "
                   "whose default is <deployment_dir>/config.yml].")
@click.option("--event", "named", multiple=True, metavar="NAME",
              help="With a deployment folder: serve this event of events/ (repeatable) "
                   "[default: all of them].")
@click.option("--slots", type=click.IntRange(min=1), default=None,
              help="Several events: the slots of each worker kind they share [default: the "
                   "largest n_workers among them].")
def dispatch(configs: tuple[Path, ...], ramp_board: bool, deployment_config: Path | None,
             named: tuple[str, ...], slots: int | None) -> None:
    """Train and score every new submission of the event.

    Ctrl-C once: launch nothing new and finish the running submissions;
    twice: stop them now (they will run again next time). On a ramp-board
    site the submissions come from its database and every state and score
    goes back there (a drop-in for `ramp-launch dispatcher`).

    Several events share one pool of slots per worker kind: give their configs,
    or a ramp-board deployment folder (every event under events/, or the
    --event ones; events added to or removed from it are picked up as it runs).
    """
    if len(configs) == 1 and not configs[0].is_dir():
        if named or slots is not None:
            raise UsageError(f"{'--event' if named else '--slots'}: for several events (a "
                             "deployment folder, or several configs), not one config")
        _dispatch_one(configs[0], ramp_board, deployment_config)
    else:
        _dispatch_fleet(configs, ramp_board, deployment_config, named, slots)


def _prepare(event: EventConfig, ramp_board: bool,
             deployment_config: Path | None) -> RampBoard | None:
    """What an event needs before it is served: its ramp-board connection (if it is served
    from ramp-board's database), its isolation checked and said."""
    board = None
    if ramp_board or event.store.backend == "ramp-board":
        from ramp_fleet.ramp_board.sync import connect

        board = connect(event, deployment_config)  # its helper loads while the rest starts
    try:
        _isolation_at_start(event)  # before anything runs: required may refuse to start
        from ramp_fleet.isolation import isolated_line

        line = isolated_line(event, _runs_here(event))
        if line:
            click.echo(line)
        if board is not None:
            earlier = board.set_aside_earlier_life(event.store_path)
            if earlier:
                click.echo(f"note: {earlier}", err=True)
    except BaseException:
        if board is not None:
            cleanups(("closing ramp-board's connection", board.close))
        raise
    return board


def _dispatch_one(config: Path, ramp_board: bool, deployment_config: Path | None) -> None:
    from ramp_fleet.dispatcher import Dispatcher
    from ramp_fleet.progress import make_reporter

    event = load(config)
    board = _prepare(event, ramp_board, deployment_config)
    reporter = None
    try:
        reporter = make_reporter()
        dispatcher = Dispatcher(event, reporter, listeners=[board] if board else [], source=board)
        with _stop_on_signals(dispatcher.request_stop):
            summary = dispatcher.run()
    finally:
        cleanups(*([("stopping the live view", reporter.close)] if reporter else []),
                 *([("closing ramp-board's connection", board.close)] if board else []))
    click.echo(_summary_line(summary))
    if dispatcher.interrupted:
        sys.exit(INTERRUPTED)
    if summary.total == 0 and board is not None:
        click.echo(f"warning: event {event.event_name!r} has no submissions to train in "
                   f"ramp-board's database {board.client.where}", err=True)
    elif summary.total == 0:
        click.echo(_no_submissions_warning(event), err=True)


def _summary_line(summary: Summary) -> str:
    return (f"{summary.scored} scored, {summary.training_error} training errors, "
            f"{summary.checking_error} checking errors, {summary.waiting} waiting")


def _dispatch_fleet(paths: tuple[Path, ...], ramp_board: bool, deployment_config: Path | None,
                    named: tuple[str, ...], slots: int | None) -> None:
    """Several events on shared slots (:mod:`ramp_fleet.fleet`)."""
    from ramp_fleet.dispatcher import Dispatcher
    from ramp_fleet.fleet import EventsFolder, Fleet
    from ramp_fleet.pool import SlotPool
    from ramp_fleet.progress import LogReporter

    folder = None
    if len(paths) == 1:
        folder = EventsFolder(paths[0], frozenset(named))
        found = folder.configs()
        missing = sorted(set(named) - set(found))
        if missing:
            raise UsageError(f"{paths[0] / 'events'}: no {missing[0]}/config.yml (--event)")
        if not found:
            raise UsageError(f"{paths[0] / 'events'}: no event (<name>/config.yml) to serve")
        configs = list(found.values())
    else:
        folders = [path for path in paths if path.is_dir()]
        if folders:
            raise UsageError(f"{folders[0]}: a deployment folder is served alone, not beside "
                             "configs")
        if named:
            raise UsageError("--event: names the events of a deployment folder")
        configs = list(paths)
    events = [load(config) for config in configs]  # every config checked before any runs
    stores: dict[Path, str] = {}
    for event in events:
        other = stores.setdefault(event.store_path.resolve(), event.display)
        if other != event.display:
            raise UsageError(f"{event.display}: the same event as {other} (one store, "
                             f"{event.store_path})")

    def make(event: EventConfig, pool: SlotPool) -> tuple[Dispatcher, Callable[[], None]]:
        board = _prepare(event, ramp_board, deployment_config)
        dispatcher = Dispatcher(event, LogReporter(prefix=event.event_name),
                                listeners=[board] if board else [], source=board, pool=pool)
        return dispatcher, (board.close if board is not None else (lambda: None))

    fleet = Fleet(load, make, say=lambda text: click.echo(text, err=True), slots=slots)
    with _stop_on_signals(fleet.request_stop):
        fleet.serve(events, folder)
    status = 0
    for served in fleet.served.values():
        name = served.event.event_name
        if served.summary is not None:
            click.echo(f"{name}: {_summary_line(served.summary)}")
        elif served.error is not None:
            status = max(status, 2 if isinstance(served.error, UsageError) else 1)
    if fleet.interrupted:
        sys.exit(INTERRUPTED)
    if status:
        sys.exit(status)


def _no_submissions_warning(event: EventConfig) -> str:
    """Why a folder-served event had nothing to train, the sandbox case named."""
    folder = event.dirs.submissions
    where = f"{folder.path} (from {folder.source})"
    start = f"warning: event {event.event_name!r} has no submissions"
    sandbox = event.ramp.sandbox_dir
    if not event.ramp.sandbox_as_submission and (folder.path / sandbox).is_dir():
        return (f"{start}: the {sandbox!r} folder in {where} is ramp.sandbox_dir, trained only "
                "when ramp.sandbox_as_submission is true")
    return f"{start}: nothing in {where}"


#: What ``status --json`` prints of each submission, in this order (scores last).
STATUS_JSON_COLUMNS = ("name", "team", "state", "attempts", "worker", "submitted", "started",
                       "finished", "returncode", "error", "peak_memory_mb", "score", "scores")
#: What ``status`` shows in its table (with the queue's forecast after ``state``).
STATUS_COLUMNS = ("name", "team", "state", "attempts", "worker", "finished", "returncode",
                  "score", "error")
#: The forecast's columns: a waiting submission's place in the queue (1: next) and its
#: estimated start (from the median of the recent runs' lengths).
FORECAST_COLUMNS = ("queue", "starts in")
@click.command()
@config_argument
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def status(config: Path, as_json: bool) -> None:
    """Show the state of every submission of the event, and where the waiting ones stand."""
    from ramp_fleet.store import Store
    from ramp_fleet.store.fair import QueuePolicy

    event = load(config, runtime_files=False)
    store = Store(event.store_path)
    try:
        queue = store.queue_forecast(event.n_slots, QueuePolicy.of(event.dispatcher))
        if as_json:
            _status_json(store.rows(STATUS_JSON_COLUMNS), queue, sys.stdout)
            return
        at = STATUS_COLUMNS.index("state") + 1
        rows = []
        for row in store.rows(STATUS_COLUMNS):
            cells = [_cell(value, column) for value, column in zip(row, STATUS_COLUMNS,
                                                                   strict=True)]
            rows.append(cells[:at] + _forecast_cells(queue.get(row[0])) + cells[at:])
    finally:
        store.close()
    _table([*STATUS_COLUMNS[:at], *FORECAST_COLUMNS, *STATUS_COLUMNS[at:]], rows)


def _forecast_cells(place: Forecast | None) -> list[str]:
    if place is None:
        return ["", ""]
    if place.starts_in is None:
        return [str(place.position), ""]
    return [str(place.position), "now" if place.starts_in < 1 else f"~{_duration(place.starts_in)}"]


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _status_json(rows: Iterator[tuple[Any, ...]], queue: dict[str, Forecast],
                 out: TextIO) -> None:
    """A JSON array, one submission a line, written as the rows are read (in chunks): the
    scores go out as the store keeps them (JSON text), never parsed and dumped again. A
    waiting submission has its ``queue_position`` and ``starts_in`` (seconds, or null)."""
    keys = STATUS_JSON_COLUMNS[:-1]
    chunk = ["["]
    separator = "\n"
    for row in rows:
        fields = dict(zip(keys, row, strict=False))
        place = queue.get(row[0])
        if place is not None:
            fields["queue_position"] = place.position
            fields["starts_in"] = (None if place.starts_in is None
                                   else round(place.starts_in, 1))
        text = strict_json(fields)
        chunk.append(f"{separator}{text[:-1]}, \"scores\": {strict_json_text(row[-1])}}}")
        separator = ",\n"
        if len(chunk) >= 1000:
            out.write("".join(chunk))
            chunk.clear()
    chunk.append("\n]\n")
    out.write("".join(chunk))


@click.command()
@config_argument
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def leaderboard(config: Path, as_json: bool) -> None:
    """Rank the scored submissions by the problem's official score (bagged, test)."""
    from ramp_fleet.leaderboard import build_leaderboard

    event = load(config)
    board = build_leaderboard(event)
    if as_json:
        click.echo(strict_json(board.as_json(), indent=2))
        return
    with_memory = any(entry.peak_memory_mb is not None for entry in board.entries)
    columns = ["rank", "name", *board.score_names, *(["peak MB"] if with_memory else [])]
    rows = [[str(entry.rank), entry.name, *(_number(entry.scores.get(s)) for s in board.score_names),
             *([_number(entry.peak_memory_mb)] if with_memory else [])]
            for entry in board.entries]
    direction = "lower is better" if board.lower_is_better else "higher is better"
    click.echo(f"{event.event_name}: ranked by {board.official} on the test set ({direction})")
    _table(columns, rows)


def _cell(value: Any, column: str) -> str:
    if value is None:
        return ""
    if column == "error":
        lines = visible(str(value)).strip().splitlines()
        return (lines[-1] if lines else "")[:70]
    if column in ("submitted", "started", "finished"):
        return str(value).replace("T", " ").removesuffix("+00:00")
    if isinstance(value, float):
        return _number(value)
    return str(value)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _table(columns: list[str], rows: list[list[str]]) -> None:
    """Columns aligned; on a terminal through rich (bold header, fitted to the width), off
    one (a pipe, a log: thousands of rows) as plain text, never folding a row across lines."""
    if not sys.stdout.isatty():
        widths = [max([len(column), *(len(row[i]) for row in rows)]) for i, column in
                  enumerate(columns)]
        sys.stdout.write("".join(
            "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
            .rstrip() + "\n" for cells in [columns, *rows]))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold")
    for column in columns:
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(*(Text(visible(cell)) for cell in row))  # shown as text, never as markup
    Console().print(table)
