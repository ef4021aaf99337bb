"""Tests for the occurrence arithmetic, with dateutil's rrule as the oracle.

The oracle walks the full rrule from dtstart, as the reference library does on every
call. To keep it bounded it is given a budget of periods and occurrences (the strategy
picks the age of the dispatch accordingly: large intervals reach ten years back, small
ones less) and rrule's `datetime.MAXYEAR` is lowered while it runs: a rule whose every
day is filtered out otherwise keeps rrule busy until year 9999.
"""

from __future__ import annotations

import bisect
import datetime as dt_module
import itertools
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from dateutil import rrule as rr
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from trio_dispatch import EndCriteria, Frequency, RecurrenceRule, Weekday
from trio_dispatch._recurrence import HORIZON, Run, Schedule

F = Frequency
W = Weekday


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# -- the oracle ----------------------------------------------------------------------------

_RR_FREQ = {
    F.YEARLY: rr.YEARLY,
    F.MONTHLY: rr.MONTHLY,
    F.WEEKLY: rr.WEEKLY,
    F.DAILY: rr.DAILY,
    F.HOURLY: rr.HOURLY,
    F.MINUTELY: rr.MINUTELY,
}


@contextmanager
def rrule_maxyear(year: int) -> Iterator[None]:
    """Make rrule stop at `year` instead of 9999 (it checks `datetime.MAXYEAR`)."""
    shim = types.SimpleNamespace(
        **{name: getattr(dt_module, name) for name in dir(dt_module) if not name.startswith("__")}
    )
    shim.MAXYEAR = year
    saved = rr.datetime  # type: ignore[attr-defined]
    rr.datetime = shim  # type: ignore[attr-defined]
    try:
        yield
    finally:
        rr.datetime = saved  # type: ignore[attr-defined]


@dataclass
class Oracle:
    occurrences: list[datetime]  # every start in [dtstart, hi), plus the first one >= hi
    complete: bool  # the list holds every occurrence of the rule
    searched_to: datetime  # no occurrence was looked for at or after this


def oracle(start: datetime, rule: RecurrenceRule | None, hi: datetime, extra_years: int) -> Oracle:
    """Walk dateutil's rrule from dtstart, the slow and obviously right way."""
    if rule is None or not rule.is_recurring:
        return Oracle([start], True, datetime.max.replace(tzinfo=UTC))
    end = rule.end_criteria
    count = end.count if end else None
    until = end.until if end else None
    maxyear = min(hi.year + extra_years, 9999)
    searched_to = utc(maxyear + 1, 1, 1) if maxyear < 9999 else datetime.max.replace(tzinfo=UTC)
    if until is not None:
        searched_to = min(searched_to, until)
    out: list[datetime] = []
    exhausted = False
    with rrule_maxyear(maxyear):
        try:
            it = iter(
                rr.rrule(
                    _RR_FREQ[rule.frequency],
                    dtstart=start,
                    interval=rule.interval,
                    count=count,
                    until=until,
                    byminute=rule.byminutes or None,
                    byhour=rule.byhours or None,
                    byweekday=[d - 1 for d in rule.byweekdays] or None,
                    bymonthday=rule.bymonthdays or None,
                    bymonth=rule.bymonths or None,
                )
            )
            for o in it:
                if until is not None and o >= until:  # the API's until is exclusive
                    exhausted = True
                    break
                out.append(o)
                if o >= hi:
                    break
            else:
                exhausted = True
        except ValueError:  # rrule's way of saying "these by-parts never match"
            out, exhausted, searched_to = [], True, datetime.max.replace(tzinfo=UTC)
    complete = exhausted and (
        (count is not None and len(out) == count) or searched_to < utc(maxyear + 1, 1, 1)
    )
    return Oracle(out, complete, searched_to)


def expected_runs(occ: list[datetime], duration: timedelta | None) -> list[Run]:
    if duration is None:
        return [Run(start=occ[0], end=None)] if occ else []
    return [Run(start=o, end=o + duration) for o in occ]


# -- strategies ----------------------------------------------------------------------------

_PERIOD = {
    F.MINUTELY: timedelta(minutes=1),
    F.HOURLY: timedelta(hours=1),
    F.DAILY: timedelta(days=1),
    F.WEEKLY: timedelta(weeks=1),
    F.MONTHLY: timedelta(days=31),
    F.YEARLY: timedelta(days=366),
}
_DAYS_PER_PERIOD = {
    F.MINUTELY: 1,
    F.HOURLY: 1,
    F.DAILY: 1,
    F.WEEKLY: 7,
    F.MONTHLY: 31,
    F.YEARLY: 366,
}
PERIOD_BUDGET = 6000
OCCURRENCE_BUDGET = 6000
TEN_YEARS = timedelta(days=3653)


def subset(values: st.SearchStrategy[int], max_size: int = 3) -> st.SearchStrategy[tuple[int, ...]]:
    return st.one_of(
        st.just(()),
        st.lists(values, min_size=1, max_size=max_size, unique=True).map(tuple),
    )


monthdays = st.one_of(
    st.sampled_from([1, 15, 28, 29, 30, 31, -1, -2, -29, -31]),
    st.integers(1, 31),
    st.integers(-31, -1),
)
intervals = st.one_of(st.integers(1, 4), st.sampled_from([7, 12, 24, 60, 61]), st.integers(1, 1000))
starts = st.datetimes(  # hypothesis wants naive bounds
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001
    max_value=datetime(2030, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)


def by_parts(draw: st.DrawFn) -> dict[str, tuple[int, ...]]:
    def maybe(values: st.SearchStrategy[int], max_size: int = 3) -> tuple[int, ...]:
        # Mostly no by-part at all: many random combinations never match.
        return draw(st.one_of(st.just(()), st.just(()), subset(values, max_size)))

    return {
        "byminutes": maybe(st.integers(0, 59)),
        "byhours": maybe(st.integers(0, 23)),
        "byweekdays": tuple(W(d) for d in maybe(st.integers(1, 7), 4)),
        "bymonthdays": maybe(monthdays),
        "bymonths": draw(
            st.one_of(st.just(()), st.just(()), st.just((2,)), subset(st.integers(1, 12)))
        ),
    }


def end_criteria(draw: st.DrawFn, start: datetime, span: timedelta) -> EndCriteria | None:
    span = min(span, timedelta(days=50 * 366))
    return draw(
        st.one_of(
            st.none(),
            st.integers(1, 60).map(lambda n: EndCriteria(count=n)),
            st.floats(-0.01, 1.2).map(lambda f: EndCriteria(until=start + span * f)),
        )
    )


@st.composite
def rules(draw: st.DrawFn, start: datetime, *, end: bool = True) -> RecurrenceRule:
    freq = draw(st.sampled_from(list(_RR_FREQ)))
    interval = draw(intervals)
    return RecurrenceRule(
        frequency=freq,
        interval=interval,
        end_criteria=end_criteria(draw, start, _PERIOD[freq] * interval * 50) if end else None,
        **by_parts(draw),
    )


def occurrences_per_period(rule: RecurrenceRule) -> int:
    n = _DAYS_PER_PERIOD[rule.frequency] * max(len(rule.byminutes), 1)
    if rule.frequency in (F.DAILY, F.WEEKLY, F.MONTHLY, F.YEARLY):
        n *= max(len(rule.byhours), 1)
    return n


@dataclass
class Case:
    start: datetime
    duration: timedelta | None
    rule: RecurrenceRule
    t: datetime
    hi: datetime  # the oracle knows every occurrence before this

    def schedule(self) -> Schedule:
        return Schedule(self.start, self.duration, self.rule)


_AGES = {
    "before": timedelta(days=-3),
    "day": timedelta(days=1),
    "month": timedelta(days=30),
    "year": timedelta(days=366),
    "decade": TEN_YEARS,
}


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A rule, an age up to ten years, an interval large enough for the oracle to walk."""
    start = draw(starts)
    if draw(st.booleans()):
        start = start.replace(microsecond=0)
    freq = draw(st.sampled_from(list(_RR_FREQ)))
    parts = by_parts(draw)
    per_period = occurrences_per_period(RecurrenceRule(frequency=freq, **parts))  # type: ignore[arg-type]
    budget = min(PERIOD_BUDGET, OCCURRENCE_BUDGET // per_period)
    age_class = draw(
        st.sampled_from(["decade", "year", "decade", "month", "day", "before", "year"])
    )
    max_age = _AGES[age_class]
    # The smallest interval that keeps the walk from start to t within the budget.
    min_interval = max(1, -(-max_age // (_PERIOD[freq] * budget)))
    if min_interval > 1000:
        min_interval, max_age = 1000, _PERIOD[freq] * 1000 * budget
    interval = draw(
        st.one_of(st.integers(min_interval, min_interval + 3), st.integers(min_interval, 1000))
    )
    period = _PERIOD[freq] * interval
    rule = RecurrenceRule(
        frequency=freq,
        interval=interval,
        end_criteria=end_criteria(draw, start, max(max_age, period * 10)),
        **parts,  # type: ignore[arg-type]
    )
    t = start + max_age * draw(st.floats(0.5, 1.0) if max_age > timedelta(0) else st.floats(0, 1))
    t += timedelta(microseconds=draw(st.sampled_from([0, 0, 1, 999_999])))
    duration = draw(
        st.one_of(
            st.none(),
            st.just(timedelta(0)),
            st.integers(1, int(min(period * 3, TEN_YEARS).total_seconds())).map(
                lambda s: timedelta(seconds=s)
            ),
        )
    )
    hi = t + min(period * 2, timedelta(days=3 * 366)) + timedelta(seconds=1)
    return Case(start, duration, rule, t, hi)


# -- property tests against the oracle -------------------------------------------------------


def check_point(s: Schedule, ora: Oracle, dur: timedelta | None, t: datetime) -> None:
    """`next_run_after`, `run_at` and `started_at` at `t` against the oracle."""
    occ = ora.occurrences
    got = s.next_run_after(t)
    if dur is None:
        want = occ[0] if occ and occ[0] >= t else None
    else:
        want = next((o for o in occ if o >= t), None)
    if want is None:
        assert got is None or got >= ora.searched_to, (got, t)
    else:
        assert got == want, (got, want, t)

    if dur is None:
        want_run = Run(start=occ[0], end=None) if occ and occ[0] <= t else None
    elif not dur:
        want_run = None
    else:
        covering = [o for o in occ if o <= t < o + dur]
        want_run = Run(start=covering[-1], end=covering[-1] + dur) if covering else None
    assert s.run_at(t) == want_run, (t, want_run)
    assert s.started_at(t) is (want_run is not None)


def check_against_oracle(case: Case, data: st.DataObject) -> None:
    ora = oracle(case.start, case.rule, case.hi, extra_years=10)
    occ, dur = ora.occurrences, case.duration
    s = case.schedule()

    # Also probe exactly at an occurrence, just before it, at and around its run's end.
    t = case.t
    if occ and data.draw(st.booleans()):
        k = bisect.bisect_left(occ, t)
        o = data.draw(st.sampled_from(occ[max(0, k - 3) : k + 3]))
        shift = data.draw(
            st.sampled_from([timedelta(0), -timedelta(microseconds=1), dur or timedelta(0)])
        )
        t = min(o + shift, case.hi - timedelta(seconds=1))

    age = t - case.start
    event(
        f"{case.rule.frequency.name}, {'no' if not occ else 'few' if len(occ) < 5 else 'many'} runs"
    )
    event(
        f"age {'<0' if age < timedelta(0) else '<1d' if age.days < 1 else '<1y' if age.days < 365 else '>=1y'}"
    )

    # first_run_start
    first = s.first_run_start()
    if occ:
        assert first == occ[0]
    else:
        assert first is None or first >= ora.searched_to

    check_point(s, ora, dur, t)

    # runs_between
    a = t - data.draw(st.sampled_from([timedelta(0), timedelta(seconds=1), dur or timedelta(0)]))
    b = min(t + (case.hi - t) * data.draw(st.sampled_from([0.0, 0.3, 1.0])), case.hi)
    want_runs = [
        r
        for r in expected_runs([o for o in occ if o < case.hi], dur)
        if a < b and r.start < b and (r.end is None or r.end > a or r.start >= a)
    ]
    got_runs = list(itertools.islice(s.runs_between(a, b), len(want_runs) + 1))
    assert got_runs == want_runs

    # last_run_end
    last = s.last_run_end()
    if dur is None or case.rule.end_criteria is None:
        assert last is None
    elif ora.complete:
        assert last == (occ[-1] + dur if occ else None)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(), data=st.data())
def test_matches_rrule(case: Case, data: st.DataObject) -> None:
    check_against_oracle(case, data)


_EDGE_VALUES = {
    "byminutes": [0, 1, 15, 30, 58, 59],
    "byhours": [0, 1, 8, 12, 22, 23],
    "byweekdays": list(W)[1:],
    "bymonthdays": [1, 2, 28, 29, 30, 31, -1, -2, -31],
    "bymonths": [1, 2, 3, 11, 12],
}


def focused_by_parts(draw: st.DrawFn) -> dict[str, tuple[int, ...]]:
    """At most two by-parts, from values next to the edges of their ranges."""
    names = draw(st.lists(st.sampled_from(list(_EDGE_VALUES)), max_size=2, unique=True))
    return {
        name: tuple(
            draw(st.lists(st.sampled_from(_EDGE_VALUES[name]), min_size=1, max_size=4, unique=True))
        )
        for name in names
    }


def boundaries(a: datetime, b: datetime, n: int = 40) -> Iterator[datetime]:
    """Up to n starts of months, and of days, and of hours, in [a, b)."""
    month = a.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for unit in (timedelta(days=31), timedelta(days=1), timedelta(hours=1)):
        step = max(unit, (b - a) / n)
        t = month
        while t < b:
            if t >= a:
                yield t
            t += step
            t = t.replace(minute=0, second=0, microsecond=0)
            if unit > timedelta(days=1):
                t = t.replace(day=1, hour=0)
            elif unit == timedelta(days=1):
                t = t.replace(hour=0)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=starts, data=st.data())
def test_sweep_matches_rrule(start: datetime, data: st.DataObject) -> None:
    """Small intervals, many probes per rule: at, just before and just after each start
    and each end, and in between."""
    # Minutes and hours have the most intricate skipping: draw them more often.
    freq = data.draw(st.sampled_from([*_RR_FREQ, F.MINUTELY, F.MINUTELY, F.HOURLY]))
    interval = data.draw(st.one_of(st.integers(1, 3), st.sampled_from([5, 7, 12, 13, 24, 59, 61])))
    rule = RecurrenceRule(
        frequency=freq,
        interval=interval,
        end_criteria=end_criteria(data.draw, start, _PERIOD[freq] * interval * 30),
        **focused_by_parts(data.draw),  # type: ignore[arg-type]
    )
    period_s = int((_PERIOD[freq] * interval).total_seconds())
    dur = data.draw(
        st.one_of(
            st.none(),
            st.just(timedelta(0)),
            st.integers(1, period_s * 3).map(lambda n: timedelta(seconds=n)),
            st.integers(1, period_s * 3).map(lambda n: timedelta(seconds=n)),
            # Long runs make `run_at` look far back, across hours, days and years.
            st.integers(1, min(period_s * 400, 3 * 366 * 86400)).map(
                lambda n: timedelta(seconds=n)
            ),
        )
    )
    runs = sweep(start, rule, dur)
    event(f"{freq.name}, {min(runs, 10)}+ runs")


def sweep(
    start: datetime, rule: RecurrenceRule, dur: timedelta | None, max_periods: int = 1500
) -> int:
    """Probe one schedule at, just before and just after each start and each end, at
    month, day and hour starts, and check its runs and last end, against the oracle."""
    freq, interval = rule.frequency, rule.interval
    periods = max(4, min(max_periods, 3000 // occurrences_per_period(rule)))
    span = min(_PERIOD[freq] * interval * periods, timedelta(days=3 * 366))
    hi = start + span
    ora = oracle(start, rule, hi, extra_years=3)
    if ora.occurrences and ora.occurrences[0] >= hi:  # nothing in the window: move its end
        hi = ora.occurrences[0] + span
        ora = oracle(start, rule, hi, extra_years=3)
    s = Schedule(start, dur, rule)
    tick = timedelta(microseconds=1)
    points = {start - tick, start, start + (hi - start) / 2, hi - span / 2}
    for o in ora.occurrences[:: max(1, len(ora.occurrences) // 100)]:
        points |= {o - tick, o, o + tick}
        if dur:
            points |= {o + dur - tick, o + dur}
    points |= set(boundaries(max(start, hi - span), hi))
    for t in sorted(p for p in points if p < hi):
        check_point(s, ora, dur, t)

    occ = [o for o in ora.occurrences if o < hi]
    assert list(s.runs_between(start - timedelta(days=1), hi)) == expected_runs(occ, dur)
    if dur is not None and rule.end_criteria is not None and ora.complete:
        assert s.last_run_end() == (ora.occurrences[-1] + dur if ora.occurrences else None)
    return len(ora.occurrences)


_GRID_PARTS: list[dict[str, tuple[int, ...]]] = [
    {},
    {"byminutes": (59,)},
    {"byminutes": (0, 59)},
    {"byminutes": (0, 30)},
    {"byhours": (23,)},
    {"byhours": (0, 23), "byminutes": (59,)},
    {"byweekdays": (W.SUNDAY,)},
    {"byweekdays": (W.MONDAY, W.SUNDAY), "byhours": (0,)},
    {"bymonthdays": (31,)},
    {"bymonthdays": (-1, 1)},
    {"bymonths": (1, 12)},
    {"bymonths": (2, 11), "bymonthdays": (29, -1)},
    {"bymonths": (3,), "byweekdays": (W.MONDAY,)},
]


@pytest.mark.parametrize("parts", _GRID_PARTS, ids=lambda p: ",".join(p) or "plain")
@pytest.mark.parametrize("freq", list(_RR_FREQ), ids=lambda f: f.name)
def test_edge_grid_matches_rrule(freq: Frequency, parts: dict[str, tuple[int, ...]]) -> None:
    """Deterministic: by-parts at the edges of their ranges, from just before a new year
    (a Sunday) or on a whole hour before 29 February, with short and long runs and with
    `until` and `count`, so that every search crosses every boundary."""
    for start in (utc(2023, 12, 31, 22, 58, 30), utc(2024, 2, 28, 23)):
        for interval in (1, 2, 7):
            period = _PERIOD[freq] * interval
            ends = (None, EndCriteria(until=start + period * 9 + timedelta(seconds=1)))
            for end in (*ends, EndCriteria(count=5)):
                rule = RecurrenceRule(
                    frequency=freq,
                    interval=interval,
                    end_criteria=end,
                    **parts,  # type: ignore[arg-type]
                )
                for dur in (period / 2, min(period * 40, timedelta(days=800))):
                    sweep(start, rule, dur, max_periods=400)


@st.composite
def calendar_edge_cases(draw: st.DrawFn) -> Case:
    """Month ends, 29 February and week starts, where calendar arithmetic goes wrong."""
    start = draw(
        st.sampled_from(
            [
                utc(2024, 1, 31, 8),
                utc(2024, 2, 29, 23, 59, 59),
                utc(2023, 12, 31, 12),
                utc(2024, 12, 30, 0, 0, 1),  # a Monday, its week crosses the year
                utc(2021, 1, 3, 10),  # a Sunday
                utc(2020, 3, 31, 0),
            ]
        )
    )
    freq = draw(st.sampled_from([F.DAILY, F.WEEKLY, F.MONTHLY, F.YEARLY]))
    rule = RecurrenceRule(
        frequency=freq,
        interval=draw(st.one_of(st.integers(1, 3), st.integers(1, 60))),
        end_criteria=draw(
            st.one_of(st.none(), st.integers(1, 30).map(lambda n: EndCriteria(count=n)))
        ),
        byweekdays=tuple(W(d) for d in draw(subset(st.integers(1, 7), 3))),
        bymonthdays=draw(subset(st.sampled_from([28, 29, 30, 31, -1, -2, 1]), 2)),
        bymonths=draw(st.one_of(st.just(()), st.just((2,)), subset(st.integers(1, 12), 2))),
    )
    period = _PERIOD[freq] * rule.interval
    age = draw(st.integers(0, int(min(period * 200, TEN_YEARS).total_seconds())))
    t = start + timedelta(seconds=age)
    duration = draw(st.sampled_from([None, timedelta(0), timedelta(hours=1), timedelta(days=10)]))
    return Case(start, duration, rule, t, t + timedelta(days=3 * 366))


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=calendar_edge_cases(), data=st.data())
def test_calendar_edges_match_rrule(case: Case, data: st.DataObject) -> None:
    check_against_oracle(case, data)


@settings(max_examples=400, deadline=None)
@given(start=starts, data=st.data())
def test_windowed_runs_match_rrule_far_from_start(start: datetime, data: st.DataObject) -> None:
    """Queries ten years after the start on rules the oracle can still walk."""
    rule = data.draw(rules(start, end=False))
    assume(
        occurrences_per_period(rule) * TEN_YEARS / (_PERIOD[rule.frequency] * rule.interval) < 4000
    )
    t = start + TEN_YEARS - timedelta(seconds=data.draw(st.integers(0, 86400 * 30)))
    case = Case(
        start, timedelta(minutes=data.draw(st.integers(1, 600))), rule, t, t + timedelta(days=800)
    )
    check_against_oracle(case, data)


# -- exact values --------------------------------------------------------------------------

DAILY_8AM = Schedule(utc(2024, 1, 31, 8), timedelta(hours=1), RecurrenceRule(frequency=F.DAILY))


def test_daily_running_window_is_half_open() -> None:
    assert DAILY_8AM.started_at(utc(2024, 1, 31, 8))
    assert DAILY_8AM.started_at(utc(2024, 3, 1, 8, 30))
    assert not DAILY_8AM.started_at(utc(2024, 3, 1, 9))
    assert DAILY_8AM.started_at(utc(2024, 3, 1, 8, 59, 59, 999_999))
    assert not DAILY_8AM.started_at(utc(2024, 1, 31, 7, 59, 59))
    assert DAILY_8AM.run_at(utc(2025, 6, 1, 8, 15)) == Run(
        start=utc(2025, 6, 1, 8), end=utc(2025, 6, 1, 9)
    )
    assert DAILY_8AM.run_at(utc(2025, 6, 1, 9)) is None


def test_daily_next_run_after() -> None:
    assert DAILY_8AM.next_run_after(utc(2000, 1, 1)) == utc(2024, 1, 31, 8)
    assert DAILY_8AM.next_run_after(utc(2024, 1, 31, 8)) == utc(2024, 1, 31, 8)  # >= t
    assert DAILY_8AM.next_run_after(utc(2024, 1, 31, 8, 0, 0, 1)) == utc(2024, 2, 1, 8)
    assert DAILY_8AM.next_run_after(utc(2034, 5, 17, 23)) == utc(2034, 5, 18, 8)
    assert DAILY_8AM.first_run_start() == utc(2024, 1, 31, 8)
    assert DAILY_8AM.last_run_end() is None


def test_other_timezones_compare_as_instants() -> None:
    cet = dt_module.timezone(timedelta(hours=1))
    assert DAILY_8AM.started_at(datetime(2024, 3, 1, 9, 30, tzinfo=cet))
    assert not DAILY_8AM.started_at(datetime(2024, 3, 1, 8, 30, tzinfo=cet))
    assert DAILY_8AM.next_run_after(datetime(2024, 3, 1, 10, tzinfo=cet)) == utc(2024, 3, 2, 8)
    with pytest.raises(TypeError):
        DAILY_8AM.started_at(datetime(2024, 3, 1, 8, 30))  # noqa: DTZ001


def test_monthly_on_the_31st_skips_short_months() -> None:
    s = Schedule(utc(2024, 1, 31, 8), timedelta(hours=1), RecurrenceRule(frequency=F.MONTHLY))
    starts = [r.start for r in s.runs_between(utc(2024, 1, 1), utc(2024, 9, 1))]
    assert starts == [utc(2024, m, 31, 8) for m in (1, 3, 5, 7, 8)]
    assert s.next_run_after(utc(2024, 4, 1)) == utc(2024, 5, 31, 8)
    last_day = RecurrenceRule(frequency=F.MONTHLY, bymonthdays=(-1,))
    s = Schedule(utc(2024, 1, 31, 8), None, last_day)
    assert Schedule(utc(2024, 1, 31, 8), timedelta(0), last_day).next_run_after(
        utc(2024, 2, 1)
    ) == utc(2024, 2, 29, 8)
    assert s.run_at(utc(2030, 1, 1)) == Run(start=utc(2024, 1, 31, 8), end=None)


def test_yearly_on_29_february() -> None:
    s = Schedule(utc(2024, 2, 29, 12), timedelta(days=1), RecurrenceRule(frequency=F.YEARLY))
    assert s.next_run_after(utc(2024, 3, 1)) == utc(2028, 2, 29, 12)
    assert s.next_run_after(utc(2096, 3, 1)) == utc(2104, 2, 29, 12)  # 2100 is no leap year
    assert s.started_at(utc(2028, 3, 1, 11))
    assert not s.started_at(utc(2027, 3, 1, 11))


def test_until_is_exclusive() -> None:
    rule = RecurrenceRule(frequency=F.DAILY, end_criteria=EndCriteria(until=utc(2024, 2, 3, 8)))
    s = Schedule(utc(2024, 1, 31, 8), timedelta(hours=1), rule)
    assert [r.start.day for r in s.runs_between(utc(2024, 1, 1), utc(2025, 1, 1))] == [31, 1, 2]
    assert s.next_run_after(utc(2024, 2, 2, 9)) is None
    assert s.last_run_end() == utc(2024, 2, 2, 9)
    just_after = RecurrenceRule(
        frequency=F.DAILY, end_criteria=EndCriteria(until=utc(2024, 2, 3, 8, 0, 0, 1))
    )
    assert Schedule(utc(2024, 1, 31, 8), timedelta(hours=1), just_after).last_run_end() == utc(
        2024, 2, 3, 9
    )


def test_count() -> None:
    rule = RecurrenceRule(frequency=F.WEEKLY, end_criteria=EndCriteria(count=3))
    s = Schedule(utc(2024, 1, 31, 8), timedelta(hours=2), rule)
    assert s.last_run_end() == utc(2024, 2, 14, 10)
    assert s.next_run_after(utc(2024, 2, 14, 8)) == utc(2024, 2, 14, 8)
    assert s.next_run_after(utc(2024, 2, 14, 8, 0, 1)) is None
    assert s.started_at(utc(2024, 2, 14, 9))
    assert not s.started_at(utc(2024, 2, 21, 9))
    # A count that needs a walk (filters), computed once and cached.
    rule = RecurrenceRule(
        frequency=F.DAILY, bymonthdays=(1, 15), end_criteria=EndCriteria(count=4096)
    )
    s = Schedule(utc(2024, 1, 31, 8), timedelta(hours=1), rule)
    assert s.last_run_end() == utc(2194, 9, 15, 9)


def test_duration_none_runs_from_first_occurrence_on() -> None:
    rule = RecurrenceRule(frequency=F.DAILY, byhours=(10,))
    s = Schedule(utc(2024, 1, 31, 11), None, rule)  # 11:00 does not match: first is tomorrow
    assert s.first_run_start() == utc(2024, 2, 1, 10)
    assert not s.started_at(utc(2024, 2, 1, 9))
    assert s.run_at(utc(2031, 1, 1)) == Run(start=utc(2024, 2, 1, 10), end=None)
    assert s.next_run_after(utc(2024, 1, 31)) == utc(2024, 2, 1, 10)
    assert s.next_run_after(utc(2024, 2, 1, 10, 0, 1)) is None
    assert list(s.runs_between(utc(2025, 1, 1), utc(2025, 1, 2))) == [
        Run(start=utc(2024, 2, 1, 10), end=None)
    ]
    assert s.last_run_end() is None


def test_duration_zero_never_runs_but_has_starts() -> None:
    s = Schedule(utc(2024, 1, 31, 8), timedelta(0), RecurrenceRule(frequency=F.DAILY))
    assert not s.started_at(utc(2024, 1, 31, 8))
    assert s.run_at(utc(2024, 1, 31, 8)) is None
    assert s.next_run_after(utc(2024, 2, 1)) == utc(2024, 2, 1, 8)
    assert list(s.runs_between(utc(2024, 2, 1, 8), utc(2024, 2, 2, 8))) == [
        Run(start=utc(2024, 2, 1, 8), end=utc(2024, 2, 1, 8))
    ]
    once = Schedule(utc(2024, 1, 31, 8), timedelta(0), None)
    assert once.last_run_end() == utc(2024, 1, 31, 8)
    assert not once.started_at(utc(2024, 1, 31, 8))


def test_without_rule_runs_once_at_start_exactly() -> None:
    start = utc(2024, 1, 31, 8, 0, 0, 500_000)
    for rule in (None, RecurrenceRule(), RecurrenceRule(end_criteria=EndCriteria(count=9))):
        s = Schedule(start, timedelta(minutes=5), rule)
        assert s.first_run_start() == start
        assert not s.started_at(utc(2024, 1, 31, 8))
        assert s.run_at(start) == Run(start=start, end=start + timedelta(minutes=5))
        assert s.next_run_after(start + timedelta(microseconds=1)) is None
        assert s.last_run_end() == start + timedelta(minutes=5)


def test_rrule_drops_the_microseconds_of_dtstart() -> None:
    start = utc(2024, 1, 31, 8, 0, 0, 500_000)
    s = Schedule(start, timedelta(minutes=5), RecurrenceRule(frequency=F.DAILY))
    assert s.first_run_start() == utc(2024, 1, 31, 8)
    assert s.started_at(utc(2024, 1, 31, 8, 0, 0, 100_000))
    assert s.next_run_after(start) == utc(2024, 2, 1, 8)


def test_inactive_has_no_runs() -> None:
    s = Schedule(
        utc(2024, 1, 31, 8), timedelta(hours=1), RecurrenceRule(frequency=F.DAILY), active=False
    )
    assert not s.started_at(utc(2024, 1, 31, 8, 30))
    assert s.run_at(utc(2024, 1, 31, 8, 30)) is None
    assert s.next_run_after(utc(2024, 1, 1)) is None
    assert list(s.runs_between(utc(2024, 1, 1), utc(2025, 1, 1))) == []
    assert s.first_run_start() is None
    assert s.last_run_end() is None


def test_overlapping_runs() -> None:
    rule = RecurrenceRule(frequency=F.HOURLY, end_criteria=EndCriteria(count=3))
    s = Schedule(utc(2024, 1, 31, 8), timedelta(minutes=90), rule)
    assert s.run_at(utc(2024, 1, 31, 9, 15)) == Run(
        start=utc(2024, 1, 31, 9), end=utc(2024, 1, 31, 10, 30)
    )
    assert s.run_at(utc(2024, 1, 31, 11, 15)) == Run(
        start=utc(2024, 1, 31, 10), end=utc(2024, 1, 31, 11, 30)
    )
    assert not s.started_at(utc(2024, 1, 31, 11, 30))
    assert [
        r.start.hour for r in s.runs_between(utc(2024, 1, 31, 9, 20), utc(2024, 1, 31, 9, 21))
    ] == [8, 9]
    assert s.last_run_end() == utc(2024, 1, 31, 11, 30)


@pytest.mark.parametrize(
    "rule",
    [
        RecurrenceRule(frequency=F.DAILY, bymonths=(2,), bymonthdays=(30,)),
        RecurrenceRule(frequency=F.YEARLY, bymonths=(4, 6, 9, 11), bymonthdays=(31,)),
        RecurrenceRule(frequency=F.MONTHLY, bymonthdays=(-31,), bymonths=(2,)),
        RecurrenceRule(frequency=F.DAILY, interval=7, byweekdays=(W.MONDAY,)),  # from a Wednesday
        RecurrenceRule(frequency=F.HOURLY, interval=2, byhours=(9, 11)),  # from an even hour
        RecurrenceRule(frequency=F.MINUTELY, interval=1440, byhours=(9,)),
        RecurrenceRule(frequency=F.MINUTELY, interval=10080, byweekdays=(W.SUNDAY,)),
        RecurrenceRule(frequency=F.MONTHLY, interval=12, bymonths=(3,)),  # Januaries only
        RecurrenceRule(
            frequency=F.YEARLY, interval=4, bymonths=(2,), bymonthdays=(29,)
        ),  # from 2025
        RecurrenceRule(frequency=F.WEEKLY, bymonths=(4, 6), bymonthdays=(31,)),
    ],
)
def test_rules_without_occurrences_answer_at_once(rule: RecurrenceRule) -> None:
    started = time.perf_counter()
    s = Schedule(utc(2025, 1, 1, 8), timedelta(hours=1), rule)
    for t in (utc(2025, 1, 1), utc(2030, 6, 1), utc(2400, 1, 1)):
        assert s.next_run_after(t) is None
        assert not s.started_at(t)
    assert s.first_run_start() is None
    assert list(s.runs_between(utc(2025, 1, 1), utc(2100, 1, 1))) == []
    assert time.perf_counter() - started < 1.0


def test_sparse_rule_answers_quickly() -> None:
    # Monday 29 February, in every third week: the first is in 2112.
    rule = RecurrenceRule(
        frequency=F.WEEKLY, interval=3, bymonths=(2,), bymonthdays=(29,), byweekdays=(W.MONDAY,)
    )
    started = time.perf_counter()
    s = Schedule(utc(2025, 1, 1, 8), timedelta(hours=1), rule)
    assert s.next_run_after(utc(2025, 1, 1)) == utc(2112, 2, 29, 8)
    assert not s.started_at(utc(2108, 2, 29, 8, 30))
    assert s.run_at(utc(2112, 2, 29, 8, 30)) == Run(
        start=utc(2112, 2, 29, 8), end=utc(2112, 2, 29, 9)
    )
    assert time.perf_counter() - started < 0.5


def test_horizon() -> None:
    # Every 1000 years on 29 February: the second occurrence (3024) is past the horizon.
    rule = RecurrenceRule(frequency=F.YEARLY, interval=1000)
    s = Schedule(utc(2024, 2, 29), timedelta(hours=1), rule)
    assert s.next_run_after(utc(2024, 3, 1)) is None
    assert timedelta(days=146097) == HORIZON
    s = Schedule(
        utc(2024, 2, 29), timedelta(hours=1), RecurrenceRule(frequency=F.YEARLY, interval=100)
    )
    assert s.next_run_after(utc(2024, 3, 1)) == utc(2124, 2, 29)  # within the horizon


def test_cost_does_not_grow_with_age() -> None:
    """A minutely rule ten years old: walking rrule would take seconds per call."""
    rule = RecurrenceRule(frequency=F.MINUTELY, byhours=(8, 9), byweekdays=(W.MONDAY,))
    s = Schedule(utc(2015, 1, 1), timedelta(seconds=30), rule)
    started = time.perf_counter()
    for day in range(1, 29):
        t = utc(2025, 2, day, 12, 34, 56)
        assert s.next_run_after(t) is not None
        s.started_at(t)
    assert time.perf_counter() - started < 0.5
    assert s.next_run_after(utc(2025, 2, 4, 9, 59, 1)) == utc(2025, 2, 10, 8)
    assert s.run_at(utc(2025, 2, 10, 9, 59, 29)) == Run(
        start=utc(2025, 2, 10, 9, 59), end=utc(2025, 2, 10, 9, 59, 30)
    )


def test_schedule_value_semantics() -> None:
    rule = RecurrenceRule(frequency=F.DAILY)
    a = Schedule(utc(2024, 1, 31, 8), timedelta(hours=1), rule)
    b = Schedule(utc(2024, 1, 31, 8), timedelta(hours=1), RecurrenceRule(frequency=F.DAILY))
    assert a == b
    assert hash(a) == hash(b)
    assert a != Schedule(utc(2024, 1, 31, 8), timedelta(hours=1), rule, active=False)
    assert "DAILY" in repr(a)
    with pytest.raises(ValueError, match="timezone-aware"):
        Schedule(datetime(2024, 1, 1), None, None)  # noqa: DTZ001
    with pytest.raises(ValueError, match="duration"):
        Schedule(utc(2024, 1, 1), timedelta(seconds=-1), None)
