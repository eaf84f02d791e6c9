"""Durations ("60s", "5min", "1h") and byte sizes ("64MiB") as typed config fields."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|min|h|d)?\s*$")
_DURATION_FACTOR = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|kB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZE_FACTOR = {"B": 1, None: 1, "kB": 1000, "KiB": 1024, "MB": 1000**2, "MiB": 1024**2,
                "GB": 1000**3, "GiB": 1024**3}


def parse_duration(value: object, *, allow_zero: bool = False) -> float:
    """Seconds from a number or a string such as ``"60s"``, ``"5min"``, ``"250ms"``."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 60s, 5min or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"must be a duration such as 60s, 5min or 1h (got {value!r})")
        seconds = float(match.group(1)) * _DURATION_FACTOR[match.group(2)]
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"must be longer than zero (got {value!r})")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from a number or a string such as ``"64MiB"``."""
    if isinstance(value, bool):
        raise ValueError("must be a size such as 64MiB")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError(f"must be a size such as 512KiB or 64MiB (got {value!r})")
        size = int(float(match.group(1)) * _SIZE_FACTOR[match.group(2)])
    if size <= 0:
        raise ValueError(f"must be larger than zero (got {value!r})")
    return size


def format_duration(seconds: float) -> str:
    """Shortest readable form: 60 -> '60s', 300 -> '5min'."""
    if seconds == 0:
        return "0s"
    for unit, factor in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= factor and seconds % factor == 0:
            return f"{int(seconds // factor)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(format_duration)]
#: A duration where 0 is a meaningful choice (e.g. "no warm-up").
DurationOrZero = Annotated[float, BeforeValidator(lambda v: parse_duration(v, allow_zero=True)),
                           PlainSerializer(format_duration)]
ByteSize = Annotated[int, BeforeValidator(parse_size)]
