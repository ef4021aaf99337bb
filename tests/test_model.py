"""Construction-time validation of the model: each error names the field and the value."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from trio_dispatch import (
    BatteryType,
    ComponentCategory,
    Dispatch,
    EndCriteria,
    Frequency,
    InverterType,
    RecurrenceRule,
    TargetCategories,
    TargetCategory,
    TargetIds,
    Weekday,
)

START = datetime(2026, 1, 1, 8, tzinfo=UTC)
NAIVE = datetime(2026, 1, 1)  # noqa: DTZ001  (the point of the tests that use it)


def make(**kwargs: object) -> Dispatch:
    fields: dict[str, object] = {"id": 1, "type": "T", "start_time": START}
    fields.update(kwargs)
    return Dispatch(**fields)  # type: ignore[arg-type]


def test_datetimes_are_normalised_to_utc() -> None:
    cet = timezone(timedelta(hours=1))
    d = make(start_time=datetime(2026, 1, 1, 9, tzinfo=cet), update_time=START)
    assert d.start_time == START
    assert d.start_time.tzinfo is UTC


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"start_time": NAIVE},
            ValueError,
            "start_time must be timezone-aware, got naive 2026-01-01T00:00:00",
        ),
        (
            {"start_time": "2026-01-01"},
            TypeError,
            "start_time must be a datetime, got '2026-01-01'",
        ),
        ({"type": ""}, ValueError, "type must not be empty, got ''"),
        ({"type": "  "}, ValueError, "type must not be empty, got '  '"),
        ({"type": 3}, TypeError, "type must be a str, got 3"),
        ({"id": -1}, ValueError, "id must be in 0..18446744073709551615, got -1"),
        (
            {"duration": timedelta(seconds=1.5)},
            ValueError,
            "duration must be a whole number of seconds >= 0, got datetime.timedelta(seconds=1, microseconds=500000)",
        ),
        (
            {"duration": timedelta(seconds=-1)},
            ValueError,
            "duration must be a whole number of seconds >= 0, got datetime.timedelta(days=-1, seconds=86399)",
        ),
        (
            {"duration": timedelta(seconds=2**32)},
            ValueError,
            "duration must be at most 4294967295 seconds, got datetime.timedelta(days=49710, seconds=23296)",
        ),
        ({"duration": 60}, TypeError, "duration must be a timedelta or None, got 60"),
        ({"active": 1}, TypeError, "active must be a bool, got 1"),
        ({"dry_run": None}, TypeError, "dry_run must be a bool, got None"),
        (
            {"target": [1, 2]},
            TypeError,
            "target must be a TargetIds or TargetCategories, got [1, 2]",
        ),
        (
            {"payload": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}},
            ValueError,
            "payload.a.b.c.d.e nests deeper than 5 levels",
        ),
        (
            {"payload": {"a": [[[[[1]]]]]}},
            ValueError,
            "payload.a[0][0][0][0] nests deeper than 5 levels",
        ),
        (
            {"payload": {"x": "y" * 60_000}},
            ValueError,
            "payload is 60008 bytes as JSON, more than 51200",
        ),
        (
            {"payload": {"big": 2**53 + 1}},
            ValueError,
            "payload.big is 9007199254740993, an int too large to send exactly (> 2**53)",
        ),
        (
            {"payload": {"n": float("nan")}},
            ValueError,
            "payload.n is nan; payload numbers must be finite",
        ),
        ({"payload": {1: "a"}}, TypeError, "payload has a non-str key 1"),
        (
            {"payload": {"s": {1, 2}}},
            TypeError,
            "payload.s has a value that is not JSON-like: {1, 2}",
        ),
        ({"payload": [1]}, TypeError, "payload must be a mapping with str keys, got [1]"),
        (
            {
                "recurrence": RecurrenceRule(
                    frequency=Frequency.DAILY, end_criteria=EndCriteria(until=START)
                )
            },
            ValueError,
            "recurrence.end_criteria.until must be after start_time 2026-01-01T08:00:00+00:00, "
            "got 2026-01-01T08:00:00+00:00",
        ),
    ],
)
def test_invalid_dispatch_fields(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        make(**kwargs)


def test_payload_is_a_private_copy_with_lists() -> None:
    source = {"tags": ("a", "b"), "nested": {"x": [1.5, None, True]}}
    d = make(payload=source)
    source["nested"]["x"].append(2)  # type: ignore[index]
    assert d.payload == {"tags": ["a", "b"], "nested": {"x": [1.5, None, True]}}


def test_payload_at_the_limits_is_accepted() -> None:
    deepest = {"a": {"b": {"c": {"d": {"e": 1}}}}, "l": [[[[1]]]]}
    assert make(payload=deepest).payload == deepest
    assert make(payload={"n": 2**53}).payload == {"n": 2**53}


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"frequency": Frequency.DAILY, "interval": 0},
            ValueError,
            "interval must be in 1..4294967295, got 0",
        ),
        ({"frequency": 9}, ValueError, "frequency must be a Frequency, got 9"),
        ({"byminutes": (60,)}, ValueError, "byminutes values must be 0..59, got 60"),
        ({"byhours": (-1,)}, ValueError, "byhours values must be 0..23, got -1"),
        ({"bymonthdays": (0,)}, ValueError, "bymonthdays values must be -31..-1 or 1..31, got 0"),
        ({"bymonthdays": (32,)}, ValueError, "bymonthdays values must be -31..-1 or 1..31, got 32"),
        ({"bymonths": (13,)}, ValueError, "bymonths values must be 1..12, got 13"),
        (
            {"byweekdays": (Weekday.UNSPECIFIED,)},
            ValueError,
            "byweekdays values must be MONDAY..SUNDAY (1..7), got <Weekday.UNSPECIFIED: 0>",
        ),
        ({"byhours": "12"}, TypeError, "byhours must be a collection of ints, got '12'"),
        ({"byhours": (1.0,)}, TypeError, "byhours must contain ints, got 1.0"),
    ],
)
def test_invalid_recurrence_rules(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        RecurrenceRule(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "EndCriteria needs exactly one of count or until, got count=None and until=None"),
        (
            {"count": 1, "until": START},
            "EndCriteria needs exactly one of count or until, got count=1 and until="
            "datetime.datetime(2026, 1, 1, 8, 0, tzinfo=datetime.timezone.utc)",
        ),
        ({"count": 0}, "end_criteria.count must be in 1..4096, got 0"),
        ({"count": 4097}, "end_criteria.count must be in 1..4096, got 4097"),
        (
            {"until": NAIVE},
            "end_criteria.until must be timezone-aware, got naive 2026-01-01T00:00:00",
        ),
    ],
)
def test_invalid_end_criteria(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        EndCriteria(**kwargs)  # type: ignore[arg-type]


def test_rule_by_parts_are_sorted_and_deduplicated() -> None:
    rule = RecurrenceRule(
        frequency=Frequency.WEEKLY,
        byweekdays=(Weekday.FRIDAY, Weekday.MONDAY, Weekday.FRIDAY),
        bymonthdays=(5, -1, 5),
    )
    assert rule.byweekdays == (Weekday.MONDAY, Weekday.FRIDAY)
    assert rule.bymonthdays == (-1, 5)
    assert rule == RecurrenceRule(
        frequency=Frequency.WEEKLY, byweekdays=(Weekday.MONDAY, Weekday.FRIDAY), bymonthdays=(5, -1)
    )


def test_targets() -> None:
    assert TargetIds.of(3, 1, 3) == TargetIds(ids=frozenset({1, 3}))
    cats = TargetCategories.of(
        ComponentCategory.METER,
        TargetCategory(category=ComponentCategory.BATTERY, type=BatteryType.LI_ION),
    )
    assert TargetCategory(category=ComponentCategory.METER) in cats.categories
    with pytest.raises(
        ValueError,
        match=r"^type <InverterType.PV: 2> belongs to category INVERTER, not to BATTERY$",
    ):
        TargetCategory(category=ComponentCategory.BATTERY, type=InverterType.PV)
    with pytest.raises(ValueError, match=r"^ids must be ints in 0..2\*\*64-1, got -3$"):
        TargetIds.of(-3)


def test_unknown_enum_values_are_kept() -> None:
    unknown = ComponentCategory(99)
    assert unknown == 99
    assert unknown.name == "UNKNOWN_99"
    assert not unknown.is_known
    assert ComponentCategory.BATTERY.is_known
    assert TargetCategories.of(unknown).categories == {
        TargetCategory(category=ComponentCategory(99))
    }


def test_dispatch_is_hashable_and_frozen() -> None:
    d = make(payload={"a": 1})
    assert hash(d) == hash(make(payload={"a": 2}))
    assert d != make(payload={"a": 2})
    with pytest.raises(AttributeError):
        d.type = "X"  # type: ignore[misc]
