"""The README and the documentation site stay true to the code."""

from __future__ import annotations

import re
import sys
import typing
from pathlib import Path

import pytest

from ramp_fleet.dask.host_settings import environment

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README = REPO / "README.md"

sys.path.insert(0, str(DOCS / "hooks"))
import reference  # noqa: E402  (the mkdocs hook that generates the references)


def test_the_readme_starts_with_the_two_commands_and_stays_short() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"the README has {len(lines)} lines (at most 250)"
    first_block = lines[lines.index("```sh") + 1:lines.index("```")]
    assert [line.split()[:2] for line in first_block] == [["make", "demo"], ["make", "test"]]


def test_the_dask_page_lists_every_dask_host_setting() -> None:
    text = (DOCS / "backends" / "dask.md").read_text()
    for name, value in environment().items():
        assert f"{name}={value}" in text


def test_the_operations_page_lists_every_metric() -> None:
    from ramp_fleet.metrics import DispatcherMetrics

    text = (DOCS / "operations.md").read_text()
    names = {family.name for family in DispatcherMetrics().registry.collect()
             if family.name.startswith("ramp_fleet_")}
    assert len(names) == 6
    for name in names:
        assert f"| `{name}" in text, f"{name} is not in the operations page's metrics table"


def every_key() -> set[str]:
    """Every key an event config may have, walked from the config's own sections (not from
    the hook's list), nested sections included."""
    from pydantic import BaseModel

    from ramp_fleet.config.sections import SECTIONS, WORKER_SECTIONS

    def nested(annotation: object) -> type[BaseModel] | None:
        for candidate in (annotation, *typing.get_args(annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                return candidate
        return None

    def walk(model: type[BaseModel], prefix: str) -> set[str]:
        keys = set()
        for name, field in model.model_fields.items():
            inner = nested(field.annotation)
            keys |= walk(inner, f"{prefix}{name}.") if inner is not None \
                and name != "dask_tls" else {f"{prefix}{name}"}
        return keys

    keys: set[str] = set()
    for section, model in SECTIONS.items():
        for each in (WORKER_SECTIONS.values() if model is None else [model]):
            keys |= walk(each, f"{section}.")
    return keys


def test_the_config_reference_has_every_key_of_every_section() -> None:
    page = reference.config_reference()
    listed = set(re.findall(r"^\| `([a-z_.]+)` \|", page, re.MULTILINE))
    assert every_key() - listed == set()
    isolation = reference.sections.IsolationSection()
    assert f"| `worker.isolation.mode` | `'auto' \\| 'required' \\| 'off'` | `{isolation.mode}` |" \
        in page


def test_a_key_without_a_meaning_fails_the_build() -> None:
    from pydantic import BaseModel

    class Undocumented(BaseModel):
        #: Documented.
        fine: int = 1
        silent: int = 2

    with pytest.raises(ValueError, match=r"Undocumented\.silent has no #: comment"):
        [reference.meaning(Undocumented, name, field)
         for name, field in Undocumented.model_fields.items()]


def test_the_cli_reference_has_every_command() -> None:
    from ramp_fleet.cli import cli

    page = reference.cli_reference()
    for name in cli.list_commands(None):  # type: ignore[arg-type]
        assert f"### `ramp-fleet {name}`" in page
    assert "### `ramp-fleet env create`" in page and "### `ramp-fleet dask local`" in page
