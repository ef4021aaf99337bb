"""Merge strategies and the `Merger`: one continuous run per identity.

Most tests are pure: the real `Scheduler` is driven by hand (every deadline it names,
plus changes at given minutes) and each instant's transitions are fed to a `Merger` as
one batch, the way the dispatcher does. Merged items are compared as tuples
``(minute, identity, "START"/"RECONF"/"STOP", until minute, member ids, newest id)``.

A Hypothesis test checks the whole contract at once: for random dispatches (recurring,
overlapping, created late, updated, deleted), the merged runs of every identity equal
the union of the member windows, computed here by plain arithmetic.

The end-to-end tests run the dispatcher's merged receivers against the embedded server
under ``autojump_clock``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_dispatch import (
    ComponentCategory,
    Dispatch,
    EndCriteria,
    Frequency,
    InverterType,
    Members,
    MergeByType,
    MergeByTypeTarget,
    MergedStatus,
    MergeStrategy,
    Receiver,
    RecurrenceRule,
    RunningState,
    RunningStatus,
    TargetCategories,
    TargetCategory,
    TargetIds,
)
from trio_dispatch._merge import Merger, canonical_target
from trio_dispatch._scheduler import Scheduler
from trio_dispatch.testing import WallClock, open_test_environment

T0 = datetime(2030, 1, 1, tzinfo=UTC)
MIN = timedelta(minutes=1)
LIMIT = 86400.0  # virtual seconds an end-to-end test may take


def at(m: float) -> datetime:
    return T0 + m * MIN


def minute(t: datetime | None) -> float | None:
    return None if t is None else (t - T0) / MIN


def make(id: int, start: float, length: float | None, **fields: Any) -> Dispatch:
    values: dict[str, Any] = {
        "id": id,
        "type": "A",
        "start_time": at(start),
        "duration": None if length is None else length * MIN,
    }
    values.update(fields)
    return Dispatch(**values)


def row(item: MergedStatus) -> tuple[Any, ...]:
    kind = "STOP" if not item.started else "START" if item.since == item.decided_at else "RECONF"
    return (
        minute(item.decided_at),
        item.identity,
        kind,
        minute(item.until),
        item.members.ids,
        item.id,
    )


Change = Callable[[Scheduler, datetime], list[Any]]


def drive(
    dispatches: Iterable[Dispatch],
    *,
    strategy: MergeStrategy | None = None,
    changes: Sequence[tuple[float, Change]] = (),
    horizon: float = 240,
) -> list[tuple[Any, ...]]:
    """Run the scheduler to `horizon` minutes and merge; return the merged rows."""
    scheduler = Scheduler()
    merger = Merger(strategy or MergeByType())
    rows = [row(m) for m in merger.feed(statuses(scheduler.reconcile(dispatches, T0)))]
    pending = sorted(changes, key=lambda c: c[0])
    while True:
        deadline = scheduler.next_deadline()
        times = [t for t in (deadline, at(pending[0][0]) if pending else None) if t is not None]
        if not times or min(times) > at(horizon):
            return rows
        now = min(times)
        batch = scheduler.advance(now)
        while pending and at(pending[0][0]) == now:
            batch += statuses(pending.pop(0)[1](scheduler, now))
        rows += [row(m) for m in merger.feed(batch)]


def statuses(transitions: Iterable[Any]) -> list[RunningStatus]:
    return [t for t in transitions if isinstance(t, RunningStatus)]


def update(dispatch: Dispatch, **fields: Any) -> Change:
    return lambda scheduler, now: scheduler.upsert(replace(dispatch, **fields), now)


def delete(dispatch_id: int) -> Change:
    return lambda scheduler, now: scheduler.remove(dispatch_id, now)


A = ("A", False)

# -- merge semantics ---------------------------------------------------------------------------


def test_overlapping_members_make_one_run() -> None:
    rows = drive([make(1, 1, 5), make(2, 6, 5), make(3, 3, 20)])
    assert rows == [
        (1, A, "START", 6, (1,), 1),
        (3, A, "RECONF", 23, (1, 3), 3),  # 3 joins; the run now lasts until 23
        (6, A, "RECONF", 23, (2, 3), 2),  # 1 leaves and 2 joins, at the same instant
        (11, A, "RECONF", 23, (3,), 3),  # 2 leaves: 3 is the newest member left
        (23, A, "STOP", None, (), 3),
    ]


def test_back_to_back_members_never_stop_in_between() -> None:
    rows = drive([make(1, 1, 5), make(2, 6, 5), make(3, 11, 5)])
    assert rows == [
        (1, A, "START", 6, (1,), 1),
        (6, A, "RECONF", 11, (2,), 2),
        (11, A, "RECONF", 16, (3,), 3),
        (16, A, "STOP", None, (), 3),
    ]


def test_back_to_back_runs_of_one_recurring_member() -> None:
    every_5 = RecurrenceRule(
        frequency=Frequency.MINUTELY, interval=5, end_criteria=EndCriteria(count=3)
    )
    assert drive([make(1, 1, 5, recurrence=every_5)]) == [
        (1, A, "START", 6, (1,), 1),
        (6, A, "RECONF", 11, (1,), 1),
        (11, A, "RECONF", 16, (1,), 1),
        (16, A, "STOP", None, (), 1),
    ]


def test_a_gap_is_a_stop_and_a_new_start() -> None:
    assert drive([make(1, 1, 5), make(2, 7, 5)]) == [
        (1, A, "START", 6, (1,), 1),
        (6, A, "STOP", None, (), 1),
        (7, A, "START", 12, (2,), 2),
        (12, A, "STOP", None, (), 2),
    ]


@pytest.mark.parametrize(
    ("how", "change"),
    [
        ("deactivated", lambda d: update(d, active=False)),
        ("deleted", lambda d: delete(d.id)),
        ("moved away", lambda d: update(d, start_time=at(100))),
    ],
)
def test_the_last_member_stopping_early_stops_the_run(
    how: str, change: Callable[[Dispatch], Change]
) -> None:
    first, second = make(1, 1, 10), make(2, 2, 20)
    rows = drive([first, second], changes=[(5, change(first)), (8, change(second))], horizon=60)
    assert rows == [
        (1, A, "START", 11, (1,), 1),
        (2, A, "RECONF", 22, (1, 2), 2),
        (5, A, "RECONF", 22, (2,), 2),  # one member left early: the run goes on
        (8, A, "STOP", None, (), 2),  # the last one left: one stop
    ]


def test_a_member_reconfigured_while_others_run() -> None:
    first, second = make(1, 1, 30, payload={"p": 1}), make(2, 2, 10, payload={"p": 2})
    scheduler, merger = Scheduler(), Merger(MergeByType())
    merged = merger.feed(statuses(scheduler.reconcile([first, second], T0)))
    assert merged == []
    merged = merger.feed(scheduler.advance(at(1))) + merger.feed(scheduler.advance(at(2)))
    assert [(row(m), m.payload) for m in merged] == [
        ((1, A, "START", 31, (1,), 1), {"p": 1}),
        ((2, A, "RECONF", 31, (1, 2), 2), {"p": 2}),
    ]
    # The older member changes: it becomes the newest; the values shown follow it.
    (item,) = merger.feed(statuses(scheduler.upsert(replace(first, payload={"p": 3}), at(5))))
    assert (row(item), item.payload, item.since) == (
        (5, A, "RECONF", 31, (1, 2), 1),
        {"p": 3},
        at(1),
    )
    # A change that the scheduler does not report changes nothing here either.
    assert merger.feed(statuses(scheduler.upsert(replace(first, payload={"p": 3}), at(6)))) == []
    # The newest leaves: the values are the remaining member's again.
    (item,) = merger.feed(statuses(scheduler.upsert(replace(first, active=False), at(7))))
    assert (row(item), item.payload) == ((7, A, "RECONF", 12, (2,), 2), {"p": 2})


def test_until_is_the_latest_member_end_and_none_if_any_is_unbounded() -> None:
    rows = drive(
        [make(1, 1, 30), make(2, 2, 60), make(3, 3, None), make(4, 4, 10)],
        changes=[(20, delete(3)), (40, delete(2))],
        horizon=100,
    )
    assert rows == [
        (1, A, "START", 31, (1,), 1),
        (2, A, "RECONF", 62, (1, 2), 2),
        (3, A, "RECONF", None, (1, 2, 3), 3),  # unbounded member: no end in sight
        (4, A, "RECONF", None, (1, 2, 3, 4), 4),
        (14, A, "RECONF", None, (1, 2, 3), 3),
        (20, A, "RECONF", 62, (1, 2), 2),  # the unbounded one is gone
        (31, A, "RECONF", 62, (2,), 2),
        (40, A, "STOP", None, (), 2),  # the latest end left early
    ]


def test_identities_by_type_and_dry_run() -> None:
    rows = drive(
        [
            make(1, 1, 10),
            make(2, 2, 10, dry_run=True),
            make(3, 3, 10, type="B"),
            make(4, 4, 10),
        ]
    )
    assert rows == [
        (1, A, "START", 11, (1,), 1),
        (2, ("A", True), "START", 12, (2,), 2),
        (3, ("B", False), "START", 13, (3,), 3),
        (4, A, "RECONF", 14, (1, 4), 4),
        (11, A, "RECONF", 14, (4,), 4),
        (12, ("A", True), "STOP", None, (), 2),
        (13, ("B", False), "STOP", None, (), 3),
        (14, A, "STOP", None, (), 4),
    ]


def test_a_member_whose_identity_changes_moves_in_one_batch() -> None:
    first, second = make(1, 1, 30), make(2, 2, 30, dry_run=True)
    rows = drive([first, second], changes=[(5, update(first, dry_run=True))], horizon=60)
    assert rows == [
        (1, A, "START", 31, (1,), 1),
        (2, ("A", True), "START", 32, (2,), 2),
        (5, A, "STOP", None, (), 1),
        (5, ("A", True), "RECONF", 32, (1, 2), 1),
        (31, ("A", True), "RECONF", 32, (2,), 2),
        (32, ("A", True), "STOP", None, (), 2),
    ]


def test_a_type_change_stops_the_old_identity() -> None:
    first = make(1, 1, 30)
    rows = drive([first, make(2, 1, 10, type="B")], changes=[(5, update(first, type="B"))])
    assert rows == [
        (1, A, "START", 31, (1,), 1),
        (1, ("B", False), "START", 11, (2,), 2),
        (5, A, "STOP", None, (), 1),
        (5, ("B", False), "RECONF", 31, (1, 2), 1),
        (11, ("B", False), "RECONF", 31, (1,), 1),
        (31, ("B", False), "STOP", None, (), 1),
    ]


def test_by_type_and_target() -> None:
    rows = drive(
        [
            make(1, 1, 10, target=TargetIds.of(1, 2)),
            make(2, 2, 10, target=TargetIds.of(3)),
            make(3, 3, 10, target=TargetIds(ids=frozenset([2, 1]))),
        ],
        strategy=MergeByTypeTarget(),
    )
    one_two, three = ("A", False, ("ids", (1, 2))), ("A", False, ("ids", (3,)))
    assert rows == [
        (1, one_two, "START", 11, (1,), 1),
        (2, three, "START", 12, (2,), 2),
        (3, one_two, "RECONF", 13, (1, 3), 3),
        (11, one_two, "RECONF", 13, (3,), 3),
        (12, three, "STOP", None, (), 2),
        (13, one_two, "STOP", None, (), 3),
    ]


def test_a_user_strategy_per_dispatch() -> None:
    @dataclass(frozen=True)
    class PerDispatch:
        def identity(self, dispatch: Dispatch) -> int:
            return dispatch.id

    assert isinstance(PerDispatch(), MergeStrategy)
    rows = drive([make(1, 1, 5), make(2, 6, 5)], strategy=PerDispatch())
    assert rows == [
        (1, 1, "START", 6, (1,), 1),
        (6, 1, "STOP", None, (), 1),
        (6, 2, "START", 11, (2,), 2),
        (11, 2, "STOP", None, (), 2),
    ]


def test_a_batch_with_no_net_change_emits_nothing() -> None:
    merger = Merger(MergeByType())
    d = make(1, 0, 10)
    start = RunningStatus(dispatch=d, started=True, decided_at=T0, until=at(10), next_run=None)
    stop = RunningStatus(dispatch=d, started=False, decided_at=T0, until=None, next_run=None)
    assert merger.feed([start, stop]) == []  # joined and left within one batch
    assert merger.running() == {}
    assert [row(m) for m in merger.feed([start])] == [(0, A, "START", 10, (1,), 1)]
    assert merger.feed([stop, start]) == []  # left and came back as it was
    again = replace(start, decided_at=at(1))
    assert [row(m) for m in merger.feed([stop, again])] == [(1, A, "RECONF", 10, (1,), 1)]
    assert list(merger.running()) == [A]
    assert [row(m) for m in merger.feed([replace(stop, decided_at=at(2))])] == [
        (2, A, "STOP", None, (), 1)
    ]


def test_a_stop_shows_the_last_member_as_it_ran() -> None:
    d = make(1, 0, 10, payload={"p": 1}, target=TargetIds.of(7))
    scheduler, merger = Scheduler(), Merger(MergeByType())
    (start,) = merger.feed(statuses(scheduler.reconcile([d], T0)))
    (stop,) = merger.feed(statuses(scheduler.remove(1, at(3))))
    assert (stop.started, stop.since, stop.decided_at, stop.until) == (False, T0, at(3), None)
    assert (stop.id, stop.target, stop.payload, stop.newest) == (
        1,
        TargetIds.of(7),
        {"p": 1},
        start.newest,
    )
    assert stop.members == ()
    assert len(stop.members) == 0


def test_merged_items_read_like_running_statuses() -> None:
    d = make(5, 0, 10, type="BATTERY", payload={"p": 2}, target=TargetIds.of(4), dry_run=True)
    scheduler, merger = Scheduler(), Merger(MergeByType())
    (item,) = merger.feed(statuses(scheduler.reconcile([d], T0)))
    assert item.running("BATTERY") is RunningState.RUNNING
    assert item.running("OTHER") is RunningState.DIFFERENT_TYPE
    assert (item.id, item.type, item.start_time, item.dry_run) == (5, "BATTERY", T0, True)
    assert (item.target, item.payload, item.dispatch) == (TargetIds.of(4), {"p": 2}, d)
    (stop,) = merger.feed(statuses(scheduler.advance(at(10))))
    assert stop.running("BATTERY") is RunningState.STOPPED


def test_merger_rejects_a_strategy_without_identity() -> None:
    with pytest.raises(TypeError, match="identity"):
        Merger(object())  # type: ignore[arg-type]


# -- member snapshots --------------------------------------------------------------------------


def test_snapshots_stay_as_decided_through_checkpoints() -> None:
    """Each item's members are those at its decision, however many changes follow."""
    merger = Merger(MergeByType())
    alive: dict[int, RunningStatus] = {}
    seen: list[tuple[MergedStatus, tuple[RunningStatus, ...]]] = []
    for step in range(400):
        dispatch_id = (step * 37) % 53 + 1
        now = T0 + step * MIN
        if dispatch_id in alive and step % 3 == 0:
            old = alive.pop(dispatch_id)
            batch = [replace(old, started=False, decided_at=now, until=None)]
        else:
            status = RunningStatus(
                dispatch=make(dispatch_id, 0, None, payload={"step": step}),
                started=True,
                decided_at=now,
                until=now + (step % 7) * MIN if step % 5 else None,
                next_run=None,
            )
            alive[dispatch_id] = status
            batch = [status]
        for item in merger.feed(batch):
            seen.append((item, tuple(alive[k] for k in sorted(alive))))
    assert len(seen) == 400
    for item, expected in seen:  # read only now, after all the later changes
        assert len(item.members) == len(expected)
        assert tuple(item.members) == expected
        assert item.members == expected
        assert item.members.ids == tuple(s.id for s in expected)
        if expected:
            assert item.members[0] == expected[0]
            assert item.members[-1:] == expected[-1:]
            ends = [s.until for s in expected]
            assert item.until == (None if None in ends else max(e for e in ends if e))


def test_members_value_semantics() -> None:
    merger = Merger(MergeByType())
    d = make(3, 0, 10)
    start = RunningStatus(dispatch=d, started=True, decided_at=T0, until=at(10), next_run=None)
    (item,) = merger.feed([start])
    assert item.members == Members({3: start}, [], 0, 1)
    assert item.members == [start]
    assert item.members != Members()
    assert hash(item.members) == hash((start,))
    assert repr(item.members) == "Members(ids=(3,))"
    assert start in item.members
    assert (item.members == "x") is False


# -- identities --------------------------------------------------------------------------------

IDENTITY_SCRIPT = textwrap.dedent(
    """
    from datetime import UTC, datetime

    from trio_dispatch import (
        ComponentCategory, Dispatch, EvChargerType, InverterType, MergeByType,
        MergeByTypeTarget, TargetCategories, TargetCategory, TargetIds,
    )


    def identity_lines():
        cats = [
            TargetCategory(category=ComponentCategory.INVERTER, type=InverterType.PV),
            TargetCategory(category=ComponentCategory.BATTERY),
            TargetCategory(category=ComponentCategory.EV_CHARGER, type=EvChargerType.DC),
            TargetCategory(category=ComponentCategory.INVERTER),
        ]
        targets = [
            TargetIds.of(*range(40, 0, -3)),
            TargetIds(ids=frozenset(range(2**40, 2**40 + 50, 7))),
            TargetCategories(categories=frozenset(cats)),
            TargetCategories(categories=frozenset(reversed(cats))),
        ]
        lines = []
        for n, target in enumerate(targets):
            for kind in ("BATTERY_PEAK_SHAVING", "EV", "Ünïcode ✓"):
                d = Dispatch(id=n + 1, type=kind, start_time=datetime(2030, 1, 1, tzinfo=UTC),
                             target=target, dry_run=n % 2 == 1)
                lines.append(f"{MergeByType().identity(d)!r} {MergeByTypeTarget().identity(d)!r}")
        return lines


    if __name__ == "__main__":
        print("\\n".join(identity_lines()))
    """
)


def identities_in_a_process(hash_seed: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", IDENTITY_SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONIOENCODING": "utf-8"},
        timeout=60,
    )
    return done.stdout.splitlines()


def test_identities_are_the_same_in_every_process() -> None:
    runs = [identities_in_a_process(seed) for seed in ("0", "1", "4242", "random")]
    assert len(runs[0]) == 12
    assert all(run == runs[0] for run in runs)
    namespace: dict[str, Any] = {"__name__": "identities"}
    exec(compile(IDENTITY_SCRIPT, "<identities>", "exec"), namespace)
    assert namespace["identity_lines"]() == runs[0]  # and in this process, too
    assert runs[0][0] == (
        "('BATTERY_PEAK_SHAVING', False) ('BATTERY_PEAK_SHAVING', False, "
        "('ids', (1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31, 34, 37, 40)))"
    )


def test_identities_do_not_depend_on_set_order() -> None:
    cats = [
        TargetCategory(category=ComponentCategory.INVERTER, type=InverterType.PV),
        TargetCategory(category=ComponentCategory.BATTERY),
        TargetCategory(category=ComponentCategory.INVERTER),
    ]
    forward = TargetCategories(categories=frozenset(cats))
    backward = TargetCategories(categories=frozenset(reversed(cats)))
    assert canonical_target(forward) == canonical_target(backward)
    assert canonical_target(forward) == ("categories", ((3,), (3, 2), (5,)))
    # Ids whose set iteration order differs from their sorted order.
    ids = [2**62 + 5, 3, 2**40, 17, 1]
    assert list(frozenset(ids)) != sorted(ids)
    assert canonical_target(TargetIds(ids=frozenset(ids))) == ("ids", tuple(sorted(ids)))
    strategy = MergeByTypeTarget()
    one = make(1, 0, 1, target=TargetIds(ids=frozenset(ids)))
    two = make(2, 0, 1, target=TargetIds(ids=frozenset(reversed(ids))))
    assert strategy.identity(one) == strategy.identity(two)
    assert MergeByType().identity(one) == ("A", False)
    # Identities are plain data: equal to what their repr says.
    assert eval(repr(strategy.identity(one))) == strategy.identity(one)


# -- property: merged runs are the union of member windows -------------------------------------

HORIZON = 240  # minutes


@dataclass(frozen=True)
class Plan:
    """A dispatch's versions: (from minute, Dispatch or None for deleted), in order."""

    id: int
    versions: tuple[tuple[int, Dispatch | None], ...]


@st.composite
def plans(draw: st.DrawFn) -> list[Plan]:
    out = []
    for dispatch_id in range(1, draw(st.integers(1, 6)) + 1):

        def version(dispatch_id: int = dispatch_id) -> Dispatch:
            count = draw(st.integers(1, 4))
            rule = draw(
                st.sampled_from(
                    [
                        None,
                        RecurrenceRule(
                            frequency=Frequency.MINUTELY,
                            interval=draw(st.sampled_from([5, 10, 15, 20, 30])),
                            end_criteria=EndCriteria(count=count),
                        ),
                    ]
                )
            )
            return Dispatch(
                id=dispatch_id,
                type=draw(st.sampled_from(["A", "B"])),
                start_time=at(draw(st.integers(0, 120))),
                duration=draw(st.sampled_from([None, *[n * MIN for n in (1, 5, 10, 15, 20, 45)]])),
                active=draw(st.booleans()) or draw(st.booleans()),
                dry_run=draw(st.booleans()) and draw(st.booleans()),
                target=TargetIds.of(draw(st.integers(1, 2))),
                payload={"v": draw(st.integers(0, 2))},
                recurrence=rule,
            )

        created = draw(st.sampled_from([0, 0, 0, *range(1, 150)]))
        versions: list[tuple[int, Dispatch | None]] = [(created, version())]
        for when in sorted(draw(st.lists(st.integers(created, 200), max_size=3))):
            versions.append((when, None if draw(st.integers(0, 5)) == 0 else version()))
            if versions[-1][1] is None:
                break
        out.append(Plan(dispatch_id, tuple(versions)))
    return out


def windows(d: Dispatch, lo: int, hi: int) -> list[tuple[float, float]]:
    """The running windows of `d` (in minutes) within [lo, hi), by plain arithmetic."""
    if not d.active or lo >= hi:
        return []
    start = minute(d.start_time)
    assert start is not None
    rule = d.recurrence
    starts = [start]
    if rule is not None:
        assert rule.end_criteria is not None
        assert rule.end_criteria.count is not None
        starts = [start + k * rule.interval for k in range(rule.end_criteria.count)]
    if d.duration is None:
        spans = [(starts[0], float("inf"))]
    else:
        spans = [(s, s + d.duration / MIN) for s in starts]
    clipped = [(max(a, lo), min(b, hi)) for a, b in spans]
    return [(a, b) for a, b in clipped if a < b]


def union(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def expected_runs(
    plan: list[Plan], strategy: MergeStrategy
) -> dict[Hashable, list[tuple[float, float]]]:
    spans: dict[Hashable, list[tuple[float, float]]] = {}
    for p in plan:
        for n, (begin, d) in enumerate(p.versions):
            end = p.versions[n + 1][0] if n + 1 < len(p.versions) else HORIZON
            if d is not None:
                spans.setdefault(strategy.identity(d), []).extend(windows(d, begin, end))
    return {k: u for k, v in spans.items() if (u := union(v))}


def merged_runs(
    plan: list[Plan], strategy: MergeStrategy
) -> dict[Hashable, list[tuple[float, float]]]:
    scheduler, merger = Scheduler(), Merger(strategy)
    changes: dict[int, list[tuple[int, Dispatch | None]]] = {}
    for p in plan:
        for when, d in p.versions:
            changes.setdefault(when, []).append((p.id, d))
    runs: dict[Hashable, list[tuple[float, float]]] = {}
    open_since: dict[Hashable, float] = {}

    def record(items: list[MergedStatus]) -> None:
        for item in items:
            now = minute(item.decided_at)
            assert now is not None
            if item.started:
                # A start only when not running; a reconfiguration only when running.
                assert (item.since == item.decided_at) == (item.identity not in open_since)
                open_since.setdefault(item.identity, now)
                ends = [s.until for s in item.members]
                assert item.until == (None if None in ends else max(e for e in ends if e))
                assert all(
                    merger._strategy.identity(s.dispatch) == item.identity for s in item.members
                )
            else:
                begin = open_since.pop(item.identity)
                assert begin < now
                runs.setdefault(item.identity, []).append((begin, now))

    pending = sorted(changes)
    while True:
        deadline = scheduler.next_deadline()
        candidates = [minute(deadline)] if deadline is not None else []
        candidates += pending[:1]
        now = min((c for c in candidates if c is not None), default=None)
        if now is None or now >= HORIZON:
            break
        batch = scheduler.advance(at(now))
        if pending and pending[0] == now:
            for dispatch_id, d in changes[pending.pop(0)]:
                if d is None:
                    batch += statuses(scheduler.remove(dispatch_id, at(now)))
                else:
                    batch += statuses(scheduler.upsert(d, at(now)))
        record(merger.feed(batch))
    for identity, begin in open_since.items():
        runs.setdefault(identity, []).append((begin, HORIZON))
    return runs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans(), strategy=st.sampled_from([MergeByType(), MergeByTypeTarget()]))
def test_merged_runs_are_the_union_of_member_windows(
    plan: list[Plan], strategy: MergeStrategy
) -> None:
    assert merged_runs(plan, strategy) == expected_runs(plan, strategy)


# -- the dispatcher's merged receivers -----------------------------------------------------------


def record(
    nursery: trio.Nursery, clock: WallClock, receiver: Receiver[MergedStatus]
) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []

    async def read() -> None:
        with receiver:
            async for item in receiver:
                assert item.decided_at == clock()
                rows.append(e2e_row(clock, item))

    nursery.start_soon(read)
    return rows


def e2e_row(clock: WallClock, item: MergedStatus) -> tuple[Any, ...]:
    def m(t: datetime | None) -> float | None:
        return None if t is None else (t - clock.epoch) / MIN

    kind = "STOP" if not item.started else "START" if item.since == item.decided_at else "RECONF"
    return (m(item.decided_at), item.identity, kind, m(item.until), item.members.ids)


async def test_merged_receiver_end_to_end(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(LIMIT):
        async with open_test_environment() as env:
            first = await env.create("BATTERY", start_in=MIN, duration=5 * MIN)
            second = await env.create("BATTERY", start_in=6 * MIN, duration=5 * MIN)
            third = await env.create("BATTERY", start_in=8 * MIN, duration=30 * MIN)
            other = await env.create("PV", start_in=MIN, duration=5 * MIN)
            async with env.open_dispatcher() as dispatcher, trio.open_nursery() as nursery:
                rs = dispatcher.running_status_change
                by_type = record(
                    nursery, env.clock, rs.new_receiver(type="BATTERY", merge=MergeByType())
                )
                everything = record(nursery, env.clock, rs.new_receiver(merge=MergeByType()))
                await env.clock.sleep_until(env.epoch + 12 * MIN)
                await env.client.delete(env.microgrid_id, third.id)
                await env.clock.sleep_until(env.epoch + 60 * MIN)
                nursery.cancel_scope.cancel()
    battery = ("BATTERY", False)
    assert by_type == [
        (1, battery, "START", 6, (first.id,)),
        (6, battery, "RECONF", 11, (second.id,)),  # back to back: no stop
        (8, battery, "RECONF", 38, (second.id, third.id)),
        (11, battery, "RECONF", 38, (third.id,)),
        (12, battery, "STOP", None, ()),  # the last member was deleted
    ]
    assert sorted(everything, key=lambda r: (r[0], r[1])) == sorted(
        [
            *by_type,
            (1, ("PV", False), "START", 6, (other.id,)),
            (6, ("PV", False), "STOP", None, ()),
        ],
        key=lambda r: (r[0], r[1]),
    )


async def test_a_new_merged_receiver_gets_the_identities_running_now(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(LIMIT):
        async with open_test_environment() as env:
            a = await env.create("BATTERY", duration=10 * MIN)
            b = await env.create("BATTERY", duration=None, dry_run=True)
            c = await env.create("BATTERY", duration=20 * MIN)
            await env.create("BATTERY", start_in=30 * MIN, duration=20 * MIN)
            async with env.open_dispatcher() as dispatcher:
                rs = dispatcher.running_status_change
                early = rs.new_receiver(type="BATTERY", merge=MergeByType())
                first = [e2e_row(env.clock, early.receive_nowait()) for _ in range(2)]
                assert first == [
                    (0, ("BATTERY", False), "START", 20, (a.id, c.id)),
                    (0, ("BATTERY", True), "START", None, (b.id,)),
                ]
                await env.clock.sleep_until(env.epoch + 5 * MIN)
                late = rs.new_receiver(type="BATTERY", merge=MergeByTypeTarget())
                # As last decided (at 0), like the first items of an unmerged receiver.
                assert [e2e_row(env.clock, late.receive_nowait()) for _ in range(2)] == [
                    (0, ("BATTERY", False, ("ids", ())), "START", 20, (a.id, c.id)),
                    (0, ("BATTERY", True, ("ids", ())), "START", None, (b.id,)),
                ]
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises(trio.WouldBlock):
                    early.receive_nowait()  # nothing resent to the older receiver
                stats = dispatcher.statistics()
                assert len(stats.receivers) == 2
                late.close()
                early.close()
                await env.clock.sleep_until(env.epoch + 11 * MIN)
                assert dispatcher.statistics().receivers == ()  # closed: forgotten
                assert dispatcher._merged == []
            after = dispatcher.running_status_change.new_receiver(merge=MergeByType())
            assert [r[2] for r in (e2e_row(env.clock, i) for i in drain_ended(after))] == [
                "START",
                "START",
            ]


def drain_ended(receiver: Receiver[MergedStatus]) -> list[MergedStatus]:
    items = []
    while True:
        try:
            items.append(receiver.receive_nowait())
        except trio.EndOfChannel:
            return items


async def test_merged_receivers_end_when_the_dispatcher_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(LIMIT):
        async with open_test_environment() as env:
            await env.create("BATTERY", duration=None)
            async with env.open_dispatcher() as dispatcher:
                receiver = dispatcher.running_status_change.new_receiver(merge=MergeByType())
            assert [i.started for i in drain_ended(receiver)] == [True]


def test_category_targets_in_identities() -> None:
    target = TargetCategories.of(
        ComponentCategory.BATTERY,
        TargetCategory(category=ComponentCategory.INVERTER, type=InverterType.BATTERY),
    )
    d = make(1, 0, 1, target=target)
    assert MergeByTypeTarget().identity(d) == ("A", False, ("categories", ((3, 1), (5,))))
