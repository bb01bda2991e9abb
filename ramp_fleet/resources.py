"""Where the files shipped with ramp-fleet are: ``templates/`` and ``pipelines/``.

Both are kept at the top of the source tree (the source of truth) and are
copied into the package by the build (``pyproject.toml`` maps them to
``ramp_fleet/templates`` and ``ramp_fleet/pipelines``). An installed wheel
finds them inside the package; a source checkout (``pip install -e``) finds
them beside it.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    """The folder ``name`` (``templates`` or ``pipelines``) of this installation."""
    packaged = _PACKAGE_DIR / name
    if packaged.is_dir():
        return packaged
    return _PACKAGE_DIR.parent / name


TEMPLATES_DIR = shipped_dir("templates")
PIPELINES_DIR = shipped_dir("pipelines")
