"""mkdocs hook: the config and CLI reference pages, generated from the code.

``{{ config_reference }}`` becomes a table per section of the event config,
read from the pydantic models of :mod:`ramp_fleet.config.sections` (each key,
its type, its default and the ``#:`` comment above it); ``{{ cli_reference }}``
becomes the help of every ``ramp-fleet`` command, from the click commands.
The pages cannot drift from the code: they are the code, rendered.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
import typing
from functools import cache
from typing import Any

import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ramp_fleet.config import fields, sections


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if "{{ config_reference }}" in markdown:
        markdown = markdown.replace("{{ config_reference }}", config_reference())
    if "{{ cli_reference }}" in markdown:
        markdown = markdown.replace("{{ cli_reference }}", cli_reference())
    return markdown


# -- the config --------------------------------------------------------------------------

#: (heading, model, key prefix): every section an event config may have.
SECTIONS: list[tuple[str, type[BaseModel], str]] = [
    ("`ramp`", sections.RampSection, "ramp."),
    ("`worker`: keys of every worker type", sections.WorkerSection, "worker."),
    ("`worker.isolation`", sections.IsolationSection, "worker.isolation."),
    ("`worker.result_limits`", sections.ResultLimits, "worker.result_limits."),
    ("`worker` with `worker_type: conda`", sections.CondaWorkerSection, "worker."),
    ("`worker` with `worker_type: aws`", sections.AWSWorkerSection, "worker."),
    ("`worker` with `worker_type: dask`", sections.DaskWorkerSection, "worker."),
    ("`worker.dask_cluster` (elastic Dask on EC2)", sections.ElasticDaskSection,
     "worker.dask_cluster."),
    ("`dispatcher`", sections.DispatcherSection, "dispatcher."),
    ("`store`", sections.StoreSection, "store."),
    ("`infra` (Pulumi)", sections.InfraSection, "infra."),
    ("`infra.data_source`", sections.DataSource, "infra.data_source."),
    ("`infra.dask_cluster` (a static Dask cluster)", sections.DaskClusterSection,
     "infra.dask_cluster."),
]


def config_reference() -> str:
    parts = []
    for heading, model, prefix in SECTIONS:
        inherited = set()
        if model is not sections.WorkerSection and issubclass(model, sections.WorkerSection):
            inherited = set(sections.WorkerSection.model_fields)
        rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        for name, field in model.model_fields.items():
            if name in inherited:
                continue
            rows.append(f"| `{prefix}{name}` | {type_of(field)} | {default_of(field)} | "
                        f"{meaning(model, name, field)} |")
        parts.append(f"### {heading}\n\n" + "\n".join(rows))
    return "\n\n".join(parts) + "\n"


#: Validators whose values users write in their own units: shown in those units.
UNITS = {fields._byte_size: "bytes (`512MiB`, `2GB`…)", fields._positive_seconds: "seconds",
         fields._seconds_or_zero: "seconds"}


def _unit(field: FieldInfo) -> str | None:
    return next((UNITS[m.func] for m in field.metadata if getattr(m, "func", None) in UNITS),
                None)


def type_of(field: FieldInfo) -> str:
    unit = _unit(field)
    if unit is not None:
        return unit + (" or null" if type(None) in typing.get_args(field.annotation) else "")
    text = _type_name(field.annotation)
    return f"`{text}`".replace("|", "\\|")


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def default_of(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "see below"
    if value is None:
        return "unset"
    if hasattr(value, "get_secret_value"):
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if _unit(field) == UNITS[fields._byte_size] and isinstance(value, int):
        return f"`{_bytes(value)}`"
    return f"`{value}`".replace("|", "\\|")


def _bytes(value: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size and value % size == 0:
            return f"{value // size}{unit}"
    return str(value)


def meaning(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    text = field.description or _comments(model).get(name)
    if not text:
        raise ValueError(f"{model.__name__}.{name} has no #: comment or description: "
                         "every key of the config reference says what it means")
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text).replace("``", "`")
    return re.sub(r"\s+", " ", text).replace("|", "\\|")


@cache
def _comments(model: type[BaseModel]) -> dict[str, str]:
    """The ``#:`` comment lines right above each field of ``model`` and its bases."""
    found: dict[str, str] = {}
    for klass in reversed(model.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, BaseModel)) or klass is BaseModel:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        lines = source.splitlines()
        for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                comment = []
                row = node.lineno - 2
                while row >= 0 and lines[row].strip().startswith("#:"):
                    comment.insert(0, lines[row].strip()[2:].strip())
                    row -= 1
                if comment:
                    found[node.target.id] = " ".join(comment)
    return found


# -- the command line ------------------------------------------------------------------------


def cli_reference() -> str:
    from ramp_fleet.cli import cli

    parts: list[str] = []
    _command(cli, ["ramp-fleet"], parts, click.Context(cli, info_name="ramp-fleet"))
    return "\n\n".join(parts) + "\n"


def _command(command: click.Command, path: list[str], parts: list[str],
             context: click.Context) -> None:
    name = " ".join(path)
    help_text = command.get_help(context)
    parts.append(f"### `{name}`\n\n```text\n{help_text}\n```")
    if isinstance(command, click.Group):
        for sub in command.list_commands(context):
            child = command.get_command(context, sub)
            if child is None or child.hidden:
                continue
            _command(child, [*path, sub], parts,
                     click.Context(child, info_name=sub, parent=context))
