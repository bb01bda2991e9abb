"""Text that came from a run, made safe to show: anywhere an operator or a participant reads it.

A run's log, its error, a name it chose are a stranger's bytes. Shown as they
are, terminal escape sequences recolour or rewrite a terminal, bidirectional
overrides reverse what is read, and rich markup (``[/]``) crashes a table.
:func:`visible` turns every control and formatting character (but newline
and tab) into an escape one can read (``\\x1b``, ``\\u202e``): the store keeps
errors that way, so the terminal, ``--json``, the report and ramp-board all
get them so. Rich output never interprets markup in them (``rich.text.Text``),
and JSON output is strict: a number that is not finite is written ``null``.
"""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any

_KEEP = frozenset("\n\t")
_ESCAPED = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


def visible(text: str) -> str:
    """``text`` with every control and formatting character escaped (newline, tab kept)."""
    if text.isprintable() and "\x7f" not in text:
        return text  # the common case, at C speed
    return "".join(_escape(char) for char in text)


def _escape(char: str) -> str:
    if char in _KEEP or unicodedata.category(char) not in _ESCAPED:
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else \
        f"\\U{code:08x}"


def finite(value: Any) -> Any:
    """``value`` with every float that is not finite (NaN, ±Infinity) made None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def strict_json(value: Any, **options: Any) -> str:
    """JSON that any parser reads: no NaN or Infinity (they are written ``null``)."""
    return json.dumps(finite(value), allow_nan=False, **options)


def strict_json_text(text: str | None) -> str:
    """Stored JSON text as strict JSON (an old store may hold ``Infinity``); ``null`` for None."""
    if text is None:
        return "null"
    if "NaN" not in text and "Infinity" not in text:
        return text
    return strict_json(json.loads(text))
