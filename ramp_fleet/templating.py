"""Jinja2 rendering for everything under ``templates/``.

``StrictUndefined`` turns a missing variable into an error instead of an empty
string, and ``shquote`` (``shlex.quote``) is the filter for any value that
lands in a shell line.
"""

from __future__ import annotations

import shlex
from functools import cache
from typing import Any

import jinja2

from ramp_fleet.resources import TEMPLATES_DIR


def shquote(value: Any) -> str:
    return shlex.quote(str(value))


def shpath(value: Any) -> str:
    """Quote a path for sh, keeping a leading ``~/`` as the remote ``$HOME``."""
    text = str(value)
    if text == "~":
        return '"$HOME"'
    if text.startswith("~/"):
        return '"$HOME"/' + shlex.quote(text[2:])
    return shlex.quote(text)


@cache
def systemd_quote(value: Any) -> str:
    """One word of a systemd unit line (``Environment="NAME=value"``): quoted, escaped, and
    with ``%`` doubled so that systemd expands no specifier in it."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{text}"'


def environment(trim_blocks: bool = True) -> jinja2.Environment:
    """The one jinja2 setup; ``trim_blocks=False`` for templates of shell macros,
    whose line breaks are part of the command.

    Autoescaping is chosen by the template's name: on for ``*.html.j2`` (the
    report: every value is HTML-escaped unless marked safe), off for the YAML
    and shell templates and for snippets, where quoting is ``shquote``'s job.
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        keep_trailing_newline=True,
        trim_blocks=trim_blocks,
        lstrip_blocks=trim_blocks,
    )
    env.filters["shquote"] = shquote
    env.filters["shpath"] = shpath
    env.filters["systemd_quote"] = systemd_quote
    return env


def render(template: str, **context: Any) -> str:
    """Render ``templates/<template>``."""
    return environment().get_template(template).render(**context)


def render_string(source: str, **context: Any) -> str:
    """Render a template snippet (a pipeline step) with the same filters."""
    return environment().from_string(source).render(**context)
