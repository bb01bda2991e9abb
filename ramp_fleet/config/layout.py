"""Where an event's folders are: ramp-board's deployment layout and its rules.

A ramp-board deployment looks like this::

    <deploy>/config.yml                    flask + sqlalchemy (the website's database)
    <deploy>/ramp-kits/<problem>/          the kit (problem.py, submissions/starting_kit)
    <deploy>/ramp-data/<problem>/data/     the data ramp-test reads
    <deploy>/events/<event>/config.yml     the event config (ramp, worker, dispatcher)
    <deploy>/events/<event>/{submissions,predictions,logs}/

The deployment folder is, in this order: the ``--deployment-dir`` option,
``ramp.deployment_dir`` (relative to the config file), ``<deploy>`` when the
event config sits at ``<deploy>/events/<name>/config.yml`` beside a
``<deploy>/config.yml``, or else the event config's own folder (a
self-contained event such as the demo).

A directory comes from the ``ramp`` section (relative to the deployment
folder, as ramp-utils joins it), from the ``worker`` section (the guide's
style; relative to the config file), or from the layout's default. When both
sections name it and they differ, the ``ramp`` section wins, as ramp-utils'
``generate_worker_config`` does, with a warning that names both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ramp_fleet.config.sections import DIRECTORY_KEYS, RampSection, WorkerSection

DEPLOYMENT_CONFIG = "config.yml"


@dataclass(frozen=True)
class Origin:
    """A resolved folder and where its value came from, for ``validate``."""

    path: Path
    source: str
    #: The config key that set it (``ramp.kit_dir``...); None for a default.
    key: str | None = None


@dataclass(frozen=True)
class EventDirs:
    """Every folder of one event, absolute, with where each came from."""

    deployment: Origin
    kit: Origin
    data: Origin
    submissions: Origin
    predictions: Origin
    logs: Origin
    #: ``<deploy>/events/<event>``: the store and the scratch folders live here.
    event: Path

    def by_key(self) -> dict[str, Origin]:
        return {"deployment_dir": self.deployment, "kit_dir": self.kit, "data_dir": self.data,
                "submissions_dir": self.submissions, "predictions_dir": self.predictions,
                "logs_dir": self.logs}


def find_deployment(config_file: Path) -> Origin:
    """The ramp-board deployment an event config belongs to, by its place on disk."""
    config_file = config_file.resolve()
    events_dir = config_file.parent.parent
    candidate = events_dir.parent / DEPLOYMENT_CONFIG
    if events_dir.name == "events" and candidate.is_file():
        return Origin(events_dir.parent, f"ramp-board layout: {candidate} is the deployment config")
    return Origin(config_file.parent, "the config's folder")


def resolve_dirs(
    config_file: Path,
    ramp: RampSection,
    worker: WorkerSection,
    deployment_override: Path | None = None,
) -> tuple[EventDirs, list[str]]:
    """The event's folders, and the warnings a person should see about them."""
    base = config_file.resolve().parent
    if deployment_override is not None:
        deployment = Origin(_absolute(deployment_override, Path.cwd()), "--deployment-dir")
    elif ramp.deployment_dir is not None:
        deployment = Origin(_absolute(ramp.deployment_dir, base), "ramp.deployment_dir",
                            "ramp.deployment_dir")
    else:
        deployment = find_deployment(config_file)
    deploy = deployment.path
    event_dir = deploy / "events" / ramp.event_name
    defaults = {
        "kit_dir": deploy / "ramp-kits" / ramp.problem_name,
        "data_dir": deploy / "ramp-data" / ramp.problem_name,
        "submissions_dir": event_dir / "submissions",
        "predictions_dir": event_dir / "predictions",
        "logs_dir": event_dir / "logs",
    }
    warnings: list[str] = []
    chosen: dict[str, Origin] = {}
    for key in DIRECTORY_KEYS:
        from_ramp: Path | None = getattr(ramp, key)
        from_worker: Path | None = getattr(worker, key)
        ramp_path = _absolute(from_ramp, deploy) if from_ramp is not None else None
        worker_path = _absolute(from_worker, base) if from_worker is not None else None
        if ramp_path is not None:
            chosen[key] = Origin(ramp_path, f"ramp.{key}", f"ramp.{key}")
            if worker_path is not None and worker_path != ramp_path:
                warnings.append(
                    f"ramp.{key} and worker.{key} differ ('{ramp_path}' and '{worker_path}'); "
                    f"using ramp.{key}, as ramp-board does"
                )
        elif worker_path is not None:
            chosen[key] = Origin(worker_path, f"worker.{key}", f"worker.{key}")
        else:
            chosen[key] = Origin(defaults[key], f"ramp-board layout default under {deploy}")
    data, warning = _data_parent(chosen["data_dir"], ramp.problem_name)
    if warning:
        warnings.append(warning)
    dirs = EventDirs(
        deployment=deployment, kit=chosen["kit_dir"], data=data,
        submissions=chosen["submissions_dir"], predictions=chosen["predictions_dir"],
        logs=chosen["logs_dir"], event=event_dir,
    )
    return dirs, warnings


def _absolute(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else (base / path).resolve()


def _data_parent(data: Origin, problem_name: str) -> tuple[Origin, str | None]:
    """The guide writes ``data_dir: .../ramp-data/<problem>/data``; ramp-test wants its parent.

    Corrected only when that is clearly what happened: the folder is named
    ``data``, holds files but no ``data/`` of its own, and its parent is
    named after the problem.
    """
    path = data.path
    looks_misplaced = (data.key is not None and path.name == "data"
                       and path.parent.name == problem_name and path.is_dir()
                       and not (path / "data").is_dir())
    if not looks_misplaced or not any(child.is_file() for child in path.iterdir()):
        return data, None
    warning = (f"{data.key}: '{path}' is the data folder itself, but ramp-test reads "
               f"<data_dir>/data/...; using its parent. Write: data_dir: {path.parent}")
    return Origin(path.parent, f"{data.key}, its parent (corrected)", data.key), warning
