"""People type ``in 1h30m`` or ``battery:li_ion``, not datetimes and enums: parse it here.

The pure ``parse_*`` functions turn times, durations, targets, lists of numbers, days or
months, dispatch ids and payloads into the values of the dispatch API. Each raises
`ValueError` with a message fit for the user (the CLI reports it against the option it
came from, as a usage error). None has side effects: times are relative to a ``now``
passed in, so they are testable. Naive ISO 8601 times are UTC, like every time of the
dispatch API; an offset such as ``+02:00`` gives a time in another zone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from ._payload import Payload, check_payload
from ._rule import Weekday
from ._target import (
    BatteryType,
    ComponentCategory,
    EvChargerType,
    InverterType,
    Target,
    TargetCategories,
    TargetCategory,
    TargetIds,
)

__all__ = [
    "MAX_IDS",
    "MONTH_NAMES",
    "SPAN_UNITS",
    "default_database_path",
    "enum_name",
    "parse_duration",
    "parse_ids",
    "parse_int_list",
    "parse_months",
    "parse_payload",
    "parse_target",
    "parse_time",
    "parse_weekdays",
]

MAX_IDS: Final = 10_000
"""Most dispatch ids one command line may name (a typo like ``1-1000000`` fails fast)."""


# -- durations and times ------------------------------------------------------------

_SPAN = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
SPAN_UNITS: Final = (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
"""The units of a duration, largest first, with their length in seconds."""
_DURATION_HELP: Final = "a number with a unit, like 90s, 15m, 1h30m or 2d"


def _parse_span(text: str) -> timedelta | None:
    """``1h30m`` as a timedelta; `None` if `text` is not in that form.

    Raises:
        OverflowError: too long for a timedelta.
    """
    compact = re.sub(r"\s+", "", text.lower())
    match = _SPAN.fullmatch(compact)
    if not compact or match is None:
        return None
    groups = zip(match.groups(), SPAN_UNITS, strict=True)
    return timedelta(seconds=sum(int(n) * unit for n, (_, unit) in groups if n))


def parse_duration(text: str) -> timedelta | None:
    """Parse a duration: ``90s``, ``15m``, ``1h30m``, ``2d``, ``1w``; ``none`` for `None`.

    Units (w, d, h, m, s) come largest first, each at most once; case and spaces do not
    matter. `None` means "no duration": the dispatch runs until it is changed.

    Example:
        >>> parse_duration("1h30m")
        datetime.timedelta(seconds=5400)
    """
    if text.strip().lower() == "none":
        return None
    try:
        span = _parse_span(text)
    except OverflowError:
        raise ValueError(f"{text!r} is too long") from None
    if span is None:
        raise ValueError(f"{text!r} is not a duration: use {_DURATION_HELP}, or 'none'")
    return span


_TIME_HELP: Final = (
    "use 'now', 'in 1h30m', '2h ago' or ISO 8601 like 2030-01-01T08:00 "
    "(UTC unless it has an offset)"
)


def parse_time(text: str, *, now: datetime) -> datetime:
    """Parse a time: ``now``, ``in 10m``, ``2h ago`` or ISO 8601; return it in UTC.

    Relative times count from `now` (timezone-aware). An ISO 8601 time without an offset
    is UTC, like every time in the dispatch API; a date alone is midnight UTC.

    Example:
        >>> parse_time("in 1h30m", now=datetime(2030, 1, 1, tzinfo=UTC))
        datetime.datetime(2030, 1, 1, 1, 30, tzinfo=datetime.timezone.utc)
    """
    stripped = text.strip()
    lower = stripped.lower()
    if lower == "now":
        return now.astimezone(UTC)
    relative = re.fullmatch(r"in\s+(.+)", lower)
    match = relative or re.fullmatch(r"(.+?)\s+ago", lower)
    if match is not None:
        span_text = match.group(1)
        try:
            span = _parse_span(span_text)
            moved = None if span is None else (now + span if relative else now - span)
        except OverflowError:
            raise ValueError(f"{text!r} is too far from now") from None
        if moved is None:
            raise ValueError(
                f"{text!r} is not a time: {span_text!r} is not a duration; use {_DURATION_HELP}"
            )
        return moved.astimezone(UTC)
    try:
        parsed = datetime.fromisoformat(stripped)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: {_TIME_HELP}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


# -- lists, ids, targets, payloads ---------------------------------------------------


def _items(text: str) -> list[str]:
    """Split ``a, b,c`` into items; an empty item is an error."""
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise ValueError(f"{text!r} has an empty item; separate items with single commas")
    return items


_RANGE = re.compile(r"(-?[0-9a-z]+)(?:-(-?[0-9a-z]+))?")


def parse_int_list(
    text: str,
    *,
    allowed: range | frozenset[int],
    what: str,
    names: Mapping[str, int] | None = None,
) -> tuple[int, ...]:
    """Parse ``8,20`` or ``9-17`` (ranges inclusive) into sorted unique ints.

    ``none`` gives an empty tuple. Values must be in `allowed`, described by `what` in
    errors (e.g. ``"0..59"``); `names` maps words (such as month names) to values.

    Example:
        >>> parse_int_list("0,15-17", allowed=range(60), what="0..59")
        (0, 15, 16, 17)
    """
    if text.strip().lower() == "none":
        return ()
    names = names or {}

    def value(token: str) -> int:
        if token in names:
            return names[token]
        try:
            number = int(token)
        except ValueError:
            raise ValueError(f"{token!r} is not a number in {what}") from None
        if number not in allowed:
            raise ValueError(f"{number} is not in {what}")
        return number

    out: set[int] = set()
    for item in _items(text.lower()):
        match = _RANGE.fullmatch(item)
        if match is None:
            raise ValueError(f"{item!r} is not a number or range in {what}")
        first = value(match.group(1))
        if match.group(2) is None:
            out.add(first)
            continue
        last = value(match.group(2))
        if last < first:
            raise ValueError(f"range {item!r} ends before it starts")
        out.update(n for n in range(first, last + 1) if n in allowed)
    return tuple(sorted(out))


MONTH_NAMES: Final = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
"""The months in order, in lower case; the first three letters name them too."""
_MONTH_NUMBERS: Final = {
    **{name: n for n, name in enumerate(MONTH_NAMES, 1)},
    **{name[:3]: n for n, name in enumerate(MONTH_NAMES, 1)},
}


def parse_months(text: str) -> tuple[int, ...]:
    """Parse months: ``1,6``, ``jan,jul``, ``jun-aug``; ``none`` for no months."""
    return parse_int_list(
        text, allowed=range(1, 13), what="1..12 or jan..dec", names=_MONTH_NUMBERS
    )


_DAYS: Final = tuple(day for day in Weekday if day is not Weekday.UNSPECIFIED)
_DAY_NAMES: Final = {
    **{day.name.lower(): day for day in _DAYS},
    **{day.name.lower()[:3]: day for day in _DAYS},
}


def parse_weekdays(text: str) -> tuple[Weekday, ...]:
    """Parse weekdays: ``mon,fri``, ``monday``, ``mon-fri``; ``none`` for no days.

    A range may wrap around the week: ``fri-mon`` is Friday to Monday.

    Example:
        >>> parse_weekdays("sat-sun")
        (<Weekday.SATURDAY: 6>, <Weekday.SUNDAY: 7>)
    """
    if text.strip().lower() == "none":
        return ()

    def day(token: str) -> Weekday:
        try:
            return _DAY_NAMES[token]
        except KeyError:
            raise ValueError(f"{token!r} is not a weekday; use mon, tue, ... sun") from None

    out: set[Weekday] = set()
    for item in _items(text.lower()):
        first_name, dash, last_name = item.partition("-")
        first = day(first_name.strip())
        if not dash:
            out.add(first)
            continue
        last = day(last_name.strip())
        span = (last - first) % 7
        out.update(_DAYS[(first - 1 + i) % 7] for i in range(span + 1))
    return tuple(sorted(out))


def parse_ids(texts: Iterable[str]) -> tuple[int, ...]:
    """Parse dispatch ids: ``3``, ``3-7`` (inclusive), ``1,4``; unique, in given order.

    Example:
        >>> parse_ids(["7", "1-3", "2"])
        (7, 1, 2, 3)
    """
    out: dict[int, None] = {}
    for text in texts:
        for item in _items(text):
            match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", item)
            if match is None:
                raise ValueError(f"{item!r} is not a dispatch id or a range like 3-7")
            first = int(match.group(1))
            last = first if match.group(2) is None else int(match.group(2))
            if last < first:
                raise ValueError(f"range {item!r} ends before it starts")
            if last >= 2**64:
                raise ValueError(f"{item!r}: dispatch ids are at most 2**64-1")
            if len(out) + last - first + 1 > MAX_IDS:
                raise ValueError(f"too many ids: at most {MAX_IDS} at once")
            out.update(dict.fromkeys(range(first, last + 1)))
    return tuple(out)


_SUBTYPES: Final[dict[ComponentCategory, type[BatteryType | InverterType | EvChargerType]]] = {
    ComponentCategory.BATTERY: BatteryType,
    ComponentCategory.INVERTER: InverterType,
    ComponentCategory.EV_CHARGER: EvChargerType,
}


def enum_name(member: ComponentCategory | BatteryType | InverterType | EvChargerType) -> str:
    """A category or subtype as `parse_target` reads it: ``li_ion``."""
    return member.name.lower()


def _known(enum_type: type[ComponentCategory | BatteryType | InverterType | EvChargerType]) -> str:
    return ", ".join(enum_name(m) for m in enum_type if m.name != "UNSPECIFIED")


def parse_target(text: str) -> Target:
    """Parse a target: component ids (``1,2,3``) or categories (``battery:li_ion,meter``).

    Category and subtype names are those of the enums, in any case, with ``-`` or
    ``_``. ``none`` is the empty target (no ids).

    Example:
        >>> parse_target("inverter:pv")
        TargetCategories(categories=frozenset({TargetCategory(category=<ComponentCategory.INVERTER: 3>, type=<InverterType.PV: 2>)}))
    """  # noqa: E501
    if text.strip().lower() == "none":
        return TargetIds(ids=frozenset())
    items = _items(text)
    numeric = [item.isdigit() for item in items]
    if all(numeric):
        ids = frozenset(int(item) for item in items)
        if max(ids) >= 2**64:
            raise ValueError(f"{text!r}: component ids are at most 2**64-1")
        return TargetIds(ids=ids)
    if any(numeric):
        raise ValueError(
            f"{text!r} mixes component ids and categories; a target is one or the other"
        )
    categories: set[TargetCategory] = set()
    for item in items:
        category_name, colon, type_name = item.lower().replace("-", "_").partition(":")
        try:
            category = ComponentCategory[category_name.strip().upper()]
        except KeyError:
            category = ComponentCategory.UNSPECIFIED
        if category is ComponentCategory.UNSPECIFIED:
            raise ValueError(
                f"{category_name.strip()!r} is not a component category; "
                f"use one of {_known(ComponentCategory)}"
            )
        if not colon:
            categories.add(TargetCategory(category=category))
            continue
        subtypes = _SUBTYPES.get(category)
        if subtypes is None:
            raise ValueError(f"category {enum_name(category)!r} has no subtypes")
        try:
            subtype = subtypes[type_name.strip().upper()]
        except KeyError:
            subtype = subtypes.UNSPECIFIED
        if subtype.name == "UNSPECIFIED":
            raise ValueError(
                f"{type_name.strip()!r} is not a {enum_name(category)} type; "
                f"use one of {_known(subtypes)}"
            )
        categories.add(TargetCategory(category=category, type=subtype))
    return TargetCategories(categories=frozenset(categories))


def parse_payload(text: str) -> Payload:
    """Parse a payload: a JSON object, within the API's size and nesting limits.

    Example:
        >>> parse_payload('{"power": 1000}')
        {'power': 1000}
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError(
            f"must be a JSON object like '{{\"power\": 1000}}', got {type(document).__name__}"
        )
    try:
        return check_payload(document)
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def default_database_path(environ: Mapping[str, str], home: Path) -> Path:
    """Where ``serve`` keeps its database unless told: the user's XDG data directory.

    ``$XDG_DATA_HOME/trio-dispatch/dispatches.sqlite3``, or under ``~/.local/share``
    when the variable is unset or not absolute (as the XDG spec says).
    """
    base = environ.get("XDG_DATA_HOME", "")
    data_home = Path(base) if base and Path(base).is_absolute() else home / ".local" / "share"
    return data_home / "trio-dispatch" / "dispatches.sqlite3"
