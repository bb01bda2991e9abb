"""What the wheel ships: every package of the source tree, and templates/ and pipelines/."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_package_and_shipped_folder_is_in_the_wheel() -> None:
    settings = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(settings["packages"])
    found = {".".join(init.parent.relative_to(REPO).parts)
             for init in (REPO / "ramp_fleet").rglob("__init__.py")}
    assert found - listed == set(), "add the new package to [tool.setuptools] packages"
    assert settings["package-dir"] == {"ramp_fleet.templates": "templates",
                                       "ramp_fleet.pipelines": "pipelines"}
    assert {"ramp_fleet.templates", "ramp_fleet.pipelines"} <= listed


def test_a_checkout_reads_the_top_level_folders() -> None:
    from ramp_fleet.resources import PIPELINES_DIR, TEMPLATES_DIR

    assert TEMPLATES_DIR == REPO / "templates"
    assert PIPELINES_DIR == REPO / "pipelines"
