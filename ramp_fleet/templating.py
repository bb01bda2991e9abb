"""Jinja2 rendering for everything under ``templates/``.

``StrictUndefined`` turns a missing variable into an error instead of an empty
string, and ``shquote`` (``shlex.quote``) is the filter for any value that
lands in a shell line.
"""

from __future__ import annotations

import shlex
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

#: The project checkout (templates/ and pipelines/ live beside the package).
PROJECT_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PROJECT_DIR / "templates"


def shquote(value: Any) -> str:
    return shlex.quote(str(value))


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(  # noqa: S701 - the output is YAML and shell, never HTML
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["shquote"] = shquote
    return env


def render(template: str, **context: Any) -> str:
    """Render ``templates/<template>``."""
    return environment().get_template(template).render(**context)


def render_string(source: str, **context: Any) -> str:
    """Render a template snippet (a pipeline step) with the same filters."""
    return environment().from_string(source).render(**context)
