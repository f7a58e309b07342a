"""Durations and instants, always with their unit (milliseconds or timedelta).

A naive datetime is an error, never silently UTC (style habit 4).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from streams.errors import DefinitionError, NaiveTimeError

__all__ = ["datetime_to_ms", "duration_label", "format_ms", "iso_to_ms", "parse_duration_ms", "to_ms", "utc_from_ms"]

_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")


def to_ms(value: timedelta | int | str, *, what: str = "duration") -> int:
    """Return a duration in whole milliseconds.

    Accepts a `timedelta`, an `int` of milliseconds, or a string like ``"5m"``.
    """
    if isinstance(value, bool):
        raise DefinitionError(f"{what}: expected a duration, got {value!r}")
    if isinstance(value, timedelta):
        ms = value // timedelta(milliseconds=1)
        if timedelta(milliseconds=ms) != value:
            raise DefinitionError(f"{what}: {value!r} is not a whole number of milliseconds")
        return ms
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return parse_duration_ms(value, what=what)
    raise DefinitionError(f"{what}: expected timedelta, int milliseconds or '5m', got {value!r}")


def parse_duration_ms(text: str, *, what: str = "duration") -> int:
    """Parse ``"500ms"``, ``"30s"``, ``"5m"``, ``"2h"`` or ``"7d"`` into milliseconds."""
    match = _DURATION.match(text)
    if not match:
        raise DefinitionError(
            f"{what}: {text!r} is not a duration; write a number and a unit: ms, s, m, h or d"
        )
    return int(match.group(1)) * _UNITS_MS[match.group(2)]


def duration_label(ms: int) -> str:
    """The shortest exact label for a duration: 300000 -> '5m', 90000 -> '90s'."""
    for unit in ("d", "h", "m", "s"):
        size = _UNITS_MS[unit]
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def utc_from_ms(ms: int) -> datetime:
    """An aware UTC datetime for epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def format_ms(ms: int | None) -> str | None:
    """ISO-8601 UTC text for epoch milliseconds (None stays None)."""
    if ms is None:
        return None
    return utc_from_ms(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_to_ms(text: str) -> int:
    """Epoch milliseconds of an ISO-8601 time with a timezone (`Z` or an offset): the one reading of a
    time given as text, for the CLI, the HTTP API and entity files.

    Raises:
        NaiveTimeError: the time has no timezone.
        ValueError: the text is not an ISO-8601 time.
    """
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time: write ISO-8601 with a timezone, e.g. 2026-01-01T12:00:00Z, "
                         "or epoch milliseconds") from None
    if value.tzinfo is None:
        raise NaiveTimeError(f"{text!r} has no timezone; add Z or +00:00")
    return int(value.timestamp() * 1000)


def datetime_to_ms(value: datetime) -> int:
    """Epoch milliseconds of an aware datetime; a naive one is refused."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise DefinitionError(
            f"naive datetime {value!r}: give it a timezone, e.g. datetime(..., tzinfo=UTC)"
        )
    return (value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)

