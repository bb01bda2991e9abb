"""ramp-board's database settings: read from the deployment config, shown without the password.

A ramp-board deployment keeps them in ``<deploy>/config.yml`` under
``sqlalchemy`` (the keys of ``sqlalchemy.engine.URL.create``), which is what
ramp-utils' ``read_config(config, filter_section="sqlalchemy")`` returns.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ramp_fleet.errors import ConfigError

#: What ``sqlalchemy.engine.URL.create`` accepts.
URL_KEYS = ("drivername", "username", "password", "host", "port", "database", "query")


def database_from_deployment(config_path: Path) -> dict[str, Any]:
    """The ``sqlalchemy`` section of a ramp-board deployment config, checked.

    Raises :class:`ConfigError` with one line per problem; the password's
    value never appears in them.
    """
    display = str(config_path)
    try:
        data = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{display}: no such file (the ramp-board deployment config)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{display}: cannot be read ({exc.__class__.__name__})"]) from None
    except yaml.YAMLError:
        raise ConfigError([f"{display}: invalid YAML"]) from None
    section = data.get("sqlalchemy") if isinstance(data, Mapping) else None
    if not isinstance(section, Mapping):
        raise ConfigError([f"{display}: sqlalchemy: is required (ramp-board's database settings: "
                           "drivername, username, password, host, port, database)"])
    problems = list(_problems(display, section))
    if problems:
        raise ConfigError(problems)
    return dict(section)


def _problems(display: str, section: Mapping[str, Any]) -> list[str]:
    problems = []
    for key in section:
        if key not in URL_KEYS:
            close = difflib.get_close_matches(str(key), URL_KEYS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.append(f"{display}: sqlalchemy.{key}: unknown key{hint}")
    if not isinstance(section.get("drivername"), str) or not section.get("drivername"):
        problems.append(f"{display}: sqlalchemy.drivername: is required (postgresql)")
    for key in ("username", "password", "host", "database"):
        value = section.get(key)
        if value is not None and not isinstance(value, str | int):
            problems.append(f"{display}: sqlalchemy.{key}: must be a string")
    port = section.get("port")
    if port is not None and (isinstance(port, bool) or not str(port).isdigit()):
        problems.append(f"{display}: sqlalchemy.port: must be a port number")
    return problems


def describe_database(database: Mapping[str, Any]) -> str:
    """``postgresql://mrramp@127.0.0.1:5432/databoard`` — for messages, never with the password."""
    user = f"{database['username']}@" if database.get("username") else ""
    port = f":{database['port']}" if database.get("port") else ""
    name = f"/{database['database']}" if database.get("database") else ""
    return f"{database.get('drivername', '?')}://{user}{database.get('host') or ''}{port}{name}"
