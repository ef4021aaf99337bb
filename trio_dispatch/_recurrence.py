"""Occurrence arithmetic: when does a dispatch run, and is it running now?

A dispatch has a start, an optional duration and an optional `RecurrenceRule`. This
module answers the questions the scheduler asks about it ("is it running at t?", "when
does it next start?", "which run covers t?", "when does the last run end?") without I/O,
without reading a clock and, above all, at a cost that does not grow with the age of the
dispatch.

Theory of operation
-------------------

**What the occurrences are.** With a recurring rule, the occurrence starts are exactly
what ``dateutil.rrule.rrule(freq, dtstart=start, interval=..., byminute=..., byhour=...,
byweekday=..., bymonthday=..., bymonth=...)`` yields, in UTC, where every empty by-tuple
is passed as ``None``. That inherits rrule's conventions, which we reproduce on purpose:

* dtstart fills in the by-parts that are not given: DAILY and coarser rules fire at
  dtstart's hour and minute unless `byhours`/`byminutes` say otherwise, HOURLY at
  dtstart's minute, and every rule at dtstart's second. MONTHLY without `bymonthdays` and
  `byweekdays` fires on dtstart's day of the month (so "monthly on the 31st" skips short
  months); YEARLY likewise on dtstart's day in dtstart's month (unless `bymonths` is
  given); WEEKLY without `bymonthdays` and `byweekdays` on dtstart's weekday.
* rrule **drops the microseconds** of dtstart: a rule starting at 08:00:00.5 fires at
  08:00:00, 08:00:00 the next day, and so on. The first occurrence may therefore be up
  to a second *before* `start`. A dispatch without a rule runs at `start` exactly.
* Periods are counted from dtstart: every `interval` minutes, hours or days (exact UTC
  arithmetic), every `interval` weeks where weeks start on Monday (rrule's default
  `wkst`; we do not follow `calendar.setfirstweekday`), every `interval` calendar months
  or years. Coarse by-parts filter the candidates of each period, finer ones expand them
  (e.g. DAILY with `byhours=(8, 20)` fires twice a day; HOURLY with `byhours=(8,)` only
  keeps the in-phase hours that are 08:xx).
* Only occurrences at or after (truncated) dtstart count.

The end criteria are the API's: ``count=n`` keeps the first n occurrences; ``until=u``
keeps the occurrences that start **strictly before** u (rrule's own `until` is
inclusive). Rules whose by-parts can never match (February 30th, HOURLY every 2 hours
from an even hour restricted to odd hours, ...) simply have no occurrences; rrule would
raise or search until year 9999, we answer at once.

**Horizon.** Every search is bounded: occurrences that start `HORIZON` (146 097 days,
one 400-year cycle of the Gregorian calendar) or more after the rule's start, or after
year 9999, are ignored. A rule with interval 1 repeats its calendar pattern every 400
years, so only rules with huge intervals (yearly every 1000 years, ...) notice.

**Runs.** Each occurrence start s opens a run ``[s, s + duration)``, end exclusive.

* ``duration=None`` means "until changed": the dispatch runs from its first occurrence
  onward, forever. There is a single, unbounded run; later occurrences are swallowed by
  it, so `next_run_after` only ever reports the first start.
* ``duration=0`` runs never (`started_at` is always false, `run_at` is ``None``), but its
  runs still have starts: `next_run_after` reports them and `runs_between` yields the
  empty runs ``[s, s)`` whose start lies in the window.
* Runs may overlap when the duration is longer than the gap between occurrences. Time t
  is running if *any* run covers it; `run_at` returns the covering run that started last
  (all runs have the same length, so it also ends last); `runs_between` yields them all.
* An inactive schedule has no runs at all.

**How it stays fast.** Times are integers (seconds, or microseconds at the API edge,
counted from 0001-01-01T00:00Z, a Monday). A rule is compiled once into a `_Pattern`:
the by-parts with rrule's defaults filled in, the sorted times of day (or minute offsets
within an hour) it expands to, and the phase of its periods. To find the first
occurrence at or after x, `_Pattern` computes the period that contains x from the phase
by integer division (or calendar month arithmetic), then looks inside it by bisection;
when a day, hour or minute is filtered out it jumps straight to the next candidate
(the next allowed day via per-month tables of allowed days, the next allowed hour, the
next in-phase period). The backward search (last occurrence at or before x, used for
"is it running") mirrors it and never looks further back than the duration. So plain
rules answer in a few microseconds whatever their age; sparse rules pay for the gaps
they skip, month by month, never occurrence by occurrence from the start.

`count` is the one criterion that needs the index of an occurrence. When each period
holds the same occurrences (no filter that can reject a whole period), the n-th one is
computed directly; otherwise the rule is walked once, lazily, up to its count-th
occurrence (at most `MAX_COUNT` = 4096 steps) and the result is cached on the
`Schedule`, so later calls are O(1) amortised. Emptiness is decided once too: by-parts
that cannot match are caught when compiling, and the first occurrence is cached, so
a rule without occurrences answers every later question immediately.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from math import gcd
from typing import Final, final

from ._rule import Frequency, RecurrenceRule

__all__ = ["HORIZON", "Run", "Schedule"]

HORIZON: Final = timedelta(days=146097)
"""How far after its start a rule is searched: one 400-year Gregorian cycle."""

_EPOCH: Final = datetime(1, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_MICRO: Final = 1_000_000
_DAY: Final = 86400
_WEEK: Final = 7 * _DAY
_HORIZON_S: Final = 146097 * _DAY
_END_S: Final = date(9999, 12, 31).toordinal() * _DAY  # 10000-01-01T00:00, exclusive
_MAX_US: Final = _END_S * _MICRO - 1  # datetime.max
_DIM: Final = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _to_us(t: datetime) -> int:
    """Microseconds since 0001-01-01T00:00Z; any aware datetime, TypeError if naive."""
    return (t - _EPOCH) // _US


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=min(us, _MAX_US))


def _dim(year: int, month: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _DIM[month]


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One run of a dispatch: from `start` (inclusive) to `end` (exclusive).

    Example:
        >>> from datetime import datetime, UTC
        >>> Run(start=datetime(2024, 1, 1, 8, tzinfo=UTC), end=None).end is None
        True
    """

    start: datetime
    """When the run starts (UTC)."""
    end: datetime | None
    """When it ends (UTC, exclusive); ``None`` for a dispatch that runs until changed."""


_NOTHING: Final[frozenset[int]] = frozenset()


def _frozen(values: tuple[int, ...]) -> frozenset[int]:
    # Most by-parts are empty; sharing one empty set saves ~200 B per part per dispatch.
    return frozenset(values) if values else _NOTHING


@final
class _Pattern:
    """A compiled recurring rule: occurrence search in integer seconds.

    `next(x, lim)` returns the first occurrence o with x <= o <= lim, `prev(x, lo)` the
    last one with lo <= o <= x; both expect the bounds to lie at or after dtstart.
    """

    # One per recurring dispatch, so kept small: no instance dict.
    __slots__ = (
        "_mcache",
        "dt0",
        "empty",
        "freq",
        "has_f",
        "hours",
        "hset",
        "interval",
        "mdays",
        "minutes",
        "month_list",
        "months",
        "mset",
        "n0",
        "next",
        "offsets",
        "prev",
        "second",
        "times",
        "wd_only",
        "wdays",
    )

    def __init__(self, rule: RecurrenceRule, dt0: int) -> None:
        freq, i = rule.frequency, rule.interval
        d0, sod = divmod(dt0, _DAY)
        first_day = date.fromordinal(d0 + 1)
        hour0, rest = divmod(sod, 3600)
        minute0, second0 = divmod(rest, 60)
        months, mdays = rule.bymonths, rule.bymonthdays
        wdays = tuple(w - 1 for w in rule.byweekdays)  # Monday = 0, like date.weekday()
        if not mdays and not wdays:  # rrule's defaults taken from dtstart
            if freq is Frequency.YEARLY:
                months, mdays = months or (first_day.month,), (first_day.day,)
            elif freq is Frequency.MONTHLY:
                mdays = (first_day.day,)
            elif freq is Frequency.WEEKLY:
                wdays = (d0 % 7,)
        self.dt0 = dt0
        self.freq = freq
        self.interval = i
        self.months = _frozen(months)
        self.month_list = tuple(sorted(self.months))
        self.mdays = mdays
        self.wdays = _frozen(wdays)
        self.has_f = bool(months or mdays or wdays)
        self.wd_only = bool(wdays) and not months and not mdays
        self._mcache: dict[int, tuple[int, ...]] = {}
        hours, minutes = rule.byhours, rule.byminutes
        self.hours, self.hset = hours, _frozen(hours)
        self.minutes, self.mset = minutes, _frozen(minutes)
        self.second = second0
        # Times of day (DAILY and coarser) or offsets within the hour (HOURLY).
        self.times = tuple(
            sorted(
                h * 3600 + m * 60 + second0
                for h in hours or (hour0,)
                for m in minutes or (minute0,)
            )
        )
        self.offsets = tuple(m * 60 + second0 for m in minutes or (minute0,))
        unit = self._bind(freq, d0, first_day)
        self.empty = self._never_matches(unit)

    def _bind(self, freq: Frequency, d0: int, first_day: date) -> int:
        """Set the period phase `n0` and the search methods; return the fixed unit (s)."""
        self.next: Callable[[int, int], int | None]
        self.prev: Callable[[int, int], int | None]
        match freq:
            case Frequency.MINUTELY:
                self.n0 = self.dt0 // 60
                self.next, self.prev = self._next_minutely, self._prev_minutely
                return 60
            case Frequency.HOURLY:
                self.n0 = self.dt0 // 3600
                self.next, self.prev = self._next_hourly, self._prev_hourly
                return 3600
            case Frequency.DAILY:
                self.n0 = d0
                self.next, self.prev = self._next_daily, self._prev_daily
                return _DAY
            case Frequency.WEEKLY:
                self.n0 = d0 // 7
                self.next, self.prev = self._next_weekly, self._prev_weekly
            case Frequency.MONTHLY:
                self.n0 = first_day.year * 12 + first_day.month - 1
                self.next, self.prev = self._next_monthly, self._prev_monthly
            case _:
                self.n0 = first_day.year
                self.next, self.prev = self._next_yearly, self._prev_yearly
        return 0  # calendar periods: no fixed unit

    def _never_matches(self, unit: int) -> bool:
        """Whether the by-parts rule out every occurrence, whatever the date."""
        if self.has_f and not any(
            self._month(m, dim, wd)
            for m in self.months or range(1, 13)
            for dim in ((28, 29) if m == 2 else (_DIM[m],))
            for wd in range(7)
        ):
            return True
        if not unit:
            return False
        # In-phase units fall on residues n0 (mod gcd(interval, units per week)) of the
        # week; at least one must be an allowed weekday, hour and minute.
        hset = self.hset if unit < _DAY else frozenset[int]()
        mset = self.mset if unit < 3600 else frozenset[int]()
        if not (self.wdays or hset or mset):
            return False
        per_week = _WEEK // unit
        g = gcd(self.interval, per_week)
        wdays = self.wdays or range(7)
        hours = (hset or range(24)) if unit < _DAY else (0,)
        minutes = (mset or range(60)) if unit < 3600 else (0,)
        if len(wdays) * len(hours) * len(minutes) <= per_week // g:  # try each allowed slot
            return all(
                ((w * _DAY + h * 3600 + m * 60) // unit - self.n0) % g
                for w in wdays
                for h in hours
                for m in minutes
            )
        for residue in range(self.n0 % g, per_week, g):  # try each reachable slot
            s = residue * unit
            if (
                (not self.wdays or s // _DAY in self.wdays)
                and (not hset or s % _DAY // 3600 in hset)
                and (not mset or s % 3600 // 60 in mset)
            ):
                return False
        return True

    def uniform(self) -> tuple[int, int, tuple[int, ...]] | None:
        """``(first period start, period length, offsets)`` if every period is alike."""
        i, freq = self.interval, self.freq
        if freq is Frequency.WEEKLY and self.wd_only:
            days = sorted(self.wdays)
            return self.n0 * _WEEK, i * _WEEK, tuple(d * _DAY + t for d in days for t in self.times)
        if self.has_f:
            return None
        if freq is Frequency.DAILY:
            return self.n0 * _DAY, i * _DAY, self.times
        if freq is Frequency.HOURLY and not self.hours:
            return self.n0 * 3600, i * 3600, self.offsets
        if freq is Frequency.MINUTELY and not self.hours and not self.minutes:
            return self.n0 * 60, i * 60, (self.second,)
        return None

    # -- days allowed by bymonths / bymonthdays / byweekdays ------------------------------

    def _month(self, month: int, dim: int, first_wd: int) -> tuple[int, ...]:
        """Allowed days of a month of `dim` days whose 1st falls on weekday `first_wd`."""
        key = month * 1000 + dim * 10 + first_wd
        days = self._mcache.get(key)
        if days is None:
            if self.months and month not in self.months:
                days = ()
            else:
                if self.mdays:
                    cands = {d if d > 0 else dim + 1 + d for d in self.mdays}
                    cands = {d for d in cands if 1 <= d <= dim}
                else:
                    cands = set(range(1, dim + 1))
                if self.wdays:
                    cands = {d for d in cands if (first_wd + d - 1) % 7 in self.wdays}
                days = tuple(sorted(cands))
            self._mcache[key] = days
        return days

    def _day_ok(self, d: int) -> bool:
        if self.wd_only:
            return d % 7 in self.wdays
        dt = date.fromordinal(d + 1)
        first = d - dt.day + 1
        return dt.day in self._month(dt.month, _dim(dt.year, dt.month), first % 7)

    def _next_day(self, d: int, lim_d: int) -> int | None:
        """First allowed day >= d and <= lim_d."""
        if d > lim_d:
            return None
        if self.wd_only:
            while d % 7 not in self.wdays:
                d += 1
            return d if d <= lim_d else None
        dt = date.fromordinal(d + 1)
        y, m, dom = dt.year, dt.month, dt.day
        first = d - dom + 1
        while first <= lim_d:
            dim = _dim(y, m)
            days = self._month(m, dim, first % 7)
            if days and days[-1] >= dom:
                r = first + days[bisect_left(days, dom)] - 1
                return r if r <= lim_d else None
            first += dim
            dom = 1
            m += 1
            if m == 13:
                m, y = 1, y + 1
        return None

    def _prev_day(self, d: int, lo_d: int) -> int | None:
        """Last allowed day <= d and >= lo_d."""
        if d < lo_d:
            return None
        if self.wd_only:
            while d % 7 not in self.wdays:
                d -= 1
            return d if d >= lo_d else None
        dt = date.fromordinal(d + 1)
        y, m, dom = dt.year, dt.month, dt.day
        first = d - dom + 1
        while True:
            days = self._month(m, _dim(y, m), first % 7)
            if days and days[0] <= dom:
                r = first + days[bisect_right(days, dom) - 1] - 1
                return r if r >= lo_d else None
            if first - 1 < lo_d:
                return None
            m -= 1
            if m == 0:
                m, y = 12, y - 1
            dom = _dim(y, m)
            first -= dom

    # -- MINUTELY: one candidate per in-phase minute, filtered ------------------------------

    def _next_minutely(self, x: int, lim: int) -> int | None:
        i, n0, s = self.interval, self.n0, self.second
        hours, minutes = self.hours, self.minutes
        while True:
            n = (x - s + 59) // 60
            r = (n - n0) % i
            if r:
                n += i - r
            o = n * 60 + s
            if o > lim:
                return None
            d, mod = divmod(n, 1440)
            if self.has_f and not self._day_ok(d):
                f = self._next_day(d + 1, lim // _DAY)
                if f is None:
                    return None
                x = f * _DAY
                continue
            hod, moh = divmod(mod, 60)
            if hours and hod not in self.hset:
                k = bisect_right(hours, hod)
                x = (
                    d * _DAY + hours[k] * 3600
                    if k < len(hours)
                    else (d + 1) * _DAY + hours[0] * 3600
                )
                continue
            if minutes and moh not in self.mset:
                k = bisect_right(minutes, moh)
                x = (n - moh + minutes[k]) * 60 if k < len(minutes) else (n - moh + 60) * 60
                continue
            return o

    def _prev_minutely(self, x: int, lo: int) -> int | None:
        i, n0, s = self.interval, self.n0, self.second
        hours, minutes = self.hours, self.minutes
        while True:
            n = (x - s) // 60
            n -= (n - n0) % i
            o = n * 60 + s
            if o < lo:
                return None
            d, mod = divmod(n, 1440)
            if self.has_f and not self._day_ok(d):
                f = self._prev_day(d - 1, lo // _DAY)
                if f is None:
                    return None
                x = f * _DAY + _DAY - 1
                continue
            hod, moh = divmod(mod, 60)
            if hours and hod not in self.hset:
                k = bisect_left(hours, hod)
                x = (
                    d * _DAY + hours[k - 1] * 3600 + 3599
                    if k
                    else d * _DAY - _DAY + hours[-1] * 3600 + 3599
                )
                continue
            if minutes and moh not in self.mset:
                k = bisect_left(minutes, moh)
                x = (n - moh + minutes[k - 1]) * 60 + 59 if k else (n - moh) * 60 - 1
                continue
            return o

    # -- HOURLY: in-phase hours, filtered, expanded by minute offsets -----------------------

    def _next_hourly(self, x: int, lim: int) -> int | None:
        i, h0, hours, offsets = self.interval, self.n0, self.hours, self.offsets
        while True:
            h, off = divmod(x, 3600)
            r = (h - h0) % i
            if r:
                h += i - r
                off = 0
            if h * 3600 > lim:
                return None
            d, hod = divmod(h, 24)
            if self.has_f and not self._day_ok(d):
                f = self._next_day(d + 1, lim // _DAY)
                if f is None:
                    return None
                x = f * _DAY
                continue
            if hours and hod not in self.hset:
                k = bisect_right(hours, hod)
                x = (
                    d * _DAY + hours[k] * 3600
                    if k < len(hours)
                    else (d + 1) * _DAY + hours[0] * 3600
                )
                continue
            k = bisect_left(offsets, off)
            if k < len(offsets):
                o = h * 3600 + offsets[k]
                return o if o <= lim else None
            x = (h + 1) * 3600

    def _prev_hourly(self, x: int, lo: int) -> int | None:
        i, h0, hours, offsets = self.interval, self.n0, self.hours, self.offsets
        while True:
            h, off = divmod(x, 3600)
            r = (h - h0) % i
            if r:
                h -= r
                off = 3599
            if h < lo // 3600:
                return None
            d, hod = divmod(h, 24)
            if self.has_f and not self._day_ok(d):
                f = self._prev_day(d - 1, lo // _DAY)
                if f is None:
                    return None
                x = f * _DAY + _DAY - 1
                continue
            if hours and hod not in self.hset:
                k = bisect_left(hours, hod)
                x = (
                    d * _DAY + hours[k - 1] * 3600 + 3599
                    if k
                    else d * _DAY - _DAY + hours[-1] * 3600 + 3599
                )
                continue
            k = bisect_right(offsets, off)
            if k:
                o = h * 3600 + offsets[k - 1]
                return o if o >= lo else None
            x = h * 3600 - 1

    # -- DAILY and WEEKLY: in-phase days (weeks), filtered, expanded by times of day -------

    def _next_daily(self, x: int, lim: int) -> int | None:
        i, d0, times = self.interval, self.n0, self.times
        d, s = divmod(x, _DAY)
        lim_d = lim // _DAY
        while d <= lim_d:
            r = (d - d0) % i
            if r:
                d, s = d + i - r, 0
                continue
            if self.has_f:
                f = self._next_day(d, lim_d)
                if f is None:
                    return None
                if f != d:
                    d, s = f, 0
                    continue
            k = bisect_left(times, s)
            if k < len(times):
                o = d * _DAY + times[k]
                return o if o <= lim else None
            d, s = d + i, 0
        return None

    def _prev_daily(self, x: int, lo: int) -> int | None:
        i, d0, times = self.interval, self.n0, self.times
        d, s = divmod(x, _DAY)
        lo_d = lo // _DAY
        while d >= lo_d:
            r = (d - d0) % i
            if r:
                d, s = d - r, _DAY - 1
                continue
            if self.has_f:
                f = self._prev_day(d, lo_d)
                if f is None:
                    return None
                if f != d:
                    d, s = f, _DAY - 1
                    continue
            k = bisect_right(times, s)
            if k:
                o = d * _DAY + times[k - 1]
                return o if o >= lo else None
            d, s = d - i, _DAY - 1
        return None

    def _next_weekly(self, x: int, lim: int) -> int | None:
        i, w0, times = self.interval, self.n0, self.times
        d, s = divmod(x, _DAY)
        lim_d = lim // _DAY
        while d <= lim_d:
            r = (d // 7 - w0) % i
            if r:
                d, s = (d // 7 + i - r) * 7, 0
                continue
            f = self._next_day(d, lim_d)
            if f is None:
                return None
            if f != d:
                d, s = f, 0
                continue
            k = bisect_left(times, s)
            if k < len(times):
                o = d * _DAY + times[k]
                return o if o <= lim else None
            d, s = d + 1, 0
        return None

    def _prev_weekly(self, x: int, lo: int) -> int | None:
        i, w0, times = self.interval, self.n0, self.times
        d, s = divmod(x, _DAY)
        lo_d = lo // _DAY
        while d >= lo_d:
            r = (d // 7 - w0) % i
            if r:
                d, s = (d // 7 - r) * 7 + 6, _DAY - 1
                continue
            f = self._prev_day(d, lo_d)
            if f is None:
                return None
            if f != d:
                d, s = f, _DAY - 1
                continue
            k = bisect_right(times, s)
            if k:
                o = d * _DAY + times[k - 1]
                return o if o >= lo else None
            d, s = d - 1, _DAY - 1
        return None

    # -- MONTHLY and YEARLY: in-phase calendar months (years), allowed days, times ------

    def _next_monthly(self, x: int, lim: int) -> int | None:
        return self._next_calendar(x, lim, yearly=False)

    def _prev_monthly(self, x: int, lo: int) -> int | None:
        return self._prev_calendar(x, lo, yearly=False)

    def _next_yearly(self, x: int, lim: int) -> int | None:
        return self._next_calendar(x, lim, yearly=True)

    def _prev_yearly(self, x: int, lo: int) -> int | None:
        return self._prev_calendar(x, lo, yearly=True)

    def _next_calendar(self, x: int, lim: int, *, yearly: bool) -> int | None:
        i, n0, times = self.interval, self.n0, self.times
        d, s = divmod(x, _DAY)
        lim_d = lim // _DAY
        if d > lim_d:
            return None
        dt = date.fromordinal(d + 1)
        y, m, dom = dt.year, dt.month, dt.day
        first = d - dom + 1
        while first <= lim_d:
            r = (y - n0) % i if yearly else (y * 12 + m - 1 - n0) % i
            if r:  # jump to the next in-phase year (month)
                if yearly:
                    y, m = y + i - r, 1
                else:
                    y, m = divmod(y * 12 + m - 1 + i - r, 12)
                    m += 1
                if y > 9999:
                    return None
                first, dom, s = date(y, m, 1).toordinal() - 1, 1, 0
                continue
            if self.months and m not in self.months:  # on to the next allowed month
                k = bisect_right(self.month_list, m)
                y, m = (
                    (y, self.month_list[k])
                    if k < len(self.month_list)
                    else (y + 1, self.month_list[0])
                )
                if y > 9999:
                    return None
                first, dom, s = date(y, m, 1).toordinal() - 1, 1, 0
                continue
            dim = _dim(y, m)
            days = self._month(m, dim, first % 7)
            k = bisect_left(days, dom)
            if k < len(days) and days[k] == dom:
                j = bisect_left(times, s)
                if j < len(times):
                    o = (first + dom - 1) * _DAY + times[j]
                    return o if o <= lim else None
                k += 1
            if k < len(days):
                o = (first + days[k] - 1) * _DAY + times[0]
                return o if o <= lim else None
            first, dom, s = first + dim, 1, 0
            m += 1
            if m == 13:
                m, y = 1, y + 1
        return None

    def _prev_calendar(self, x: int, lo: int, *, yearly: bool) -> int | None:
        i, n0, times = self.interval, self.n0, self.times
        d, s = divmod(x, _DAY)
        lo_d = lo // _DAY
        dt = date.fromordinal(d + 1)
        y, m, dom = dt.year, dt.month, dt.day
        first = d - dom + 1
        dim = _dim(y, m)
        while first + dim > lo_d:
            r = (y - n0) % i if yearly else (y * 12 + m - 1 - n0) % i
            if r:  # back to the last day of the previous in-phase year (month)
                if yearly:
                    y, m = y - r, 12
                else:
                    y, m = divmod(y * 12 + m - 1 - r, 12)
                    m += 1
                if y < 1:
                    return None
                dim = _dim(y, m)
                first, dom, s = date(y, m, 1).toordinal() - 1, dim, _DAY - 1
                continue
            if self.months and m not in self.months:  # back to the previous allowed month
                k = bisect_left(self.month_list, m)
                y, m = (y, self.month_list[k - 1]) if k else (y - 1, self.month_list[-1])
                if y < 1:
                    return None
                dim = _dim(y, m)
                first, dom, s = date(y, m, 1).toordinal() - 1, dim, _DAY - 1
                continue
            days = self._month(m, dim, first % 7)
            k = bisect_right(days, dom)
            if k and days[k - 1] == dom:
                j = bisect_right(times, s)
                if j:
                    o = (first + dom - 1) * _DAY + times[j - 1]
                    return o if o >= lo else None
                k -= 1
            if k:
                o = (first + days[k - 1] - 1) * _DAY + times[-1]
                return o if o >= lo else None
            m -= 1
            if m == 0:
                m, y = 12, y - 1
            dim = _dim(y, m)
            first, dom, s = first - dim, dim, _DAY - 1
        return None


@final
class Schedule:
    """Occurrence arithmetic for one dispatch: start, duration, rule.

    Every question costs about the same whether the dispatch started a minute or ten
    years ago (see the module notes for the exact semantics and the search horizon).

    Example:
        >>> from datetime import datetime, timedelta, UTC
        >>> from trio_dispatch import Frequency, RecurrenceRule
        >>> s = Schedule(
        ...     datetime(2024, 1, 31, 8, tzinfo=UTC),
        ...     timedelta(hours=1),
        ...     RecurrenceRule(frequency=Frequency.DAILY),
        ... )
        >>> s.started_at(datetime(2024, 3, 1, 8, 30, tzinfo=UTC))
        True
        >>> s.next_run_after(datetime(2024, 3, 1, 8, 30, tzinfo=UTC))
        datetime.datetime(2024, 3, 2, 8, 0, tzinfo=datetime.timezone.utc)
    """

    __slots__ = (
        "_active",
        "_dur",
        "_duration",
        "_first",
        "_pat",
        "_resolved",
        "_rule",
        "_start",
        "_start_us",
        "_stop",
    )

    def __init__(
        self,
        start: datetime,
        duration: timedelta | None,
        rule: RecurrenceRule | None,
        *,
        active: bool = True,
    ) -> None:
        if not isinstance(start, datetime):
            raise TypeError(f"start must be a datetime, got {start!r}")
        if start.utcoffset() is None:
            raise ValueError(f"start must be timezone-aware, got naive {start.isoformat()}")
        if duration is not None and (
            not isinstance(duration, timedelta) or duration < timedelta(0)
        ):
            raise ValueError(f"duration must be None or a timedelta >= 0, got {duration!r}")
        if rule is not None and not isinstance(rule, RecurrenceRule):
            raise TypeError(f"rule must be a RecurrenceRule or None, got {rule!r}")
        self._start = start
        self._start_us = _to_us(start)
        self._duration = duration
        self._dur = None if duration is None else duration // _US
        self._rule = rule
        self._active = bool(active)
        self._pat: _Pattern | None = None
        # Resolved lazily by `_bounds`: the first occurrence and the stop (occurrences
        # start before it, in seconds: horizon, until and count folded in).
        self._resolved = True
        self._first: int | None = None
        self._stop: int | None = None
        if rule is not None and rule.is_recurring:
            self._pat = _Pattern(rule, self._start_us // _MICRO)
            self._resolved = False

    # -- the schedule as given -------------------------------------------------------------

    @property
    def start(self) -> datetime:
        """The dispatch start (the rule's dtstart)."""
        return self._start

    @property
    def duration(self) -> timedelta | None:
        """How long each run lasts; ``None`` means until changed."""
        return self._duration

    @property
    def rule(self) -> RecurrenceRule | None:
        """The recurrence rule, if any."""
        return self._rule

    @property
    def active(self) -> bool:
        """Whether the dispatch runs at all."""
        return self._active

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        return (self._start_us, self._duration, self._rule, self._active) == (
            other._start_us,
            other._duration,
            other._rule,
            other._active,
        )

    def __hash__(self) -> int:
        return hash((self._start_us, self._duration, self._rule, self._active))

    def __repr__(self) -> str:
        return (
            f"Schedule(start={self._start!r}, duration={self._duration!r}, rule={self._rule!r}, "
            f"active={self._active!r})"
        )

    # -- occurrence search in integer time ---------------------------------------------

    def _bounds(self) -> tuple[int, int] | None:
        """``(first occurrence, stop)`` in seconds, or None without occurrences."""
        if not self._resolved:
            self._resolve()
        first, stop = self._first, self._stop
        return None if first is None or stop is None else (first, stop)

    def _resolve(self) -> None:
        pat, rule = self._pat, self._rule
        assert pat is not None
        assert rule is not None
        dt0 = pat.dt0
        stop = min(dt0 + _HORIZON_S, _END_S)
        end = rule.end_criteria
        if end is not None and end.until is not None:
            stop = min(stop, -(-_to_us(end.until) // _MICRO))
        if not pat.empty and stop > dt0:
            if end is not None and end.count is not None:
                stop = self._count_stop(pat, end.count, stop)
            self._first = pat.next(dt0, stop - 1)
            self._stop = stop
        self._resolved = True

    @staticmethod
    def _count_stop(pat: _Pattern, count: int, stop: int) -> int:
        """Move `stop` just past the count-th occurrence, if there is one before it."""
        dt0, lim = pat.dt0, stop - 1
        uniform = pat.uniform()
        o: int | None
        if uniform is not None:  # the same offsets in every period: index arithmetic
            p0, period, offsets = uniform
            j0 = bisect_left(offsets, dt0 - p0)
            if count <= len(offsets) - j0:
                o = p0 + offsets[j0 + count - 1]
            else:
                n, j = divmod(count - (len(offsets) - j0) - 1, len(offsets))
                o = p0 + (n + 1) * period + offsets[j]
        else:  # walk once, at most MAX_COUNT steps; the caller caches the result
            o = pat.next(dt0, lim)
            for _ in range(count - 1):
                if o is None:
                    break
                o = pat.next(o + 1, lim)
        return stop if o is None or o > lim else o + 1

    def _next_us(self, x: int) -> int | None:
        """First occurrence start (µs) at or after x (µs)."""
        pat = self._pat
        if pat is None:
            return self._start_us if self._start_us >= x else None
        bounds = self._bounds()
        if bounds is None:
            return None
        first, stop = bounds
        xs = -(-x // _MICRO)
        if xs <= first:
            return first * _MICRO
        o = pat.next(xs, stop - 1) if xs < stop else None
        return None if o is None else o * _MICRO

    def _prev_us(self, x: int, after: int) -> int | None:
        """Last occurrence start (µs) at or before x and strictly after `after` (µs)."""
        pat = self._pat
        if pat is None:
            return self._start_us if after < self._start_us <= x else None
        bounds = self._bounds()
        if bounds is None:
            return None
        first, stop = bounds
        xs = min(x // _MICRO, stop - 1)
        lo = max(after // _MICRO + 1, first)
        if xs < lo:
            return None
        o = pat.prev(xs, lo)
        return None if o is None else o * _MICRO

    def _first_us(self) -> int | None:
        if self._pat is None:
            return self._start_us
        bounds = self._bounds()
        return None if bounds is None else bounds[0] * _MICRO

    def _run(self, start_us: int) -> Run:
        dur = self._dur
        return Run(start=_from_us(start_us), end=None if dur is None else _from_us(start_us + dur))

    # -- the questions -------------------------------------------------------------------

    def first_run_start(self) -> datetime | None:
        """When the first run starts; ``None`` if there is no run at all.

        With a rule this is the first occurrence, which need not be `start` itself: a
        rule whose by-parts do not match `start` first fires later.
        """
        if not self._active:
            return None
        first = self._first_us()
        return None if first is None else _from_us(first)

    def started_at(self, t: datetime) -> bool:
        """Whether the dispatch is running at `t` (some run covers it)."""
        return self.run_at(t) is not None

    def run_at(self, t: datetime) -> Run | None:
        """The run covering `t` (start <= t < end) that started last, or ``None``."""
        dur = self._dur
        if not self._active or dur == 0:
            return None
        x = _to_us(t)
        if dur is None:
            first = self._first_us()
            return None if first is None or first > x else self._run(first)
        s = self._prev_us(x, x - dur)
        return None if s is None else self._run(s)

    def next_run_after(self, t: datetime) -> datetime | None:
        """When the first run starting at or after `t` starts; ``None`` if none does.

        With ``duration=None`` only the first occurrence starts a run.
        """
        if not self._active:
            return None
        x = _to_us(t)
        if self._dur is None:
            first = self._first_us()
            return None if first is None or first < x else _from_us(first)
        s = self._next_us(x)
        return None if s is None else _from_us(s)

    def runs_between(self, a: datetime, b: datetime) -> Iterator[Run]:
        """The runs overlapping ``[a, b)``, lazily, in start order (they may overlap).

        A run overlaps if it is running at some instant of the window; an empty run
        (``duration=0``) counts if it starts in the window.
        """
        lo, hi = _to_us(a), _to_us(b)
        if not self._active or lo >= hi:
            return iter(())
        dur = self._dur
        if dur is None:
            first = self._first_us()
            return iter(() if first is None or first >= hi else (self._run(first),))
        return self._runs(lo - dur + 1 if dur else lo, hi)

    def _runs(self, x: int, hi: int) -> Iterator[Run]:
        while (s := self._next_us(x)) is not None and s < hi:
            yield self._run(s)
            x = s + 1

    def last_run_end(self) -> datetime | None:
        """When the last run ends; ``None`` if runs never end or there is no run."""
        if not self._active or self._dur is None:
            return None
        if self._pat is None:
            return _from_us(self._start_us + self._dur)
        end = self._rule.end_criteria if self._rule is not None else None
        if end is None:
            return None
        bounds = self._bounds()
        if bounds is None:
            return None
        first, stop = bounds
        last = self._pat.prev(stop - 1, first)
        return None if last is None else _from_us(last * _MICRO + self._dur)
