"""Field types shared by the config sections, with the wording of their errors.

Each validator raises ``ValueError`` with the phrase a person should read
("must be a positive number of seconds"); the loader adds the file, the key
and what was found.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator

#: Keys whose values are never echoed: not in errors, logs nor `validate`.
SECRET_KEYS = frozenset(
    {"access_key_id", "secret_access_key", "aws_session_token", "osf_password", "password"}
)
MASK = "****"


def _positive_seconds(value: Any) -> float:
    return _seconds(value, "must be a positive number of seconds", zero=False)


def _seconds_or_zero(value: Any) -> float:
    return _seconds(value, "must be 0 or a positive number of seconds", zero=True)


def _seconds(value: Any, message: str, zero: bool) -> float:
    if isinstance(value, bool):
        raise ValueError(message)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if not (seconds >= 0 if zero else seconds > 0) or seconds != seconds \
            or seconds == float("inf"):
        raise ValueError(message)
    return seconds


def _whole_number(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("must be a whole number")
    try:
        return int(str(value).strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise ValueError("must be a whole number") from None


def _positive_int(value: Any) -> int:
    number = _whole_number(value)
    if number < 1:
        raise ValueError("must be a whole number of at least 1")
    return number


def _non_negative_int(value: Any) -> int:
    number = _whole_number(value)
    if number < 0:
        raise ValueError("must be a whole number of at least 0")
    return number


def _non_zero_int(value: Any) -> int:
    number = _whole_number(value)
    if number == 0:
        raise ValueError("must not be 0 (a negative number counts back from the CPU count)")
    return number


_BYTE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def _byte_size(value: Any) -> int:
    message = "must be a number of bytes such as 1048576, 512MiB or 2GB"
    if isinstance(value, bool):
        raise ValueError(message)
    if isinstance(value, int):
        number, unit = float(value), ""
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        digits = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        number_text, unit = digits, text[len(digits):]
        try:
            number = float(number_text)
        except ValueError:
            raise ValueError(message) from None
    else:
        raise ValueError(message)
    if unit not in _BYTE_UNITS or not number >= 1:
        raise ValueError(message)
    return int(number * _BYTE_UNITS[unit])
def _positive_number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a positive number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("must be a positive number") from None
    if not number > 0 or number == float("inf"):
        raise ValueError("must be a positive number")
    return number


def _port(value: Any) -> int:
    number = _whole_number(value)
    if not 1 <= number <= 65535:
        raise ValueError("must be a port number from 1 to 65535")
    return number


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "yes", "on", "1"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "no", "off", "0"}:
        return False
    raise ValueError("must be true or false")


def _path(value: Any) -> Path:
    if not isinstance(value, str | Path) or not str(value).strip():
        raise ValueError("must be a path")
    return Path(value).expanduser()


def _absolute_path_text(value: Any) -> str:
    """A path on the machine of a run: not resolved here (it may be an instance's)."""
    if not isinstance(value, str | Path) or not str(value).startswith(("/", "~/")):
        raise ValueError("must be an absolute path (or start with ~/)")
    return str(value)


def _text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("must be a string")
    text = str(value)
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _cidr(value: Any) -> str:
    try:
        return str(ipaddress.ip_network(str(value), strict=False))
    except ValueError:
        raise ValueError("must be a CIDR block such as 203.0.113.0/24") from None


Seconds = Annotated[float, BeforeValidator(_positive_seconds)]
SecondsOrZero = Annotated[float, BeforeValidator(_seconds_or_zero)]
WholeNumber = Annotated[int, BeforeValidator(_whole_number)]
PositiveInt = Annotated[int, BeforeValidator(_positive_int)]
NonNegativeInt = Annotated[int, BeforeValidator(_non_negative_int)]
NonZeroInt = Annotated[int, BeforeValidator(_non_zero_int)]
ByteSize = Annotated[int, BeforeValidator(_byte_size)]
PositiveNumber = Annotated[float, BeforeValidator(_positive_number)]
Port = Annotated[int, BeforeValidator(_port)]
Flag = Annotated[bool, BeforeValidator(_flag)]
PathField = Annotated[Path, BeforeValidator(_path)]
RunPath = Annotated[str, BeforeValidator(_absolute_path_text)]
Text = Annotated[str, BeforeValidator(_text)]
Cidr = Annotated[str, BeforeValidator(_cidr)]
