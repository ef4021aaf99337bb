"""People read tables and summaries, scripts read JSON: format both here, printing nothing.

JSON uses the model's field names, ISO 8601 UTC times ending in ``Z``, durations in
seconds, and enum names in upper case. The short forms of durations, targets and rules
(``1h30m``, ``battery:li_ion``, ``on mon-fri``) are those the parsers of `_cli_input` read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ._cli_input import MONTH_NAMES, SPAN_UNITS, enum_name
from ._client import StreamItem
from ._model import Dispatch
from ._rule import Frequency, RecurrenceRule, Weekday
from ._target import Target, TargetCategories, TargetCategory, TargetIds

__all__ = [
    "describe_recurrence",
    "dispatch_to_json",
    "format_duration",
    "format_record",
    "format_stream_line",
    "format_table",
    "format_target",
]


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _human_time(t: datetime | None) -> str:
    return "-" if t is None else t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _whole_numbers(value: Any) -> Any:
    """Payload numbers come back from the wire as floats; print whole ones as ints."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def _sorted_categories(target: TargetCategories) -> list[TargetCategory]:
    return sorted(target.categories, key=lambda c: (c.category.name, c.type.name if c.type else ""))


def _target_json(target: Target) -> dict[str, Any]:
    if isinstance(target, TargetIds):
        return {"ids": sorted(target.ids)}
    return {
        "categories": [
            {"category": c.category.name, "type": None if c.type is None else c.type.name}
            for c in _sorted_categories(target)
        ]
    }


def _rule_json(rule: RecurrenceRule | None) -> dict[str, Any] | None:
    if rule is None:
        return None
    end = rule.end_criteria
    return {
        "frequency": rule.frequency.name,
        "interval": rule.interval,
        "end_criteria": None if end is None else {"count": end.count, "until": _iso(end.until)},
        "byminutes": list(rule.byminutes),
        "byhours": list(rule.byhours),
        "byweekdays": [day.name for day in rule.byweekdays],
        "bymonthdays": list(rule.bymonthdays),
        "bymonths": list(rule.bymonths),
    }


def dispatch_to_json(dispatch: Dispatch) -> dict[str, Any]:
    """Every field of `dispatch` as JSON-ready values (see the module rules)."""
    duration = dispatch.duration
    return {
        "id": dispatch.id,
        "type": dispatch.type,
        "start_time": _iso(dispatch.start_time),
        "duration": None if duration is None else int(duration.total_seconds()),
        "target": _target_json(dispatch.target),
        "active": dispatch.active,
        "dry_run": dispatch.dry_run,
        "payload": _whole_numbers(dispatch.payload),
        "recurrence": _rule_json(dispatch.recurrence),
        "create_time": _iso(dispatch.create_time),
        "update_time": _iso(dispatch.update_time),
        "end_time": _iso(dispatch.end_time),
    }


def format_duration(duration: timedelta | None) -> str:
    """The short form `parse_duration` reads: ``1h30m``, ``2d``, ``0s``, ``none``."""
    if duration is None:
        return "none"
    seconds = int(duration.total_seconds())
    parts: list[str] = []
    for unit, size in SPAN_UNITS[1:]:  # days at most: "14d" reads better than "2w"
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def format_target(target: Target) -> str:
    """The short form `parse_target` reads: ``1,2,3`` or ``battery:li_ion,meter``."""
    if isinstance(target, TargetIds):
        return ",".join(str(i) for i in sorted(target.ids)) or "none"
    return ",".join(
        enum_name(c.category) + ("" if c.type is None else f":{enum_name(c.type)}")
        for c in _sorted_categories(target)
    )


_EVERY: Final = {
    Frequency.MINUTELY: ("every minute", "minutes"),
    Frequency.HOURLY: ("hourly", "hours"),
    Frequency.DAILY: ("daily", "days"),
    Frequency.WEEKLY: ("weekly", "weeks"),
    Frequency.MONTHLY: ("monthly", "months"),
    Frequency.YEARLY: ("yearly", "years"),
}


def _compact(values: Sequence[int], label: Callable[[int], str] = str) -> str:
    """Sorted values as a list the parsers read, runs of three or more as ranges."""
    runs: list[list[int]] = []
    for value in values:
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return ",".join(
        f"{label(run[0])}-{label(run[-1])}" if len(run) >= 3 else ",".join(map(label, run))
        for run in runs
    )


def describe_recurrence(rule: RecurrenceRule | None) -> str:
    """A one-line summary of a rule, e.g. ``every 2 days, hours 8,20, 10 times``."""
    if rule is None or not rule.is_recurring:
        return "once"
    once, many = _EVERY[rule.frequency]
    parts = [once if rule.interval == 1 else f"every {rule.interval} {many}"]

    if rule.bymonths:
        parts.append("months " + _compact(rule.bymonths, lambda m: MONTH_NAMES[m - 1][:3]))
    if rule.bymonthdays:
        parts.append("monthdays " + _compact(rule.bymonthdays))
    if rule.byweekdays:
        parts.append("on " + _compact(rule.byweekdays, lambda d: Weekday(d).name.lower()[:3]))
    if rule.byhours:
        parts.append("hours " + _compact(rule.byhours))
    if rule.byminutes:
        parts.append("minutes " + _compact(rule.byminutes))
    end = rule.end_criteria
    if end is not None and end.count is not None:
        parts.append("1 time" if end.count == 1 else f"{end.count} times")
    elif end is not None:
        parts.append(f"until {_human_time(end.until)}")
    return ", ".join(parts)


_COLUMNS: Final = (
    "ID",
    "TYPE",
    "START",
    "DURATION",
    "TARGET",
    "ACTIVE",
    "DRY-RUN",
    "RECURRENCE",
    "END",
)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _row(dispatch: Dispatch) -> tuple[str, ...]:
    return (
        str(dispatch.id),
        dispatch.type,
        _human_time(dispatch.start_time),
        format_duration(dispatch.duration),
        format_target(dispatch.target),
        _yes(dispatch.active),
        _yes(dispatch.dry_run),
        describe_recurrence(dispatch.recurrence),
        "never" if dispatch.end_time is None else _human_time(dispatch.end_time),
    )


def format_table(dispatches: Iterable[Dispatch]) -> str:
    """An aligned table of dispatches, one per line, under a header line."""
    rows = [_COLUMNS, *(_row(d) for d in dispatches)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def format_record(dispatch: Dispatch) -> str:
    """One dispatch, one field per line (for ``get``, ``create`` and ``update``)."""
    row = dict(zip(_COLUMNS, _row(dispatch), strict=True))
    fields = [
        ("id", row["ID"]),
        ("type", row["TYPE"]),
        ("start", row["START"]),
        ("duration", row["DURATION"]),
        ("target", row["TARGET"]),
        ("active", row["ACTIVE"]),
        ("dry-run", row["DRY-RUN"]),
        ("recurrence", row["RECURRENCE"]),
        ("end", row["END"]),
        ("payload", json.dumps(_whole_numbers(dispatch.payload), ensure_ascii=False)),
        ("created", _human_time(dispatch.create_time)),
        ("updated", _human_time(dispatch.update_time)),
    ]
    return "\n".join(f"{name:<11} {value}" for name, value in fields)


def format_stream_line(item: StreamItem, as_json: bool) -> str:
    """One event of ``stream``: the event and the table row, or a JSON object."""
    event = item.event.name.lower()
    if as_json:
        return json.dumps({"event": event, "dispatch": dispatch_to_json(item.dispatch)})
    return f"{event:<7}  " + "  ".join(_row(item.dispatch))
