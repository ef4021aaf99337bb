"""Recurrence rules: the value types that say how a dispatch repeats.

The types mirror `frequenz.api.dispatch.v1.RecurrenceRule` field for field, in Python
terms: enums instead of integers, tuples instead of repeated fields, an `EndCriteria`
that holds either a count or an until time. They validate at construction so a rule that
exists is a rule the occurrence arithmetic (`_recurrence`) can answer questions about.

Example:
    >>> from datetime import datetime, UTC
    >>> RecurrenceRule(
    ...     frequency=Frequency.DAILY,
    ...     byhours=(8, 20),
    ...     end_criteria=EndCriteria(count=10),
    ... ).frequency
    <Frequency.DAILY: 3>
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import final

from . import _validate as v

__all__ = ["EndCriteria", "Frequency", "RecurrenceRule", "Weekday"]

MAX_COUNT = 4096
"""Largest `EndCriteria.count` accepted: the limit the dispatch API documents."""


class Frequency(enum.IntEnum):
    """How often a rule repeats; the numbers are the protobuf enum values."""

    UNSPECIFIED = 0
    MINUTELY = 1
    HOURLY = 2
    DAILY = 3
    WEEKLY = 4
    MONTHLY = 5
    YEARLY = 6


class Weekday(enum.IntEnum):
    """Days of the week; the numbers are the protobuf enum values (Monday is 1)."""

    UNSPECIFIED = 0
    MONDAY = 1
    TUESDAY = 2
    WEDNESDAY = 3
    THURSDAY = 4
    FRIDAY = 5
    SATURDAY = 6
    SUNDAY = 7


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class EndCriteria:
    """When a recurring dispatch stops repeating: after `count` runs, or before `until`.

    Exactly one of the two is set. With `until`, the last run is the last one that
    *starts* strictly before `until` (a run may continue past it).
    """

    count: int | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if (self.count is None) == (self.until is None):
            raise ValueError(
                f"EndCriteria needs exactly one of count or until, got count={self.count!r} "
                f"and until={self.until!r}"
            )
        if self.count is not None:
            v.integer("end_criteria.count", self.count, 1, MAX_COUNT)
        else:
            object.__setattr__(self, "until", v.utc_datetime("end_criteria.until", self.until))


_MONTHDAYS = frozenset([*range(-31, 0), *range(1, 32)])


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class RecurrenceRule:
    """An RFC 5545 style rule, as the dispatch API carries it.

    A `Dispatch` without a rule (or with `frequency=UNSPECIFIED`) runs once. The by-rules
    narrow or expand the occurrences the way dateutil's `rrule` does; they are stored
    sorted and without duplicates, so two rules that mean the same compare equal.
    """

    frequency: Frequency = Frequency.UNSPECIFIED
    interval: int = 1
    end_criteria: EndCriteria | None = None
    byminutes: tuple[int, ...] = field(default=())
    byhours: tuple[int, ...] = field(default=())
    byweekdays: tuple[Weekday, ...] = field(default=())
    bymonthdays: tuple[int, ...] = field(default=())
    bymonths: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.frequency, Frequency):
            try:
                object.__setattr__(self, "frequency", Frequency(self.frequency))
            except ValueError:
                raise ValueError(f"frequency must be a Frequency, got {self.frequency!r}") from None
        if self.is_recurring:
            v.integer("interval", self.interval, 1, v.UINT32_MAX)
        else:
            v.integer("interval", self.interval, 0, v.UINT32_MAX)
        if self.end_criteria is not None and not isinstance(self.end_criteria, EndCriteria):
            raise TypeError(
                f"end_criteria must be an EndCriteria or None, got {self.end_criteria!r}"
            )
        set_ = object.__setattr__
        set_(self, "byminutes", v.int_tuple("byminutes", self.byminutes, range(60), "0..59"))
        set_(self, "byhours", v.int_tuple("byhours", self.byhours, range(24), "0..23"))
        set_(self, "bymonths", v.int_tuple("bymonths", self.bymonths, range(1, 13), "1..12"))
        set_(
            self,
            "bymonthdays",
            v.int_tuple("bymonthdays", self.bymonthdays, _MONTHDAYS, "-31..-1 or 1..31"),
        )
        days = v.int_tuple("byweekdays", self.byweekdays, range(1, 8), "MONDAY..SUNDAY (1..7)")
        set_(self, "byweekdays", tuple(Weekday(d) for d in days))

    @property
    def is_recurring(self) -> bool:
        """Whether the rule repeats at all (its frequency is set)."""
        return self.frequency is not Frequency.UNSPECIFIED
