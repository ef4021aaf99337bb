"""Payload validation: the JSON document a dispatch carries for its actor.

The API sends the payload as a protobuf `Struct` and limits it to 5 levels of nesting
and 50 KB. We check both when a payload is built, so a payload that exists can be sent.

Numbers: a `Struct` holds every number as an IEEE double. Floats travel unchanged;
an int travels exactly only if ``abs(n) <= 2**53``, so larger ints are refused rather
than silently rounded. Every number comes back from the wire as a `float`, as with the
other Frequenz clients (``5 == 5.0``, so a payload still compares equal after a round
trip). NaN and infinities are refused: they have no JSON form.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final, TypeAlias

__all__ = ["MAX_PAYLOAD_BYTES", "MAX_PAYLOAD_DEPTH", "Payload", "check_payload"]

Payload: TypeAlias = dict[str, Any]
"""A JSON object: str keys; values None, bool, int, float, str, list or nested object."""

MAX_PAYLOAD_DEPTH: Final = 5
"""Deepest nesting of objects and lists the API accepts (the top-level object is 1)."""

MAX_PAYLOAD_BYTES: Final = 50 * 1024
"""Largest payload the API accepts, measured as compact UTF-8 JSON."""

_MAX_EXACT_INT: Final = 2**53


def check_payload(payload: object, field: str = "payload") -> Payload:
    """Validate `payload` and return a private deep copy of it (tuples become lists).

    Raises:
        TypeError: a value is not JSON-like, or a key is not a string.
        ValueError: too deep, too large, an int too large for a double, or NaN/inf.
    """
    if not isinstance(payload, Mapping):
        raise TypeError(f"{field} must be a mapping with str keys, got {payload!r}")
    checked: Payload = _copy(payload, field, 1)
    size = len(json.dumps(checked, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_PAYLOAD_BYTES:
        raise ValueError(f"{field} is {size} bytes as JSON, more than {MAX_PAYLOAD_BYTES}")
    return checked


def _copy(value: Any, path: str, depth: int) -> Any:
    if isinstance(value, Mapping | list | tuple) and depth > MAX_PAYLOAD_DEPTH:
        raise ValueError(f"{path} nests deeper than {MAX_PAYLOAD_DEPTH} levels")
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path} has a non-str key {key!r}")
            out[key] = _copy(item, f"{path}.{key}", depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_copy(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if abs(value) > _MAX_EXACT_INT:
            raise ValueError(f"{path} is {value}, an int too large to send exactly (> 2**53)")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path} is {value!r}; payload numbers must be finite")
        return value
    raise TypeError(f"{path} has a value that is not JSON-like: {value!r}")
