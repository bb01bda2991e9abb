"""Read an event config file into a validated, resolved :class:`EventConfig`.

Every problem is collected before anything is reported, so a person fixes a
config in one pass: one line per problem, naming the file, the key, what is
wrong and what was found (never a secret's value).
"""

from __future__ import annotations

import difflib
import os
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ramp_fleet.config import checks
from ramp_fleet.config.event import EventConfig
from ramp_fleet.config.fields import MASK, SECRET_KEYS
from ramp_fleet.config.layout import DEPLOYMENT_CONFIG, resolve_dirs
from ramp_fleet.config.sections import (
    BUILTIN_WORKER_TYPES,
    DIRECTORY_KEYS,
    HUNGER_POLICIES,
    IGNORED_SECTIONS,
    SECTIONS,
    STORE_BACKENDS,
    WORKER_SECTIONS,
    DispatcherSection,
    InfraSection,
    RampSection,
    StoreSection,
    WorkerSection,
    flat_key_sections,
    known_keys,
)
from ramp_fleet.errors import ConfigError

_PYDANTIC_WORDING = {
    "missing": "is required",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "list_type": "must be a list",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
}


def load_event_config(
    path: str | os.PathLike[str],
    *,
    runtime_files: bool = True,
    check_env: bool = True,
    deployment_dir: str | os.PathLike[str] | None = None,
) -> EventConfig:
    """Load, validate and resolve the event config at ``path``.

    ``runtime_files=False`` skips the checks of what only a run needs (the
    event's folders, the SSH key, the Dask TLS files, the conda environment),
    for the Pulumi program and the commands that only talk to AWS;
    ``check_env=False`` skips only the conda environment (``env create``
    makes it). ``deployment_dir``
    overrides where the ramp-board deployment is (see :mod:`.layout`).
    Raises :class:`ConfigError` carrying every problem found.
    """
    file = Path(path)
    display = str(path)
    data = _read_yaml(file, display)
    warnings: list[str] = []
    if _is_flat(data):
        data = _regroup_flat(data)
        warnings.append(_flat_warning(display, data))
    _refuse_deployment_config(file, display, data)
    override = Path(deployment_dir) if deployment_dir is not None else None
    builder = _Builder(file, display, data, warnings, override)
    return builder.build(runtime_files=runtime_files, check_env=check_env and runtime_files)


def _read_yaml(file: Path, display: str) -> dict[str, Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{display}: no such file"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{display}: is a directory, not a config file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{display}: cannot be read ({exc.__class__.__name__})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError([f"{display}{where}: invalid YAML: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{display}: invalid YAML: {exc.__class__.__name__}"]) from None
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ConfigError(
            [f"{display}: must be a mapping with 'ramp', 'worker' and 'dispatcher' sections, "
             f"got {found}"]
        )
    return data


def _refuse_deployment_config(file: Path, display: str, data: Mapping[str, Any]) -> None:
    """A ramp-board deployment config given where an event config belongs: say which to use."""
    if "ramp" in data or not ({"sqlalchemy", "flask"} & set(data)):
        return
    events = sorted(file.resolve().parent.glob("events/*/config.yml"))
    found = ", ".join(str(path.relative_to(file.resolve().parent)) for path in events[:5])
    hint = f" (found: {found})" if found else " (events/<event>/config.yml)"
    raise ConfigError([f"{display}: is a ramp-board deployment config (flask, sqlalchemy), "
                       f"not an event config; give an event's config.yml{hint}"])


def _is_flat(data: Mapping[str, Any]) -> bool:
    if any(key in data for key in ("ramp", "worker", "dispatcher")):
        return False
    owners = flat_key_sections()
    return any(key in owners for key in data)


def _regroup_flat(data: Mapping[str, Any]) -> dict[str, Any]:
    owners = flat_key_sections()
    grouped: dict[str, Any] = {}
    for key, value in data.items():
        section = owners.get(key)
        if section is None:
            grouped[key] = value  # reported later as an unknown key
        else:
            grouped.setdefault(section, {})[key] = value
    return grouped


def _flat_warning(display: str, grouped: Mapping[str, Any]) -> str:
    nested = {name: mask_secrets(grouped[name]) for name in SECTIONS if name in grouped}
    shown = yaml.safe_dump(nested, sort_keys=False, default_flow_style=False).rstrip()
    indented = "\n".join("    " + line for line in shown.splitlines())
    return (
        f"{display}: keys are written without sections; read them as this nested form "
        f"(write it so to silence this warning):\n{indented}"
    )


def mask_secrets(value: Any) -> Any:
    """A copy of a config mapping with every secret value replaced by ``****``."""
    if isinstance(value, Mapping):
        return {
            key: (MASK if key in SECRET_KEYS and item is not None else mask_secrets(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(item) for item in value]
    return value


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return repr(value)


def _did_you_mean(key: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _nested_keys(model: type[BaseModel] | None, path: list[str]) -> list[str]:
    """The keys of the sub-section at ``path`` of ``model`` (``["dask_cluster"]``...)."""
    for part in path:
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return []
        found = [arg for arg in (*typing.get_args(field.annotation), field.annotation)
                 if isinstance(arg, type) and issubclass(arg, BaseModel)]
        model = found[0] if found else None
    return list(model.model_fields) if model is not None else []


class _Builder:
    """Validates the sections of one config, collecting every problem."""

    def __init__(
        self,
        file: Path,
        display: str,
        data: dict[str, Any],
        warnings: list[str],
        deployment_dir: Path | None,
    ):
        self.deployment_dir = deployment_dir
        self.file = file
        self.display = display
        self.data = data
        self.warnings = warnings
        self.problems: list[str] = []
        self.base_dir = file.resolve().parent

    def problem(self, key: str, message: str, value: Any = None, show_value: bool = True) -> None:
        secret = key.rsplit(".", 1)[-1] in SECRET_KEYS
        found = f", got {_describe(value)}" if show_value and not secret else ""
        self.problems.append(f"{self.display}: {key}: {message}{found}")

    # -- sections -----------------------------------------------------------

    def build(self, runtime_files: bool, check_env: bool) -> EventConfig:
        self._check_top_level()
        ramp = self._section("ramp", RampSection, required=True)
        dispatcher = self._section("dispatcher", DispatcherSection) or DispatcherSection()
        infra = self._section("infra", InfraSection) or InfraSection()
        store = self._section("store", StoreSection) or StoreSection()
        worker = self._worker_section()
        if self.problems or ramp is None or worker is None:
            raise ConfigError(self.problems or [f"{self.display}: invalid config"])
        event = self._resolve(ramp, worker, dispatcher, infra, store)
        for message in checks.check_event(event, runtime_files, check_env):
            self.problems.append(f"{self.display}: {message}")
        if self.problems:
            raise ConfigError(self.problems)
        return event

    def _check_top_level(self) -> None:
        names = [*SECTIONS, *IGNORED_SECTIONS]
        owners = flat_key_sections()
        for key in self.data:
            if key in SECTIONS or key in IGNORED_SECTIONS:
                continue
            if not isinstance(key, str):
                self.problem(str(key), "unknown section", show_value=False)
            elif key in owners:
                self.problems.append(
                    f"{self.display}: {key}: belongs under '{owners[key]}:' "
                    "(sections and flat keys cannot be mixed)"
                )
            else:
                hint = _did_you_mean(key, [*names, *owners])
                self.problems.append(f"{self.display}: {key}: unknown section{hint}")

    def _section(
        self, name: str, model: type[BaseModel], required: bool = False
    ) -> Any:
        raw = self.data.get(name)
        if raw is None:
            if required:
                self.problem(name, "section is required", show_value=False)
            return None
        if not isinstance(raw, Mapping):
            self.problem(name, "must be a mapping", raw)
            return None
        return self._validate(name, model, raw, known_keys(name) if name in SECTIONS else [])

    def _worker_section(self) -> WorkerSection | None:
        raw = self.data.get("worker")
        if raw is None:
            self.problem("worker", "section is required", show_value=False)
            return None
        if not isinstance(raw, Mapping):
            self.problem("worker", "must be a mapping", raw)
            return None
        worker_type = raw.get("worker_type")
        if worker_type is None:
            self.problem("worker.worker_type", f"is required ({', '.join(BUILTIN_WORKER_TYPES)} or "
                         "package.module:Class)", show_value=False)
            return None
        if not isinstance(worker_type, str):
            self.problem("worker.worker_type", "must be a string", worker_type)
            return None
        model = WORKER_SECTIONS.get(worker_type)
        if model is not None:
            section: WorkerSection | None = self._validate(
                "worker", model, raw, known_keys("worker", worker_type))
            return section
        problem = checks.custom_worker_problem(worker_type)
        if problem:
            self.problem("worker.worker_type", problem, worker_type)
            return None
        # A custom worker built on a backend (a subclass of the AWS worker...) reads that
        # backend's keys, with its defaults.
        model = checks.custom_worker_section(worker_type)
        builtin_type = model.model_fields["worker_type"].default
        if not isinstance(builtin_type, str):
            return self._validate("worker", model, raw, list(model.model_fields))
        section = self._validate("worker", model, {**raw, "worker_type": builtin_type},
                                 list(model.model_fields))
        return None if section is None else section.model_copy(update={"worker_type": worker_type})

    def _validate(
        self, name: str, model: type[BaseModel], raw: Mapping[str, Any], keys: list[str]
    ) -> Any:
        try:
            return model.model_validate(dict(raw))
        except ValidationError as exc:
            for error in exc.errors():
                self._report(name, error, keys, model)
            return None

    def _report(self, section: str, error: Mapping[str, Any], keys: list[str],
                model: type[BaseModel] | None = None) -> None:
        loc = [str(part) for part in error["loc"]]
        # Errors inside Annotated validators carry the field in loc already;
        # pydantic adds a type tag ("function-before[...]") that readers
        # should never see.
        loc = [part for part in loc if not part.startswith("function-")]
        key = ".".join([section, *loc])
        kind = error["type"]
        value = error.get("input")
        if kind == "extra_forbidden":
            candidates = _nested_keys(model, loc[:-1]) if len(loc) > 1 else keys
            self.problems.append(
                f"{self.display}: {key}: unknown key{_did_you_mean(loc[-1], candidates)}"
            )
        elif kind == "missing":
            self.problem(key, "is required", show_value=False)
        elif kind == "literal_error":
            expected = error.get("ctx", {}).get("expected", "")
            if key == "dispatcher.hunger_policy":
                expected = ", ".join("null" if p is None else p for p in HUNGER_POLICIES)
            if key == "store.backend":
                expected = ", ".join(STORE_BACKENDS)
            self.problem(key, f"must be one of {expected}", value)
        elif kind == "value_error":
            message = str(error["msg"]).removeprefix("Value error, ")
            self.problem(key, message, value)
        else:
            self.problem(key, _PYDANTIC_WORDING.get(kind, str(error["msg"]).lower()), value)

    # -- resolution ---------------------------------------------------------

    def _path(self, value: Path | None) -> Path | None:
        if value is None:
            return None
        return value if value.is_absolute() else (self.base_dir / value).resolve()

    def _resolve_store(self, store: StoreSection, deployment_dir: Path) -> StoreSection:
        updates: dict[str, Any] = {}
        if store.ramp_board_python is not None:
            # Not resolved: a venv's bin/python is a symlink, and following it
            # would run the base interpreter without the venv's packages.
            python = store.ramp_board_python
            updates["ramp_board_python"] = Path(os.path.normpath(
                python if python.is_absolute() else self.base_dir / python))
        if store.deployment_config is not None:
            updates["deployment_config"] = self._path(store.deployment_config)
        elif store.backend == "ramp-board":
            updates["deployment_config"] = deployment_dir / DEPLOYMENT_CONFIG
        return store.model_copy(update=updates)

    def _resolve(
        self,
        ramp: RampSection,
        worker: WorkerSection,
        dispatcher: DispatcherSection,
        infra: InfraSection,
        store: StoreSection,
    ) -> EventConfig:
        dirs, warnings = resolve_dirs(self.file, ramp, worker, self.deployment_dir)
        self.warnings.extend(f"{self.display}: {warning}" for warning in warnings)
        updates: dict[str, Any] = {key: origin.path for key, origin in dirs.by_key().items()
                                   if key in DIRECTORY_KEYS}
        for key in ("key_path", "ssh_config_file"):
            if getattr(worker, key, None) is not None:
                updates[key] = self._path(getattr(worker, key))
        tls = getattr(worker, "dask_tls", None)
        if tls is not None:
            updates["dask_tls"] = tls.model_copy(
                update={name: self._path(getattr(tls, name)) for name in ("ca_file", "cert", "key")}
            )
        if infra.public_key_path is not None:
            infra = infra.model_copy(update={"public_key_path": self._path(infra.public_key_path)})
        store_path = self._path(store.path) or dirs.event / "ramp-fleet.sqlite"
        store = self._resolve_store(store, dirs.deployment.path)
        return EventConfig(
            path=self.file.resolve(),
            display=self.display,
            ramp=ramp,
            worker=worker.model_copy(update=updates),
            dispatcher=dispatcher,
            infra=infra,
            store=store,
            store_path=store_path,
            dirs=dirs,
            warnings=tuple(self.warnings),
        )


__all__ = ["BUILTIN_WORKER_TYPES", "load_event_config", "mask_secrets"]
