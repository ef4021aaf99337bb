"""The scheduler's rules, one exact event sequence per rule (pure, synchronous).

Every test drives `Scheduler` by hand: changes with an explicit `now`, and time with
`advance` at exactly the deadlines `next_deadline()` returns. Events are compared as
tuples so that a failure shows the whole sequence:

* ``("Created", id)``, ``("Updated", id)``, ``("Deleted", id)``
* ``("RUNNING", id, until, next_run)`` and ``("STOPPED", id)``

and, where time matters, the same prefixed with the decision time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from trio_dispatch import (
    Dispatch,
    EndCriteria,
    Frequency,
    RecurrenceRule,
    TargetIds,
)
from trio_dispatch._events import Created, Deleted, RunningState, RunningStatus, Updated
from trio_dispatch._scheduler import Scheduler, Transition

T0 = datetime(2030, 1, 1, tzinfo=UTC)
SEC = timedelta(seconds=1)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

DAILY = RecurrenceRule(frequency=Frequency.DAILY)
HOURLY = RecurrenceRule(frequency=Frequency.HOURLY)


def make(**kwargs: Any) -> Dispatch:
    fields: dict[str, Any] = {
        "id": 1,
        "type": "PEAK",
        "start_time": T0,
        "duration": HOUR,
        "target": TargetIds.of(1, 2),
        "payload": {"power": 10},
    }
    fields.update(kwargs)
    return Dispatch(**fields)


def daily(count: int | None = None, **kwargs: Any) -> RecurrenceRule:
    end = None if count is None else EndCriteria(count=count)
    return RecurrenceRule(frequency=Frequency.DAILY, end_criteria=end, **kwargs)


def hourly(count: int | None = None, **kwargs: Any) -> RecurrenceRule:
    end = None if count is None else EndCriteria(count=count)
    return RecurrenceRule(frequency=Frequency.HOURLY, end_criteria=end, **kwargs)


def ev(transitions: Sequence[Transition]) -> list[tuple[Any, ...]]:
    """The transitions as comparable tuples."""
    out: list[tuple[Any, ...]] = []
    for t in transitions:
        match t:
            case Created():
                out.append(("Created", t.dispatch.id))
            case Updated():
                out.append(("Updated", t.dispatch.id))
            case Deleted():
                out.append(("Deleted", t.dispatch.id))
            case RunningStatus(started=True):
                out.append(("RUNNING", t.id, t.until, t.next_run))
            case RunningStatus():
                out.append(("STOPPED", t.id))
    return out


def status(t: Transition) -> RunningStatus:
    assert isinstance(t, RunningStatus)
    return t


def timed(transitions: Sequence[Transition]) -> list[tuple[Any, ...]]:
    """Like `ev`, with each running status prefixed by its decision time."""
    return [
        (t.decided_at, *e) if isinstance(t, RunningStatus) else e
        for t, e in zip(transitions, ev(transitions), strict=True)
    ]


def drive(s: Scheduler, end: datetime) -> list[RunningStatus]:
    """Advance at every deadline up to and including `end`."""
    out: list[RunningStatus] = []
    while (t := s.next_deadline()) is not None and t <= end:
        out += s.advance(t)
        following = s.next_deadline()
        assert following is None or following > t, "advance(t) left a deadline at or before t"
    return out


def deadlines(s: Scheduler, end: datetime) -> list[datetime]:
    """The deadlines `drive` would advance at (drives the scheduler)."""
    seen: list[datetime] = []
    while (t := s.next_deadline()) is not None and t <= end:
        seen.append(t)
        drive(s, t)
    return seen


# -- starts and stops -------------------------------------------------------------------


def test_empty_scheduler() -> None:
    s = Scheduler()
    assert s.next_deadline() is None
    assert s.advance(T0) == []
    assert s.running_statuses() == []
    assert len(s) == 0
    assert dict(s.dispatches) == {}


def test_one_off_starts_and_stops_at_its_deadlines() -> None:
    s = Scheduler()
    assert ev(s.upsert(make(start_time=T0 + HOUR), T0)) == [("Created", 1)]
    assert s.next_deadline() == T0 + HOUR
    assert timed(drive(s, T0 + DAY)) == [
        (T0 + HOUR, "RUNNING", 1, T0 + 2 * HOUR, None),
        (T0 + 2 * HOUR, "STOPPED", 1),
    ]
    assert s.next_deadline() is None
    assert s.advance(T0 + 10 * DAY) == []


def test_each_recurrence_starts_and_stops() -> None:
    s = Scheduler()
    d = make(start_time=T0 + HOUR, duration=15 * MIN, recurrence=hourly(count=3))
    assert ev(s.upsert(d, T0)) == [("Created", 1)]
    events = drive(s, T0 + DAY)
    assert timed(events) == [
        (T0 + HOUR, "RUNNING", 1, T0 + HOUR + 15 * MIN, T0 + 2 * HOUR),
        (T0 + HOUR + 15 * MIN, "STOPPED", 1),
        (T0 + 2 * HOUR, "RUNNING", 1, T0 + 2 * HOUR + 15 * MIN, T0 + 3 * HOUR),
        (T0 + 2 * HOUR + 15 * MIN, "STOPPED", 1),
        (T0 + 3 * HOUR, "RUNNING", 1, T0 + 3 * HOUR + 15 * MIN, None),
        (T0 + 3 * HOUR + 15 * MIN, "STOPPED", 1),
    ]
    # A stop says when the next run starts.
    assert [e.next_run for e in events if not e.started] == [T0 + 2 * HOUR, T0 + 3 * HOUR, None]
    assert s.next_deadline() is None


def test_deadlines_are_exactly_the_run_boundaries() -> None:
    s = Scheduler()
    s.upsert(make(start_time=T0 + HOUR, duration=15 * MIN, recurrence=hourly(count=2)), T0)
    assert deadlines(s, T0 + DAY) == [
        T0 + HOUR,
        T0 + HOUR + 15 * MIN,
        T0 + 2 * HOUR,
        T0 + 2 * HOUR + 15 * MIN,
    ]


def test_daily_dispatch_over_30_days_gives_exactly_60_events() -> None:
    s = Scheduler()
    start = T0 + 8 * HOUR
    s.upsert(make(start_time=start, recurrence=DAILY), T0)
    events = drive(s, T0 + 30 * DAY)
    expected: list[tuple[Any, ...]] = []
    for day in range(30):
        begin = start + day * DAY
        expected.append((begin, "RUNNING", 1, begin + HOUR, begin + DAY))
        expected.append((begin + HOUR, "STOPPED", 1))
    assert len(events) == 60
    assert timed(events) == expected
    assert all(e.next_run == start + (i // 2 + 1) * DAY for i, e in enumerate(events))
    # Nothing is due before the next start, which is the next deadline.
    assert s.next_deadline() == start + 30 * DAY


def test_created_while_running_starts_at_once() -> None:
    s = Scheduler()
    now = T0 + 20 * MIN
    assert timed(s.upsert(make(), now)) == [
        ("Created", 1),
        (now, "RUNNING", 1, T0 + HOUR, None),
    ]
    assert s.next_deadline() == T0 + HOUR
    assert timed(drive(s, T0 + DAY)) == [(T0 + HOUR, "STOPPED", 1)]


def test_created_while_a_recurrence_runs_carries_that_runs_end() -> None:
    s = Scheduler()
    now = T0 + 3 * DAY + 30 * MIN
    assert timed(s.upsert(make(recurrence=DAILY), now)) == [
        ("Created", 1),
        (now, "RUNNING", 1, T0 + 3 * DAY + HOUR, T0 + 4 * DAY),
    ]
    assert s.next_deadline() == T0 + 3 * DAY + HOUR


def test_created_exactly_at_start_is_running_and_not_started_twice() -> None:
    s = Scheduler()
    assert ev(s.upsert(make(), T0)) == [("Created", 1), ("RUNNING", 1, T0 + HOUR, None)]
    assert s.advance(T0) == []
    assert s.next_deadline() == T0 + HOUR


def test_created_exactly_at_run_end_is_not_running() -> None:
    s = Scheduler()
    assert ev(s.upsert(make(recurrence=DAILY), T0 + HOUR)) == [("Created", 1)]
    assert s.next_deadline() == T0 + DAY


def test_created_after_everything_ended() -> None:
    s = Scheduler()
    assert ev(s.upsert(make(recurrence=daily(count=2)), T0 + 5 * DAY)) == [("Created", 1)]
    assert s.next_deadline() is None
    assert s.running_statuses() == []


def test_advance_repeated_or_between_deadlines_emits_nothing() -> None:
    s = Scheduler()
    s.upsert(make(start_time=T0 + HOUR, recurrence=DAILY), T0)
    assert ev(s.advance(T0 + HOUR)) == [("RUNNING", 1, T0 + 2 * HOUR, T0 + DAY + HOUR)]
    for t in (T0 + HOUR, T0 + HOUR, T0 + HOUR + SEC, T0 + HOUR + 30 * MIN, T0 + 2 * HOUR - SEC):
        assert s.advance(t) == []
    assert ev(s.advance(T0 + 2 * HOUR)) == [("STOPPED", 1)]
    for t in (T0 + 2 * HOUR, T0 + 3 * HOUR, T0 + DAY + HOUR - SEC):
        assert s.advance(t) == []
    assert ev(s.advance(T0 + DAY + HOUR)) == [
        ("RUNNING", 1, T0 + DAY + 2 * HOUR, T0 + 2 * DAY + HOUR)
    ]


def test_advance_before_the_deadline_does_nothing() -> None:
    s = Scheduler()
    s.upsert(make(start_time=T0 + HOUR), T0)
    assert s.advance(T0 + HOUR - timedelta(microseconds=1)) == []
    assert s.next_deadline() == T0 + HOUR


def test_back_to_back_runs_emit_one_start_per_run_and_no_stop() -> None:
    s = Scheduler()
    s.upsert(make(duration=DAY, recurrence=daily(count=3)), T0 - HOUR)
    events = drive(s, T0 + 10 * DAY)
    assert timed(events) == [
        (T0, "RUNNING", 1, T0 + DAY, T0 + DAY),
        (T0 + DAY, "RUNNING", 1, T0 + 2 * DAY, T0 + 2 * DAY),
        (T0 + 2 * DAY, "RUNNING", 1, T0 + 3 * DAY, None),
        (T0 + 3 * DAY, "STOPPED", 1),
    ]
    assert s.next_deadline() is None


def test_back_to_back_deadlines_are_the_boundaries() -> None:
    s = Scheduler()
    s.upsert(make(duration=HOUR, recurrence=hourly(count=3)), T0 - HOUR)
    assert deadlines(s, T0 + DAY) == [T0, T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR]


def test_overlapping_runs_extend_until_at_each_start() -> None:
    s = Scheduler()
    s.upsert(make(duration=90 * MIN, recurrence=hourly(count=3)), T0 - HOUR)
    events = drive(s, T0 + DAY)
    assert timed(events) == [
        (T0, "RUNNING", 1, T0 + 90 * MIN, T0 + HOUR),
        (T0 + HOUR, "RUNNING", 1, T0 + 150 * MIN, T0 + 2 * HOUR),
        (T0 + 2 * HOUR, "RUNNING", 1, T0 + 210 * MIN, None),
        (T0 + 210 * MIN, "STOPPED", 1),
    ]
    assert s.next_deadline() is None


def test_duration_none_runs_until_changed() -> None:
    s = Scheduler()
    d = make(start_time=T0 + HOUR, duration=None, recurrence=DAILY)
    assert ev(s.upsert(d, T0)) == [("Created", 1)]
    assert s.next_deadline() == T0 + HOUR
    assert timed(drive(s, T0 + 365 * DAY)) == [(T0 + HOUR, "RUNNING", 1, None, None)]
    assert s.next_deadline() is None
    assert s.advance(T0 + 1000 * DAY) == []
    assert [st.id for st in s.running_statuses()] == [1]
    # Given a duration, it runs recurrence by recurrence: the current one goes on.
    now = T0 + 5 * DAY + HOUR + 30 * MIN
    assert ev(s.upsert(replace(d, duration=HOUR), now)) == [
        ("Updated", 1),
        ("RUNNING", 1, T0 + 5 * DAY + 2 * HOUR, T0 + 6 * DAY + HOUR),
    ]
    assert timed(drive(s, T0 + 6 * DAY)) == [(T0 + 5 * DAY + 2 * HOUR, "STOPPED", 1)]


def test_duration_none_given_a_duration_that_has_ended_stops() -> None:
    s = Scheduler()
    d = make(duration=None, recurrence=DAILY)
    s.upsert(d, T0)
    assert ev(s.upsert(replace(d, duration=HOUR), T0 + 3 * DAY + 2 * HOUR)) == [
        ("Updated", 1),
        ("STOPPED", 1),
    ]
    assert s.next_deadline() == T0 + 4 * DAY


def test_duration_zero_never_runs() -> None:
    s = Scheduler()
    assert ev(s.upsert(make(duration=timedelta(0), recurrence=DAILY), T0 - HOUR)) == [
        ("Created", 1)
    ]
    assert s.next_deadline() is None
    assert s.advance(T0) == []
    assert s.advance(T0 + 10 * DAY) == []
    assert s.running_statuses() == []


def test_inactive_never_runs() -> None:
    s = Scheduler()
    assert ev(s.upsert(make(active=False, recurrence=DAILY), T0 + 30 * MIN)) == [("Created", 1)]
    assert s.next_deadline() is None
    assert s.advance(T0 + 10 * DAY) == []


def test_activated_while_in_a_run_starts_and_deactivated_stops() -> None:
    s = Scheduler()
    d = make(active=False, recurrence=DAILY)
    s.upsert(d, T0)
    now = T0 + DAY + 10 * MIN
    assert ev(s.upsert(replace(d, active=True), now)) == [
        ("Updated", 1),
        ("RUNNING", 1, T0 + DAY + HOUR, T0 + 2 * DAY),
    ]
    later = now + 10 * MIN
    events = s.upsert(replace(d, active=False), later)
    assert timed(events) == [("Updated", 1), (later, "STOPPED", 1)]
    assert status(events[1]).next_run is None
    assert s.next_deadline() is None
    assert s.running_statuses() == []


# -- changes while running --------------------------------------------------------------

NOW = T0 + 20 * MIN


@pytest.mark.parametrize(
    "change",
    [
        {"target": TargetIds.of(3)},
        {"payload": {"power": 20}},
        {"dry_run": True},
    ],
    ids=["target", "payload", "dry_run"],
)
def test_reconfiguration_while_running_is_a_start_with_the_new_values(
    change: dict[str, Any],
) -> None:
    s = Scheduler()
    d = make(recurrence=DAILY)
    s.upsert(d, T0)
    new = replace(d, **change)
    events = s.upsert(new, NOW)
    assert timed(events) == [("Updated", 1), (NOW, "RUNNING", 1, T0 + HOUR, T0 + DAY)]
    assert events[1].dispatch is new
    status = events[1]
    assert isinstance(status, RunningStatus)
    for name, value in change.items():
        assert getattr(status, name) == value
    # The run goes on as before.
    assert timed(drive(s, T0 + DAY - SEC)) == [(T0 + HOUR, "STOPPED", 1)]


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        (2 * HOUR, [("Updated", 1), ("RUNNING", 1, T0 + 2 * HOUR, T0 + DAY)]),
        (30 * MIN, [("Updated", 1), ("RUNNING", 1, T0 + 30 * MIN, T0 + DAY)]),
        (None, [("Updated", 1), ("RUNNING", 1, None, None)]),
        (20 * MIN, [("Updated", 1), ("STOPPED", 1)]),  # ends exactly now
        (10 * MIN, [("Updated", 1), ("STOPPED", 1)]),
        (timedelta(0), [("Updated", 1), ("STOPPED", 1)]),
    ],
)
def test_duration_change_while_running(
    duration: timedelta | None, expected: list[tuple[Any, ...]]
) -> None:
    s = Scheduler()
    d = make(recurrence=DAILY)
    s.upsert(d, T0)
    assert ev(s.upsert(replace(d, duration=duration), NOW)) == expected


def test_longer_duration_moves_the_stop() -> None:
    s = Scheduler()
    d = make(recurrence=daily(count=1))
    s.upsert(d, T0)
    s.upsert(replace(d, duration=2 * HOUR), NOW)
    assert s.next_deadline() == T0 + 2 * HOUR
    assert timed(drive(s, T0 + 10 * DAY)) == [(T0 + 2 * HOUR, "STOPPED", 1)]


def test_type_change_while_running_stops_the_old_type_then_starts_the_new() -> None:
    s = Scheduler()
    d = make(recurrence=DAILY)
    s.upsert(d, T0)
    new = replace(d, type="EV")
    events = s.upsert(new, NOW)
    assert ev(events) == [
        ("Updated", 1),
        ("STOPPED", 1),
        ("RUNNING", 1, T0 + HOUR, T0 + DAY),
    ]
    stop, start = events[1], events[2]
    assert isinstance(stop, RunningStatus)
    assert isinstance(start, RunningStatus)
    assert stop.dispatch is d
    assert start.dispatch is new
    assert stop.decided_at == start.decided_at == NOW
    # The old-type dispatch never runs again; the new one runs tomorrow.
    assert (stop.until, stop.next_run) == (None, None)
    assert (stop.running("PEAK"), stop.running("EV")) == (
        RunningState.STOPPED,
        RunningState.DIFFERENT_TYPE,
    )
    assert (start.running("PEAK"), start.running("EV")) == (
        RunningState.DIFFERENT_TYPE,
        RunningState.RUNNING,
    )
    assert s.running_statuses() == [start]
    assert timed(drive(s, T0 + DAY - SEC)) == [(T0 + HOUR, "STOPPED", 1)]


def test_type_change_that_also_ends_the_run_stops_once() -> None:
    s = Scheduler()
    d = make(recurrence=DAILY)
    s.upsert(d, T0)
    events = s.upsert(replace(d, type="EV", duration=10 * MIN), NOW)
    assert ev(events) == [("Updated", 1), ("STOPPED", 1)]
    assert events[1].dispatch.type == "PEAK"


def test_type_change_while_not_running_is_only_an_update() -> None:
    s = Scheduler()
    d = make(recurrence=DAILY)
    s.upsert(d, T0 + 2 * HOUR)
    assert ev(s.upsert(replace(d, type="EV"), T0 + 3 * HOUR)) == [("Updated", 1)]
    assert timed(drive(s, T0 + DAY)) == [(T0 + DAY, "RUNNING", 1, T0 + DAY + HOUR, T0 + 2 * DAY)]


def test_deactivated_while_running_stops() -> None:
    s = Scheduler()
    d = make()
    s.upsert(d, T0)
    assert ev(s.upsert(replace(d, active=False), NOW)) == [("Updated", 1), ("STOPPED", 1)]
    assert s.next_deadline() is None


def test_start_moved_to_now_starts() -> None:
    s = Scheduler()
    d = make(start_time=T0 + DAY)
    s.upsert(d, T0)
    assert ev(s.upsert(replace(d, start_time=NOW), NOW)) == [
        ("Updated", 1),
        ("RUNNING", 1, NOW + HOUR, None),
    ]
    assert s.next_deadline() == NOW + HOUR


def test_start_moved_into_the_past_so_it_runs_now_starts() -> None:
    s = Scheduler()
    d = make(start_time=T0 + DAY)
    s.upsert(d, T0 + 30 * MIN)
    assert ev(s.upsert(replace(d, start_time=T0), T0 + 30 * MIN)) == [
        ("Updated", 1),
        ("RUNNING", 1, T0 + HOUR, None),
    ]


def test_start_moved_away_while_running_stops_and_reschedules() -> None:
    s = Scheduler()
    d = make()
    s.upsert(d, T0)
    events = s.upsert(replace(d, start_time=T0 + DAY), NOW)
    assert ev(events) == [("Updated", 1), ("STOPPED", 1)]
    assert status(events[1]).next_run == T0 + DAY
    assert s.next_deadline() == T0 + DAY
    assert timed(drive(s, T0 + 2 * DAY)) == [
        (T0 + DAY, "RUNNING", 1, T0 + DAY + HOUR, None),
        (T0 + DAY + HOUR, "STOPPED", 1),
    ]


def test_start_moved_while_running_to_another_run_that_covers_now_restarts() -> None:
    s = Scheduler()
    d = make()
    s.upsert(d, T0 + 30 * MIN)
    # Still running, but it is another run: a start with the new run's end.
    assert ev(s.upsert(replace(d, start_time=T0 + 10 * MIN), T0 + 30 * MIN)) == [
        ("Updated", 1),
        ("RUNNING", 1, T0 + 70 * MIN, None),
    ]
    assert s.next_deadline() == T0 + 70 * MIN


def test_recurrence_added_so_that_it_runs_now_starts() -> None:
    s = Scheduler()
    d = make()
    now = T0 + 2 * DAY + 30 * MIN
    s.upsert(d, now)
    assert ev(s.upsert(replace(d, recurrence=DAILY), now)) == [
        ("Updated", 1),
        ("RUNNING", 1, T0 + 2 * DAY + HOUR, T0 + 3 * DAY),
    ]


def test_recurrence_cut_so_that_the_current_run_vanishes_stops() -> None:
    s = Scheduler()
    d = make(recurrence=DAILY)
    now = T0 + 2 * DAY + 30 * MIN
    s.upsert(d, now)
    assert ev(s.upsert(replace(d, recurrence=daily(count=2)), now)) == [
        ("Updated", 1),
        ("STOPPED", 1),
    ]
    assert s.next_deadline() is None


def test_recurrence_future_change_while_running_emits_only_updated() -> None:
    s = Scheduler()
    d = make(recurrence=DAILY)
    s.upsert(d, T0)
    assert ev(s.upsert(replace(d, recurrence=daily(interval=2)), NOW)) == [("Updated", 1)]
    assert ev(s.upsert(replace(d, recurrence=daily(count=5, interval=2)), NOW)) == [("Updated", 1)]
    # The current run is unchanged, the future follows the new rule.
    assert timed(drive(s, T0 + 3 * DAY)) == [
        (T0 + HOUR, "STOPPED", 1),
        (T0 + 2 * DAY, "RUNNING", 1, T0 + 2 * DAY + HOUR, T0 + 4 * DAY),
        (T0 + 2 * DAY + HOUR, "STOPPED", 1),
    ]


def test_update_that_does_not_touch_the_run_of_a_running_dispatch_emits_only_updated() -> None:
    s = Scheduler()
    d = make(update_time=T0)
    s.upsert(d, T0)
    assert ev(s.upsert(replace(d, update_time=NOW), NOW)) == [("Updated", 1)]
    assert ev(s.upsert(replace(d, end_time=T0 + HOUR, update_time=NOW + SEC), NOW)) == [
        ("Updated", 1)
    ]


def test_changing_a_dispatch_that_is_not_running_emits_only_updated() -> None:
    s = Scheduler()
    d = make(start_time=T0 + DAY)
    s.upsert(d, T0)
    for change in (
        {"payload": {"power": 99}},
        {"target": TargetIds.of(7)},
        {"dry_run": True},
        {"duration": 2 * HOUR},
        {"start_time": T0 + 2 * DAY},
        {"type": "EV"},
        {"recurrence": DAILY},
    ):
        d = replace(d, **change)
        assert ev(s.upsert(d, T0)) == [("Updated", 1)]
    assert s.next_deadline() == T0 + 2 * DAY


def test_update_landing_exactly_on_the_run_end_sees_it_over() -> None:
    s = Scheduler()
    d = make(recurrence=DAILY)
    s.upsert(d, T0)
    end = T0 + HOUR  # the stop is due, but advance() has not run yet
    events = s.upsert(replace(d, payload={"power": 20}), end)
    assert timed(events) == [("Updated", 1), (end, "STOPPED", 1)]
    assert s.advance(end) == []
    assert s.next_deadline() == T0 + DAY


def test_update_landing_on_a_back_to_back_boundary_sees_the_next_run() -> None:
    s = Scheduler()
    d = make(duration=DAY, recurrence=DAILY)
    s.upsert(d, T0)
    assert ev(s.upsert(replace(d, payload={"power": 20}), T0 + DAY)) == [
        ("Updated", 1),
        ("RUNNING", 1, T0 + 2 * DAY, T0 + 2 * DAY),
    ]
    assert s.advance(T0 + DAY) == []
    assert s.next_deadline() == T0 + 2 * DAY


# -- deletion, staleness, reconcile -------------------------------------------------------


def test_delete_while_running_is_deleted_then_stopped() -> None:
    s = Scheduler()
    d = make(recurrence=DAILY)
    s.upsert(d, T0)
    events = s.remove(1, NOW)
    assert timed(events) == [("Deleted", 1), (NOW, "STOPPED", 1)]
    assert events[0].dispatch is d
    assert events[1].dispatch is d
    # A deleted dispatch never runs again.
    assert status(events[1]).next_run is None
    assert s.next_deadline() is None
    assert s.running_statuses() == []
    assert len(s) == 0
    assert 1 not in s.dispatches
    assert s.advance(T0 + 10 * DAY) == []


def test_delete_while_not_running_is_only_deleted() -> None:
    s = Scheduler()
    s.upsert(make(start_time=T0 + DAY), T0)
    assert ev(s.remove(1, T0)) == [("Deleted", 1)]
    assert s.next_deadline() is None
    assert s.remove(1, T0) == []
    assert s.remove(42, T0) == []


def test_deleted_and_recreated_with_the_same_id() -> None:
    s = Scheduler()
    s.upsert(make(start_time=T0 + HOUR), T0)
    s.remove(1, T0)
    assert ev(s.upsert(make(start_time=T0 + 2 * HOUR), T0)) == [("Created", 1)]
    assert timed(drive(s, T0 + DAY)) == [
        (T0 + 2 * HOUR, "RUNNING", 1, T0 + 3 * HOUR, None),
        (T0 + 3 * HOUR, "STOPPED", 1),
    ]


def test_equal_upsert_emits_nothing() -> None:
    s = Scheduler()
    d = make(update_time=T0)
    s.upsert(d, T0)
    assert s.upsert(replace(d), NOW) == []
    assert s.upsert(d, NOW, authoritative=True) == []


def test_stale_stream_update_is_ignored() -> None:
    s = Scheduler()
    d = make(update_time=T0 + 10 * MIN)
    s.upsert(d, T0 + 10 * MIN)
    stale = replace(d, payload={"power": 1}, update_time=T0 + 5 * MIN)
    assert s.upsert(stale, NOW) == []
    assert s.dispatches[1] is d
    assert s.running_statuses()[0].dispatch is d
    newer = replace(d, payload={"power": 2}, update_time=NOW)
    assert ev(s.upsert(newer, NOW)) == [("Updated", 1), ("RUNNING", 1, T0 + HOUR, None)]
    assert s.dispatches[1] is newer


def test_update_without_update_time_is_not_stale() -> None:
    s = Scheduler()
    d = make(update_time=T0 + 10 * MIN)
    s.upsert(d, T0)
    assert ev(s.upsert(replace(d, payload={"power": 1}, update_time=None), T0)) == [
        ("Updated", 1),
        ("RUNNING", 1, T0 + HOUR, None),
    ]


def test_updated_carries_the_previous_version() -> None:
    s = Scheduler()
    d = make(start_time=T0 + DAY)
    s.upsert(d, T0)
    new = replace(d, payload={"power": 5})
    (event,) = s.upsert(new, T0)
    assert event == Updated(new, d)


def _three() -> list[Dispatch]:
    return [
        make(id=1, start_time=T0 + DAY),
        make(id=2, start_time=T0 + DAY),
        make(id=3, start_time=T0 + DAY),
    ]


def test_reconcile_from_empty_creates_in_id_order() -> None:
    s = Scheduler()
    one, two, three = _three()
    assert ev(s.reconcile([three, one, two], T0)) == [
        ("Created", 1),
        ("Created", 2),
        ("Created", 3),
    ]
    assert s.reconcile([two, three, one], T0) == []


def test_reconcile_diffs_against_the_local_copy() -> None:
    s = Scheduler()
    one, two, three = _three()
    s.reconcile([one, two, three], T0)
    two2 = replace(two, payload={"power": 3})
    five = make(id=5, start_time=T0 + DAY)
    four = make(id=4, start_time=T0 + DAY)
    events = s.reconcile([five, two2, one, four], T0)
    # Deletions first (by id), then creations and updates (by id).
    assert ev(events) == [("Deleted", 3), ("Updated", 2), ("Created", 4), ("Created", 5)]
    assert events[1] == Updated(two2, two)
    assert sorted(s.dispatches) == [1, 2, 4, 5]


def test_reconcile_deletes_running_dispatch_with_a_stop() -> None:
    s = Scheduler()
    s.reconcile([make(id=1), make(id=2, start_time=T0 + DAY)], T0)
    assert ev(s.reconcile([make(id=2, start_time=T0 + DAY)], NOW)) == [
        ("Deleted", 1),
        ("STOPPED", 1),
    ]


def test_reconcile_starts_created_dispatches_that_run_now() -> None:
    s = Scheduler()
    assert timed(s.reconcile([make(id=2), make(id=1, start_time=T0 + DAY)], NOW)) == [
        ("Created", 1),
        ("Created", 2),
        (NOW, "RUNNING", 2, T0 + HOUR, None),
    ]


def test_reconcile_does_not_delete_a_dispatch_whose_runs_ended() -> None:
    s = Scheduler()
    d = make(recurrence=daily(count=2))
    assert ev(s.reconcile([d], T0)) == [("Created", 1), ("RUNNING", 1, T0 + HOUR, T0 + DAY)]
    assert timed(drive(s, T0 + 10 * DAY)) == [
        (T0 + HOUR, "STOPPED", 1),
        (T0 + DAY, "RUNNING", 1, T0 + DAY + HOUR, None),
        (T0 + DAY + HOUR, "STOPPED", 1),
    ]
    assert s.next_deadline() is None
    assert s.reconcile([d], T0 + 10 * DAY) == []
    assert s.dispatches[1] is d


def test_reconcile_wins_over_a_newer_update_time() -> None:
    s = Scheduler()
    d = make(start_time=T0 + DAY, update_time=T0 + 10 * MIN)
    s.upsert(d, T0)
    listed = replace(d, payload={"power": 0}, update_time=T0 + 5 * MIN)
    assert ev(s.reconcile([listed], T0)) == [("Updated", 1)]
    assert s.dispatches[1] is listed


# -- reading ------------------------------------------------------------------------------


def test_running_statuses_are_the_last_decisions_of_the_running_ones() -> None:
    s = Scheduler()
    s.upsert(make(id=3), T0)
    s.upsert(make(id=2, start_time=T0 + DAY), T0)
    (_, first) = s.upsert(make(id=1), T0 + MIN)
    assert isinstance(first, RunningStatus)
    assert [(st.id, st.decided_at) for st in s.running_statuses()] == [(1, T0 + MIN), (3, T0)]
    assert s.running_statuses()[0] is first
    (_, reconfigured) = s.upsert(make(id=1, payload={"power": 1}), NOW)
    assert s.running_statuses()[0] is reconfigured
    drive(s, T0 + HOUR)
    assert s.running_statuses() == []


def test_dispatches_is_a_live_read_only_view() -> None:
    s = Scheduler()
    view = s.dispatches
    d = make()
    s.upsert(d, T0)
    assert dict(view) == {1: d}
    with pytest.raises(TypeError):
        view[2] = d  # type: ignore[index]
    s.remove(1, T0)
    assert dict(view) == {}


def test_next_deadline_is_the_earliest_over_all_dispatches() -> None:
    s = Scheduler()
    s.upsert(make(id=1, start_time=T0 + 3 * HOUR), T0)
    s.upsert(make(id=2, start_time=T0 + HOUR, duration=30 * MIN), T0)
    assert s.next_deadline() == T0 + HOUR
    assert timed(drive(s, T0 + DAY)) == [
        (T0 + HOUR, "RUNNING", 2, T0 + 90 * MIN, None),
        (T0 + 90 * MIN, "STOPPED", 2),
        (T0 + 3 * HOUR, "RUNNING", 1, T0 + 4 * HOUR, None),
        (T0 + 4 * HOUR, "STOPPED", 1),
    ]
    assert s.next_deadline() is None


def test_late_advance_decides_at_now_in_one_go() -> None:
    s = Scheduler()
    s.upsert(make(id=1, start_time=T0 + HOUR, recurrence=DAILY), T0)
    s.upsert(make(id=2, start_time=T0 + 2 * HOUR), T0)
    # Woken late (e.g. after a suspend): each dispatch's state at `now`, nothing replayed.
    now = T0 + 3 * DAY + HOUR + 30 * MIN
    assert timed(s.advance(now)) == [
        (now, "RUNNING", 1, T0 + 3 * DAY + 2 * HOUR, T0 + 4 * DAY + HOUR)
    ]
    assert s.next_deadline() == T0 + 3 * DAY + 2 * HOUR


# -- RunningStatus --------------------------------------------------------------------------


def test_running_status_running_and_proxied_fields() -> None:
    d = make(
        id=9,
        dry_run=True,
        active=True,
        recurrence=DAILY,
        target=TargetIds.of(4),
        payload={"a": [1, 2]},
    )
    on = RunningStatus(dispatch=d, started=True, decided_at=T0, until=T0 + HOUR, next_run=T0 + DAY)
    off = replace(on, started=False, until=None)
    assert on.running("PEAK") is RunningState.RUNNING
    assert off.running("PEAK") is RunningState.STOPPED
    assert on.running("EV") is RunningState.DIFFERENT_TYPE
    assert off.running("EV") is RunningState.DIFFERENT_TYPE
    assert (on.id, on.type, on.start_time, on.duration) == (9, "PEAK", T0, HOUR)
    assert on.target == TargetIds.of(4)
    assert (on.active, on.dry_run) == (True, True)
    assert on.payload == {"a": [1, 2]}
    assert on.recurrence == DAILY
    with pytest.raises(AttributeError):
        on.started = False  # type: ignore[misc]
