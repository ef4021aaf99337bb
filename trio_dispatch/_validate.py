"""Small argument checks shared by the model types.

Every check raises at once with a message that names the field and the value, so a
user who passes bad input learns what to fix without reading our code.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Final

UINT32_MAX: Final = 2**32 - 1


def utc_datetime(field: str, value: object) -> datetime:
    """Return `value` as a UTC datetime, refusing naive datetimes and non-datetimes."""
    if not isinstance(value, datetime):
        raise TypeError(f"{field} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def optional_utc_datetime(field: str, value: object) -> datetime | None:
    """Like `utc_datetime`, letting `None` through."""
    return None if value is None else utc_datetime(field, value)


def whole_seconds(field: str, value: object) -> timedelta | None:
    """Check a duration: None, or a whole number of seconds in 0..uint32 max."""
    if value is None:
        return None
    if not isinstance(value, timedelta):
        raise TypeError(f"{field} must be a timedelta or None, got {value!r}")
    if value.microseconds or value < timedelta(0):
        raise ValueError(f"{field} must be a whole number of seconds >= 0, got {value!r}")
    if value.total_seconds() > UINT32_MAX:
        raise ValueError(f"{field} must be at most {UINT32_MAX} seconds, got {value!r}")
    return value


def integer(field: str, value: object, lo: int, hi: int) -> int:
    """Check an integer (not a bool) in ``lo..hi`` inclusive."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an int, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{field} must be in {lo}..{hi}, got {value!r}")
    return value


def int_tuple(
    field: str, values: object, allowed: range | frozenset[int], what: str
) -> tuple[int, ...]:
    """Check a collection of integers against the allowed values; return a sorted tuple.

    `what` describes the allowed values for the error message, e.g. ``"0..59"``.
    """
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise TypeError(f"{field} must be a collection of ints, got {values!r}")
    out: list[int] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{field} must contain ints, got {v!r}")
        if v not in allowed:
            raise ValueError(f"{field} values must be {what}, got {v!r}")
        out.append(v)
    return tuple(sorted(set(out)))
