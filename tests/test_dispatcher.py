"""`open_dispatcher` end to end: the real dispatcher and client against the real server.

Everything runs in-process over loopback under pytest-trio's ``autojump_clock``, and the
server, the clients and the dispatcher share one `WallClock` that starts at `T0`
(2030-01-01T00:00Z). So a test can say "at T0 + 3 min the dispatch stopped" and mean it
to the microsecond: every event is recorded with the wall time at which it arrived (and
each `RunningStatus` must also have been *decided* at that time), and the sequences are
compared whole.

The harness (`dispatcher_helpers`) adds a few seams to the real server: latency, refused
or cleanly ended streams, and raw dispatches the real server would never send.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import re
import socket
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpclib.exceptions
import pytest
import trio
import trio.testing
import trio_asyncio
from dispatcher_helpers import (
    KEY,
    MICROGRID,
    T0,
    Env,
    Recorder,
    ServiceHooks,
    at,
    dispatcher_tasks,
    drain,
    drain_ended,
    eventually,
    install_hooks,
    lives,
    minutes,
    open_env,
    runs,
)

from trio_dispatch import (
    Backoff,
    ConnectionState,
    Created,
    DispatchApiError,
    DispatchConnectionError,
    EndCriteria,
    Frequency,
    Receiver,
    RecurrenceRule,
    RunningState,
    RunningStatus,
    TargetIds,
    Updated,
    open_dispatcher,
)
from trio_dispatch._convert import dispatch_to_proto
from trio_dispatch._model import Dispatch
from trio_dispatch._proto.frequenz.api.common.v1alpha8 import streaming as pb_streaming
from trio_dispatch._proto.frequenz.api.dispatch import v1 as pb
from trio_dispatch.testing import WallClock

LIMIT = 86400.0  # virtual seconds a test may take, unless it says otherwise
RUNNING, STOPPED = "RUNNING", "STOPPED"

# -- startup -------------------------------------------------------------------------------


async def test_open_returns_after_the_initial_list(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(LIMIT):
        async with open_env() as env:
            c = env.client
            made = [
                await c.create(MICROGRID, type="A", start_time="now", duration=minutes(10)),
                await c.create(MICROGRID, type="B", start_time=at(5), duration=minutes(1)),
                await c.create(MICROGRID, type="A", start_time=at(7), duration=None),
            ]
            await c.create(2, type="A", start_time=at(5), duration=None)  # another microgrid
            async with env.open_dispatcher() as dispatcher:
                assert env.clock() == T0  # no time passed: nothing waited for a timer
                assert dispatcher.microgrid_id == MICROGRID
                assert dict(dispatcher.dispatches) == {d.id: d for d in made}
                assert dispatcher.connection.value is ConnectionState.CONNECTED
                stats = dispatcher.statistics()
                assert (stats.dispatches, stats.reconnects, stats.invalid_dispatches) == (3, 0, 0)
                # The mapping is read-only and live.
                with pytest.raises(TypeError):
                    dispatcher.dispatches[99] = made[0]  # type: ignore[index]
                fourth = await c.create(MICROGRID, type="C", start_time=at(9), duration=None)
                await eventually(lambda: fourth.id in dispatcher.dispatches)
            assert dispatcher.connection.value is ConnectionState.CLOSED  # type: ignore[comparison-overlap]


async def test_lifecycle_replay_and_no_replay(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(LIMIT):
        async with open_env() as env:
            c = env.client
            a1 = await c.create(MICROGRID, type="A", start_time=at(5), duration=None)
            b2 = await c.create(MICROGRID, type="B", start_time=at(5), duration=None)
            a3 = await c.create(MICROGRID, type="A", start_time=at(5), duration=None)
            async with env.open_dispatcher() as dispatcher:
                replay = dispatcher.lifecycle_events.new_receiver(replay=True)
                replay_a = dispatcher.lifecycle_events.new_receiver(type="A", replay=True)
                fresh = dispatcher.lifecycle_events.new_receiver()
                # Created for every current dispatch, by id, before anything else.
                assert drain(replay) == [Created(a1), Created(b2), Created(a3)]
                assert drain(replay_a) == [Created(a1), Created(a3)]
                assert drain(fresh) == []  # nothing old without replay

                b4 = await c.create(MICROGRID, type="B", start_time=at(5), duration=None)
                await trio.testing.wait_all_tasks_blocked()
                assert drain(replay) == [Created(b4)]
                assert drain(fresh) == [Created(b4)]
                assert drain(replay_a) == []
            # After the dispatcher, a replaying receiver replays and ends.
            late = dispatcher.lifecycle_events.new_receiver(replay=True)
            assert drain_ended(late) == [Created(a1), Created(b2), Created(a3), Created(b4)]
            for receiver in (replay, replay_a, fresh):
                assert drain_ended(receiver) == []


async def test_new_running_receiver_gets_the_running_dispatches_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(LIMIT):
        async with open_env() as env:
            c = env.client
            a1 = await c.create(MICROGRID, type="A", start_time="now", duration=minutes(30))
            b2 = await c.create(MICROGRID, type="B", start_time="now", duration=None)
            a3 = await c.create(MICROGRID, type="A", start_time=at(5), duration=minutes(10))
            await c.create(MICROGRID, type="A", start_time=at(60), duration=minutes(10))
            async with env.open_dispatcher() as dispatcher:
                first = dispatcher.running_status_change.new_receiver()
                only_a = dispatcher.running_status_change.new_receiver(type="A")
                running_now = [(s.id, s.started, s.until, s.decided_at) for s in drain(first)]
                assert running_now == [(a1.id, True, at(30), T0), (b2.id, True, None, T0)]
                assert [s.id for s in drain(only_a)] == [a1.id]

                await env.sleep_until(at(6))
                assert [(s.id, s.started, s.decided_at) for s in drain(first)] == [
                    (a3.id, True, at(5))
                ]
                # A receiver created now gets the three running dispatches: only it.
                second = dispatcher.running_status_change.new_receiver()
                assert [(s.id, s.started, s.until) for s in drain(second)] == [
                    (a1.id, True, at(30)),
                    (b2.id, True, None),
                    (a3.id, True, at(15)),
                ]
                await trio.testing.wait_all_tasks_blocked()
                assert drain(first) == []  # no duplicates for the older receiver
                assert [s.id for s in drain(only_a)] == [a3.id]

                await env.sleep_until(at(20))
                expected = [(a3.id, False, at(15))]
                assert [(s.id, s.started, s.decided_at) for s in drain(first)] == expected
                assert [(s.id, s.started, s.decided_at) for s in drain(second)] == expected


# -- running status over time ---------------------------------------------------------------


async def test_recurring_dispatch_runs_at_exact_times(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(LIMIT):
        async with open_env() as env, trio.open_nursery() as nursery:
            recorder = Recorder(env.clock, nursery)
            async with env.open_dispatcher() as dispatcher:
                statuses = recorder.record(
                    "running", dispatcher.running_status_change.new_receiver()
                )
                events = recorder.record("lifecycle", dispatcher.lifecycle_events.new_receiver())
                created = await env.client.create(
                    MICROGRID,
                    type="A",
                    start_time=at(1),
                    duration=minutes(5),
                    recurrence=RecurrenceRule(
                        frequency=Frequency.MINUTELY,
                        interval=10,
                        end_criteria=EndCriteria(count=3),
                    ),
                )
                await env.sleep_until(at(60))
        i = created.id
        assert lives(events) == [(T0, "Created", i)]
        assert runs(statuses) == [
            (at(1), i, RUNNING, at(6), at(11)),
            (at(6), i, STOPPED, None, at(11)),
            (at(11), i, RUNNING, at(16), at(21)),
            (at(16), i, STOPPED, None, at(21)),
            (at(21), i, RUNNING, at(26), None),
            (at(26), i, STOPPED, None, None),
        ]
        assert sorted(recorder.ended) == ["lifecycle", "running"]


async def test_thirty_days_of_a_daily_dispatch_take_no_real_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(40 * 86400):
        async with open_env() as env, trio.open_nursery() as nursery:
            recorder = Recorder(env.clock, nursery)
            created = await env.client.create(
                MICROGRID,
                type="A",
                start_time=at(8 * 60),
                duration=timedelta(hours=1),
                recurrence=RecurrenceRule(frequency=Frequency.DAILY),  # endless
            )
            async with env.open_dispatcher() as dispatcher:
                statuses = recorder.record(
                    "running", dispatcher.running_status_change.new_receiver()
                )
                began = time.perf_counter()
                await env.sleep_until(T0 + timedelta(days=30))
                elapsed = time.perf_counter() - began
        assert elapsed < 1.0
        day = timedelta(days=1)
        expected: list[tuple[Any, ...]] = []
        for n in range(30):
            start = at(8 * 60) + n * day
            expected.append((start, created.id, RUNNING, start + timedelta(hours=1), start + day))
            expected.append((start + timedelta(hours=1), created.id, STOPPED, None, start + day))
        assert runs(statuses) == expected
        assert len(statuses) == 60


# -- changes while running -------------------------------------------------------------------


async def _run_with_change(
    change: Any, *, until: float = 60, start: float = 1, duration: float = 10
) -> tuple[Dispatch, list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """A one-off dispatch from `start` for `duration` minutes; at 3 min, `change(env, d)`.

    Returns the dispatch and the recorded running statuses and lifecycle events.
    """
    with trio.fail_after(LIMIT):
        async with open_env() as env, trio.open_nursery() as nursery:
            recorder = Recorder(env.clock, nursery)
            created = await env.client.create(
                MICROGRID, type="A", start_time=at(start), duration=minutes(duration)
            )
            async with env.open_dispatcher() as dispatcher:
                statuses = recorder.record(
                    "running", dispatcher.running_status_change.new_receiver()
                )
                events = recorder.record("lifecycle", dispatcher.lifecycle_events.new_receiver())
                await env.sleep_until(at(3))
                await change(env, created)
                await env.sleep_until(at(until))
    return created, runs(statuses), lives(events)


async def test_payload_update_while_running_reconfigures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def change(env: Env, d: Dispatch) -> None:
        await env.client.update(MICROGRID, d.id, payload={"power": 5})

    d, statuses, events = await _run_with_change(change)
    assert statuses == [
        (at(1), d.id, RUNNING, at(11), None),
        (at(3), d.id, RUNNING, at(11), None),  # reconfigure: same run, new payload
        (at(11), d.id, STOPPED, None, None),
    ]
    assert events == [(at(3), "Updated", d.id)]


async def test_update_that_changes_nothing_visible_emits_no_status(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def change(env: Env, d: Dispatch) -> None:
        await env.client.update(MICROGRID, d.id, payload={})  # same payload, new update_time

    d, statuses, events = await _run_with_change(change)
    assert statuses == [
        (at(1), d.id, RUNNING, at(11), None),
        (at(11), d.id, STOPPED, None, None),
    ]
    assert events == [(at(3), "Updated", d.id)]


async def test_deactivate_and_reactivate_while_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def change(env: Env, d: Dispatch) -> None:
        await env.client.update(MICROGRID, d.id, active=False)
        await env.sleep_until(at(5))
        await env.client.update(MICROGRID, d.id, active=True)

    d, statuses, events = await _run_with_change(change)
    assert statuses == [
        (at(1), d.id, RUNNING, at(11), None),
        (at(3), d.id, STOPPED, None, None),
        (at(5), d.id, RUNNING, at(11), None),
        (at(11), d.id, STOPPED, None, None),
    ]
    assert events == [(at(3), "Updated", d.id), (at(5), "Updated", d.id)]


@pytest.mark.parametrize(
    ("new_duration", "expected_after_start"),
    [
        # The run now ends before the update: it is over.
        (1, [(3, STOPPED, None)]),
        # The run now ends exactly at the update: it is over (runs are half-open).
        (2, [(3, STOPPED, None)]),
        # The run now ends later than now but earlier than before: a reconfiguration
        # with the new end, then the stop at that end.
        (4, [(3, RUNNING, at(5)), (5, STOPPED, None)]),
        # Longer: the same, with the later end.
        (20, [(3, RUNNING, at(21)), (21, STOPPED, None)]),
    ],
)
async def test_duration_changed_while_running(
    autojump_clock: trio.testing.MockClock,
    new_duration: int,
    expected_after_start: list[tuple[Any, ...]],
) -> None:
    async def change(env: Env, d: Dispatch) -> None:
        await env.client.update(MICROGRID, d.id, duration=minutes(new_duration))

    d, statuses, events = await _run_with_change(change)
    assert statuses == [(at(1), d.id, RUNNING, at(11), None)] + [
        (at(m), d.id, state, until, None) for m, state, until in expected_after_start
    ]
    assert events == [(at(3), "Updated", d.id)]


async def test_start_moved_into_the_future_while_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def change(env: Env, d: Dispatch) -> None:
        await env.client.update(MICROGRID, d.id, start_time=at(20))

    d, statuses, events = await _run_with_change(change)
    assert statuses == [
        (at(1), d.id, RUNNING, at(11), None),
        (at(3), d.id, STOPPED, None, at(20)),
        (at(20), d.id, RUNNING, at(30), None),
        (at(30), d.id, STOPPED, None, None),
    ]
    assert events == [(at(3), "Updated", d.id)]


async def test_delete_while_running(autojump_clock: trio.testing.MockClock) -> None:
    async def change(env: Env, d: Dispatch) -> None:
        await env.client.delete(MICROGRID, d.id)

    d, statuses, events = await _run_with_change(change)
    assert statuses == [
        (at(1), d.id, RUNNING, at(11), None),
        (at(3), d.id, STOPPED, None, None),
    ]
    assert events == [(at(3), "Deleted", d.id)]


async def test_delete_a_running_recurring_dispatch_has_no_next_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(LIMIT):
        async with open_env() as env, trio.open_nursery() as nursery:
            recorder = Recorder(env.clock, nursery)
            created = await env.client.create(
                MICROGRID,
                type="A",
                start_time=at(1),
                duration=minutes(5),
                recurrence=RecurrenceRule(frequency=Frequency.HOURLY),
            )
            async with env.open_dispatcher() as dispatcher:
                statuses = recorder.record(
                    "running", dispatcher.running_status_change.new_receiver()
                )
                await env.sleep_until(at(3))
                await env.client.delete(MICROGRID, created.id)
                await env.sleep_until(at(180))
                assert dispatcher.dispatches == {}
    assert runs(statuses) == [
        (at(1), created.id, RUNNING, at(6), at(61)),
        (at(3), created.id, STOPPED, None, None),  # deleted: it will not run again
    ]


async def test_create_a_dispatch_that_runs_now(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(LIMIT):
        async with open_env() as env, trio.open_nursery() as nursery:
            recorder = Recorder(env.clock, nursery)
            async with env.open_dispatcher() as dispatcher:
                statuses = recorder.record(
                    "running", dispatcher.running_status_change.new_receiver()
                )
                events = recorder.record("lifecycle", dispatcher.lifecycle_events.new_receiver())
                await env.sleep_until(at(2))
                created = await env.client.create(
                    MICROGRID, type="A", start_time="now", duration=minutes(5)
                )
                assert created.start_time == at(2)
                await env.sleep_until(at(30))
    assert lives(events) == [(at(2), "Created", created.id)]
    assert runs(statuses) == [
        (at(2), created.id, RUNNING, at(7), None),
        (at(7), created.id, STOPPED, None, None),
    ]
    assert events[0][1] == Created(created)


# -- receivers by type -----------------------------------------------------------------------


async def test_receivers_filtered_by_type(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(LIMIT):
        async with open_env() as env, trio.open_nursery() as nursery:
            recorder = Recorder(env.clock, nursery)
            c = env.client
            async with env.open_dispatcher() as dispatcher:
                rs = dispatcher.running_status_change
                le = dispatcher.lifecycle_events
                run_a = recorder.record("run A", rs.new_receiver(type="A"))
                run_b = recorder.record("run B", rs.new_receiver(type="B"))
                run_all = recorder.record("run all", rs.new_receiver())
                life_a = recorder.record("life A", le.new_receiver(type="A"))
                life_b = recorder.record("life B", le.new_receiver(type="B"))
                a = await c.create(MICROGRID, type="A", start_time=at(1), duration=minutes(10))
                b = await c.create(MICROGRID, type="B", start_time=at(2), duration=minutes(10))
                await env.sleep_until(at(4))
                await c.update(MICROGRID, a.id, payload={"power": 1})
                await c.update(MICROGRID, b.id, target=TargetIds.of(7))
                await env.sleep_until(at(5))
                await c.delete(MICROGRID, b.id)
                await env.sleep_until(at(30))
    assert runs(run_a) == [
        (at(1), a.id, RUNNING, at(11), None),
        (at(4), a.id, RUNNING, at(11), None),
        (at(11), a.id, STOPPED, None, None),
    ]
    assert runs(run_b) == [
        (at(2), b.id, RUNNING, at(12), None),
        (at(4), b.id, RUNNING, at(12), None),
        (at(5), b.id, STOPPED, None, None),
    ]
    assert sorted(runs(run_all)) == sorted(runs(run_a) + runs(run_b))
    assert lives(life_a) == [(T0, "Created", a.id), (at(4), "Updated", a.id)]
    assert lives(life_b) == [
        (T0, "Created", b.id),
        (at(4), "Updated", b.id),
        (at(5), "Deleted", b.id),
    ]


# -- the seed example ------------------------------------------------------------------------


class FakeActor:
    """Stands in for a real actor: records every call with the wall time."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self.is_running = False
        self.calls: list[tuple[Any, ...]] = []

    def start(self, **kwargs: Any) -> None:
        self.is_running = True
        self.calls.append((self._clock(), "start", kwargs))

    def reconfigure(self, **kwargs: Any) -> None:
        self.calls.append((self._clock(), "reconfigure", kwargs))

    def stop(self) -> None:
        self.is_running = False
        self.calls.append((self._clock(), "stop", {}))


async def run_demo_actor(actor: FakeActor, *, server_url: str, key: str, clock: Any) -> None:
    """The upstream README's running-status example, for trio (``clock`` is for the test)."""
    microgrid_id = 1
    async with open_dispatcher(
        microgrid_id=microgrid_id, server_url=server_url, key=key, clock=clock
    ) as dispatcher:
        with dispatcher.running_status_change.new_receiver() as changed_running_status:
            async for dispatch in changed_running_status:
                match dispatch.running("DEMO_TYPE"):
                    case RunningState.RUNNING:
                        print(f"Executing dispatch {dispatch.id}, due on {dispatch.start_time}")
                        if actor.is_running:
                            actor.reconfigure(
                                components=dispatch.target,
                                run_parameters=dispatch.payload,  # custom actor parameters
                                dry_run=dispatch.dry_run,
                                until=dispatch.until,
                            )  # this will reconfigure the actor
                        else:
                            # this will start a new actor with the given components
                            # and run it for the duration of the dispatch
                            actor.start(
                                components=dispatch.target,
                                run_parameters=dispatch.payload,  # custom actor parameters
                                dry_run=dispatch.dry_run,
                                until=dispatch.until,
                            )
                    case RunningState.STOPPED:
                        actor.stop()  # this will stop the actor
                    case RunningState.DIFFERENT_TYPE:
                        pass  # dispatch not for this type


async def test_seed_example_drives_an_actor(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(LIMIT):
        async with open_env() as env:
            actor = FakeActor(env.clock)
            c = env.client
            demo = await c.create(
                MICROGRID,
                type="DEMO_TYPE",
                start_time=at(1),
                duration=minutes(5),
                target=TargetIds.of(4, 5),
                payload={"power_w": 1500},
                dry_run=True,
            )
            # Another actor's dispatch, running at the same time: ignored.
            await c.create(MICROGRID, type="OTHER", start_time="now", duration=minutes(30))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    lambda: run_demo_actor(
                        actor, server_url=env.servers.url, key=KEY, clock=env.clock
                    )
                )
                await env.sleep_until(at(3))
                await c.update(MICROGRID, demo.id, payload={"power_w": 500})
                await env.sleep_until(at(4))
                await c.update(MICROGRID, demo.id, duration=minutes(10))
                later = await c.create(
                    MICROGRID, type="DEMO_TYPE", start_time=at(20), duration=minutes(2)
                )
                await env.sleep_until(at(60))
                nursery.cancel_scope.cancel()

    first = {"components": TargetIds.of(4, 5), "dry_run": True}
    assert actor.calls == [
        (at(1), "start", {**first, "run_parameters": {"power_w": 1500}, "until": at(6)}),
        (at(3), "reconfigure", {**first, "run_parameters": {"power_w": 500}, "until": at(6)}),
        (at(4), "reconfigure", {**first, "run_parameters": {"power_w": 500}, "until": at(11)}),
        (at(11), "stop", {}),
        (
            at(20),
            "start",
            {"components": TargetIds.of(), "dry_run": False, "run_parameters": {}, "until": at(22)},
        ),
        (at(22), "stop", {}),
    ]
    assert capsys.readouterr().out.splitlines() == [
        f"Executing dispatch {demo.id}, due on {at(1)}",
        f"Executing dispatch {demo.id}, due on {at(1)}",
        f"Executing dispatch {demo.id}, due on {at(1)}",
        f"Executing dispatch {later.id}, due on {at(20)}",
    ]


# -- reconnects ------------------------------------------------------------------------------


async def test_reconnect_reports_what_changed_while_away(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(LIMIT):
        async with open_env(database=tmp_path / "dispatches.sqlite") as env:
            c = env.client

            async def create(start: float, length: float) -> Dispatch:
                return await c.create(
                    MICROGRID, type="A", start_time=at(start), duration=minutes(length)
                )

            steady = await create(1, 60)  # runs through the outage, unchanged
            short = await create(1, 5)  # its run ends while the server is down
            doomed = await create(1, 60)  # deleted while the server is down
            changed = await create(1, 60)  # its payload changes while the server is down
            moved = await create(30, 8)  # moved to start while the server is down
            async with trio.open_nursery() as nursery:
                recorder = Recorder(env.clock, nursery)
                async with env.open_dispatcher(
                    backoff=Backoff(base=300, cap=300, jitter=0)
                ) as dispatcher:
                    connection = recorder.record_connection(dispatcher)
                    rs = dispatcher.running_status_change.new_receiver()
                    statuses = recorder.record("running", rs)
                    events = recorder.record(
                        "lifecycle", dispatcher.lifecycle_events.new_receiver()
                    )

                    await env.sleep_until(at(5))
                    await env.servers.stop()
                    await env.sleep_until(at(7))
                    # A second server on the same port and database file; the dispatcher
                    # is waiting out its backoff (300 s) and does not see these as they
                    # happen.
                    await env.servers.start()
                    new = await c.create(
                        MICROGRID, type="A", start_time="now", duration=minutes(30)
                    )
                    await c.update(MICROGRID, changed.id, payload={"power": 3})
                    await c.update(MICROGRID, moved.id, start_time=at(8))
                    await c.delete(MICROGRID, doomed.id)
                    fleeting = await create(50, 1)
                    await c.delete(MICROGRID, fleeting.id)
                    assert dispatcher.connection.value is ConnectionState.RECONNECTING
                    assert doomed.id in dispatcher.dispatches

                    await dispatcher.connection.wait_value(ConnectionState.CONNECTED)
                    assert env.clock() == at(10)
                    assert set(dispatcher.dispatches) == {
                        steady.id,
                        short.id,
                        changed.id,
                        moved.id,
                        new.id,
                    }
                    assert dispatcher.statistics().reconnects == 1
                    await env.sleep_until(at(70))

    assert connection == [
        (T0, ConnectionState.CONNECTED),
        (at(5), ConnectionState.RECONNECTING),
        (at(10), ConnectionState.CONNECTED),
        (at(70), ConnectionState.CLOSED),
    ]
    assert lives(events) == [
        (at(10), "Deleted", doomed.id),
        (at(10), "Updated", changed.id),
        (at(10), "Updated", moved.id),
        (at(10), "Created", new.id),
    ]
    assert runs(statuses) == [
        (at(1), steady.id, RUNNING, at(61), None),
        (at(1), short.id, RUNNING, at(6), None),
        (at(1), doomed.id, RUNNING, at(61), None),
        (at(1), changed.id, RUNNING, at(61), None),
        (at(6), short.id, STOPPED, None, None),  # decided locally, while disconnected
        (at(10), doomed.id, STOPPED, None, None),
        (at(10), changed.id, RUNNING, at(61), None),  # reconfigured: new payload
        (at(10), moved.id, RUNNING, at(16), None),
        (at(10), new.id, RUNNING, at(37), None),
        (at(16), moved.id, STOPPED, None, None),
        (at(37), new.id, STOPPED, None, None),
        (at(61), steady.id, STOPPED, None, None),
        (at(61), changed.id, STOPPED, None, None),
    ]
    update = next(e for _, e in events if isinstance(e, Updated))
    assert (update.previous.payload, update.dispatch.payload) == ({}, {"power": 3})


async def test_clean_end_of_stream_reconnects(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = install_hooks(monkeypatch)
    second = timedelta(seconds=1)
    with trio.fail_after(LIMIT):
        async with open_env() as env, trio.open_nursery() as nursery:
            recorder = Recorder(env.clock, nursery)
            async with env.open_dispatcher(backoff=Backoff(base=1, cap=4, jitter=0)) as dispatcher:
                connection = recorder.record_connection(dispatcher)
                events = recorder.record("lifecycle", dispatcher.lifecycle_events.new_receiver())
                await env.sleep_until(at(5))
                hooks.end_streams()  # the server ends the stream: status OK
                created = await env.client.create(
                    MICROGRID, type="A", start_time=at(20), duration=None
                )  # between the end and the reconnect: found by the re-list
                await env.sleep_until(at(6))
                updated = await env.client.update(MICROGRID, created.id, active=False)
                await env.sleep_until(at(7))  # through the stream again
                assert dispatcher.dispatches[created.id] == updated
                assert dispatcher.statistics().reconnects == 1
    assert hooks.stream_calls == [T0, at(5) + second]
    assert hooks.stream_ends == [(at(5), "ended"), (at(7), "cancelled")]
    assert connection == [
        (T0, ConnectionState.CONNECTED),
        (at(5), ConnectionState.RECONNECTING),
        (at(5) + second, ConnectionState.CONNECTED),
        (at(7), ConnectionState.CLOSED),
    ]
    assert lives(events) == [
        (at(5) + second, "Created", created.id),
        (at(6), "Updated", created.id),
    ]


async def test_backoff_gives_exact_retry_times(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = install_hooks(monkeypatch)

    def s(seconds: float) -> timedelta:
        return timedelta(seconds=seconds)

    with trio.fail_after(LIMIT):
        async with open_env() as env, trio.open_nursery() as nursery:
            recorder = Recorder(env.clock, nursery)
            async with env.open_dispatcher(backoff=Backoff(base=1, cap=4, jitter=0)) as dispatcher:
                connection = recorder.record_connection(dispatcher)
                await env.sleep_until(at(5))
                hooks.refuse_streams = 4  # UNAVAILABLE: retried
                hooks.end_streams()
                await env.sleep_until(at(10))
                assert dispatcher.connection.value is ConnectionState.CONNECTED
                # A healthy connection resets the backoff: the next retry is after 1 s.
                hooks.refuse_streams = 1
                hooks.end_streams()
                await env.sleep_until(at(11))
                # Two reconnections, however many attempts they took.
                assert dispatcher.statistics().reconnects == 2
    # 1, 2, 4, 4 (the cap), 4 seconds apart.
    assert hooks.stream_calls == [
        T0,
        at(5) + s(1),
        at(5) + s(3),
        at(5) + s(7),
        at(5) + s(11),
        at(5) + s(15),
        at(10) + s(1),
        at(10) + s(3),
    ]
    assert connection == [
        (T0, ConnectionState.CONNECTED),
        (at(5), ConnectionState.RECONNECTING),
        (at(5) + s(15), ConnectionState.CONNECTED),
        (at(10), ConnectionState.RECONNECTING),
        (at(10) + s(3), ConnectionState.CONNECTED),
        (at(11), ConnectionState.CLOSED),
    ]


# -- startup failures ------------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_startup_without_a_server_fails_after_the_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = WallClock()
    url = f"grpc://127.0.0.1:{closed_port()}?ssl=false&keep_alive=false"
    with trio.fail_after(LIMIT), pytest.raises(DispatchConnectionError) as info:
        async with open_dispatcher(
            microgrid_id=MICROGRID,
            server_url=url,
            key=KEY,
            clock=clock,
            startup_timeout=timedelta(seconds=7),
        ):
            pytest.fail("the dispatcher must not start")
    assert clock() == T0 + timedelta(seconds=7)
    message = str(info.value)
    assert message.startswith(
        "could not load the dispatches of microgrid 1 within 7 s: "
        "StreamMicrogridDispatches: ConnectionRefusedError: "
    ), message
    # The last failure is the cause.
    cause = info.value.__cause__
    assert isinstance(cause, DispatchConnectionError)
    assert isinstance(cause.__cause__, ConnectionRefusedError)
    assert dispatcher_tasks() == []


async def test_startup_against_a_silent_peer_fails_after_the_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = WallClock()
    accepted: list[trio.SocketStream] = []

    async def silent(stream: trio.SocketStream) -> None:
        accepted.append(stream)
        await trio.sleep_forever()  # reads nothing, answers nothing

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            (listener,) = await nursery.start(
                functools.partial(trio.serve_tcp, silent, 0, host="127.0.0.1")
            )
            port = listener.socket.getsockname()[1]
            with pytest.raises(DispatchConnectionError) as info:
                async with open_dispatcher(
                    microgrid_id=MICROGRID,
                    server_url=f"grpc://127.0.0.1:{port}?ssl=false&keep_alive=false",
                    key=KEY,
                    clock=clock,
                    startup_timeout=timedelta(seconds=5),
                ):
                    pytest.fail("the dispatcher must not start")
            nursery.cancel_scope.cancel()
    assert clock() == T0 + timedelta(seconds=5)
    assert len(accepted) == 1
    assert str(info.value) == "could not load the dispatches of microgrid 1 within 5 s: None"
    assert dispatcher_tasks() == []


async def test_startup_with_a_wrong_key_raises_the_refusal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(LIMIT):
        async with open_env() as env:
            with pytest.raises(DispatchApiError) as info:
                async with env.open_dispatcher(key="wrong-key"):
                    pytest.fail("the dispatcher must not start")
            assert env.clock() == T0  # refused at once, not retried
    error = info.value
    assert type(error) is DispatchApiError
    assert error.status == "UNAUTHENTICATED"
    assert isinstance(error.__cause__, grpclib.exceptions.GRPCError)
    assert dispatcher_tasks() == []


# -- leaving the async with --------------------------------------------------------------------


def _queued_receivers(dispatcher: Any) -> tuple[Receiver[Any], Receiver[Any]]:
    """Receivers with unread items: a running dispatch and a lifecycle event."""
    statuses = dispatcher.running_status_change.new_receiver()
    events = dispatcher.lifecycle_events.new_receiver(replay=True)
    return statuses, events


def _assert_closed_after_draining(
    statuses: Receiver[RunningStatus],
    events: Receiver[Any],
    running: Dispatch,
) -> None:
    """Both receivers still yield what was queued, then end."""
    assert [(s.id, s.started) for s in drain_ended(statuses)] == [(running.id, True)]
    assert drain_ended(events) == [Created(running)]


async def _stream_cancelled(hooks: ServiceHooks) -> None:
    await eventually(lambda: hooks.open_streams() == 0)
    assert [how for _, how in hooks.stream_ends] == ["cancelled"]


async def test_leaving_normally_closes_everything(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = install_hooks(monkeypatch)
    with trio.fail_after(LIMIT):
        async with open_env() as env:
            running = await env.client.create(MICROGRID, type="A", start_time="now", duration=None)
            async with env.open_dispatcher() as dispatcher:
                statuses, events = _queued_receivers(dispatcher)
                assert hooks.open_streams() == 1
                assert dispatcher_tasks() != []
            assert dispatcher.connection.value is ConnectionState.CLOSED
            assert dispatcher_tasks() == []
            _assert_closed_after_draining(statuses, events, running)
            with pytest.raises(trio.EndOfChannel):
                await statuses.receive()
            await _stream_cancelled(hooks)
            # Subscribing after the end gives receivers that end at once.
            late = dispatcher.running_status_change.new_receiver()
            assert [s.id for s in drain_ended(late)] == [running.id]


async def test_leaving_by_an_error_in_the_body_raises_it_bare(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = install_hooks(monkeypatch)
    with trio.fail_after(LIMIT):
        async with open_env() as env:
            running = await env.client.create(MICROGRID, type="A", start_time="now", duration=None)
            opened: list[Any] = []

            async def fail_in_the_body() -> None:
                async with env.open_dispatcher() as dispatcher:
                    opened.extend([dispatcher, *_queued_receivers(dispatcher)])
                    raise KeyError("mine")

            with pytest.raises(KeyError) as info:
                await fail_in_the_body()
            dispatcher, statuses, events = opened
            assert type(info.value) is KeyError
            assert info.value.args == ("mine",)
            assert dispatcher.connection.value is ConnectionState.CLOSED
            assert dispatcher_tasks() == []
            _assert_closed_after_draining(statuses, events, running)
            await _stream_cancelled(hooks)


async def test_leaving_by_outer_cancellation(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = install_hooks(monkeypatch)
    with trio.fail_after(LIMIT):
        async with open_env() as env:
            running = await env.client.create(MICROGRID, type="A", start_time="now", duration=None)
            with trio.move_on_after(60) as scope:
                async with env.open_dispatcher() as dispatcher:
                    statuses, events = _queued_receivers(dispatcher)
                    await trio.sleep_forever()
            assert scope.cancelled_caught
            assert env.clock() == T0 + timedelta(seconds=60)
            assert dispatcher.connection.value is ConnectionState.CLOSED
            assert dispatcher_tasks() == []
            _assert_closed_after_draining(statuses, events, running)
            await _stream_cancelled(hooks)


async def test_a_background_error_comes_out_bare(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The server comes back with other keys: the reconnect is refused, for good."""
    second = timedelta(seconds=1)
    with trio.fail_after(LIMIT):
        async with open_env() as env:
            running = await env.client.create(MICROGRID, type="A", start_time="now", duration=None)
            reading: list[RunningStatus] = []
            opened: list[Any] = []

            async def run_until_refused() -> None:
                async with env.open_dispatcher(
                    backoff=Backoff(base=1, cap=1, jitter=0)
                ) as dispatcher:
                    statuses, events = _queued_receivers(dispatcher)
                    other = dispatcher.running_status_change.new_receiver()
                    opened.extend([dispatcher, statuses, events, other])
                    await env.sleep_until(at(5))
                    await env.servers.stop()
                    await env.servers.start(keys=["another-key"])
                    async for status in other:  # blocks here until the error ends the body
                        reading.append(status)

            with pytest.raises(DispatchApiError) as info:
                await run_until_refused()
            dispatcher, statuses, events, other = opened
            assert env.clock() == at(5) + second  # the first retry was refused
            error = info.value
            assert type(error) is DispatchApiError
            assert error.status == "UNAUTHENTICATED"
            assert isinstance(error.__cause__, grpclib.exceptions.GRPCError)
            assert [s.id for s in reading] == [running.id]
            assert dispatcher.connection.value is ConnectionState.CLOSED
            assert dispatcher_tasks() == []
            _assert_closed_after_draining(statuses, events, running)
            assert drain_ended(other) == []


async def test_no_asyncio_task_left_in_the_callers_loop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def other_tasks() -> set[asyncio.Task[Any]]:
        return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}

    with trio.fail_after(LIMIT):
        # The caller's loop first: the test's client runs in it too (a client must be
        # used under the loop it was opened in).
        async with trio_asyncio.open_loop(), open_env() as env:
            before = await trio_asyncio.aio_as_trio(other_tasks)()
            for leave in ("normally", "by cancellation"):
                with trio.move_on_after(10 if leave == "by cancellation" else math.inf):
                    async with env.open_dispatcher() as dispatcher:
                        await env.client.create(
                            MICROGRID, type="A", start_time="now", duration=None
                        )
                        during = await trio_asyncio.aio_as_trio(other_tasks)()
                        assert during != before  # the stream's task runs in our loop
                        if leave == "by cancellation":
                            await trio.sleep_forever()
                assert dispatcher.connection.value is ConnectionState.CLOSED
                assert await trio_asyncio.aio_as_trio(other_tasks)() == before
                assert dispatcher_tasks() == []


# -- cancellation during startup ---------------------------------------------------------------


@pytest.mark.parametrize("delay", [0.0, 0.25, 0.5, 1.25, 1.5, 1.75, 2.5])
async def test_cancelled_at_each_stage_of_startup(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch, delay: float
) -> None:
    """With 1 s of latency per call: the stream answers at 1 s, the list at 2 s."""
    hooks = install_hooks(monkeypatch)
    with trio.fail_after(LIMIT):
        async with open_env() as env:
            await env.client.create(MICROGRID, type="A", start_time="now", duration=None)
            hooks.latency = 1.0
            reached = False
            with trio.move_on_after(delay) as scope:
                async with env.open_dispatcher() as dispatcher:
                    reached = True
                    assert env.clock() == T0 + timedelta(seconds=2)
                    assert len(dispatcher.dispatches) == 1
                    await trio.sleep_forever()
            assert scope.cancelled_caught
            assert env.clock() == T0 + timedelta(seconds=delay)
            assert reached == (delay > 2)
            assert dispatcher_tasks() == []
            await eventually(lambda: hooks.open_streams() == 0)
            # The stream was subscribed (at 1 s) only if cancelled after that.
            assert len(hooks.stream_calls) == (delay > 1)


async def test_cancelled_at_every_checkpoint_of_startup(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancel after n scheduling rounds, for every n until startup completes."""
    hooks = install_hooks(monkeypatch)
    with trio.fail_after(LIMIT):
        async with open_env() as env:
            await env.client.create(MICROGRID, type="A", start_time="now", duration=None)
            for rounds in range(1000):
                scope = trio.CancelScope()
                reached = False

                async def cancel_after(n: int, scope: trio.CancelScope = scope) -> None:
                    for _ in range(n):
                        await trio.lowlevel.checkpoint()
                    scope.cancel()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(cancel_after, rounds)
                    with scope:
                        async with env.open_dispatcher():
                            reached = True
                            await trio.sleep_forever()
                assert scope.cancelled_caught
                assert dispatcher_tasks() == []
                await eventually(lambda: hooks.open_streams() == 0)
                if reached:
                    break
            assert reached
            assert rounds > 5, "startup should take several rounds to be cancelled in"


# -- invalid dispatches from the server --------------------------------------------------------


def _invalid(dispatch_id: int, **data: Any) -> pb.Dispatch:
    """A wire dispatch the model refuses (the real server never sends one)."""
    valid = dispatch_to_proto(Dispatch(id=dispatch_id, type="A", start_time=at(1)))
    assert valid.data is not None
    for name, value in data.items():
        setattr(valid.data, name, value)
    return valid


async def test_invalid_dispatches_are_skipped_with_one_warning(
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Injected through the real server: appended to its list reply, and to its stream."""
    caplog.set_level(logging.WARNING, logger="trio_dispatch")
    hooks = install_hooks(monkeypatch)

    def skipped() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "trio_dispatch" and r.getMessage().startswith("skipping")
        ]

    with trio.fail_after(LIMIT):
        async with open_env() as env, trio.open_nursery() as nursery:
            recorder = Recorder(env.clock, nursery)
            good = await env.client.create(
                MICROGRID, type="A", start_time=at(1), duration=minutes(5)
            )
            hooks.extra_listed = [_invalid(900, start_time=None)]
            async with env.open_dispatcher() as dispatcher:
                statuses = recorder.record(
                    "running", dispatcher.running_status_change.new_receiver()
                )
                events = recorder.record("lifecycle", dispatcher.lifecycle_events.new_receiver())
                assert set(dispatcher.dispatches) == {good.id}
                assert dispatcher.statistics().invalid_dispatches == 1
                assert skipped() == [
                    "skipping invalid dispatch 900 from server: start_time is missing"
                ]

                await env.sleep_until(at(2))
                hooks.inject(
                    pb.StreamMicrogridDispatchesResponse(
                        dispatch=_invalid(901, type=""), event=pb_streaming.Event.CREATED
                    )
                )
                later = await env.client.create(
                    MICROGRID, type="A", start_time="now", duration=minutes(1)
                )
                await env.sleep_until(at(10))
                assert set(dispatcher.dispatches) == {good.id, later.id}
                assert dispatcher.statistics().invalid_dispatches == 2
    assert skipped() == [
        "skipping invalid dispatch 900 from server: start_time is missing",
        "skipping invalid dispatch 901 from server: type must not be empty, got ''",
    ]
    assert lives(events) == [(at(2), "Created", later.id)]
    assert runs(statuses) == [
        (at(1), good.id, RUNNING, at(6), None),
        (at(2), later.id, RUNNING, at(3), None),
        (at(3), later.id, STOPPED, None, None),
        (at(6), good.id, STOPPED, None, None),
    ]


# -- backpressure ------------------------------------------------------------------------------


@pytest.mark.parametrize("buffer_size", [16, 1024])
async def test_a_receiver_that_never_reads_blocks_nothing_and_loses_no_final_state(
    autojump_clock: trio.testing.MockClock, buffer_size: int
) -> None:
    """50 dispatches start and stop 100 times each: 10,000 running-status changes."""
    count, runs_each = 50, 100
    second = timedelta(seconds=1)
    with trio.fail_after(LIMIT):
        async with open_env() as env, trio.open_nursery() as nursery:
            recorder = Recorder(env.clock, nursery)
            made = [
                await env.client.create(
                    MICROGRID,
                    type="A",
                    start_time=at(1) + k * second,  # staggered by a second each
                    duration=30 * second,
                    recurrence=RecurrenceRule(
                        frequency=Frequency.MINUTELY, end_criteria=EndCriteria(count=runs_each)
                    ),
                )
                for k in range(count)
            ]
            async with env.open_dispatcher(buffer_size=buffer_size) as dispatcher:
                stalled = dispatcher.running_status_change.new_receiver()
                statuses = recorder.record(
                    "running", dispatcher.running_status_change.new_receiver()
                )
                began = time.perf_counter()
                await env.sleep_until(at(1 + runs_each + 1))
                elapsed = time.perf_counter() - began
                stats = dispatcher.statistics()
                stalled_stats = stalled.statistics()
                late = drain(stalled)

    # The reader that keeps up saw every change, at its time, in order.
    expected: list[tuple[Any, ...]] = []
    for k, d in enumerate(made):
        for r in range(runs_each):
            start = at(1 + r) + k * second
            following = start + minutes(1) if r + 1 < runs_each else None
            expected.append((start, d.id, RUNNING, start + 30 * second, following))
            expected.append((start + 30 * second, d.id, STOPPED, None, following))
    expected.sort(key=lambda item: (item[0], item[1]))
    assert len(expected) == 10_000
    assert runs(statuses) == expected
    assert stats.running_status_events == 10_000
    assert elapsed < 20.0  # generous on a busy machine; typically well under 2 s

    # The one that never read: bounded, coalesced, and its last word per dispatch is the
    # final stop.
    assert stalled_stats in stats.receivers
    assert stalled_stats.queued == len(late)
    assert stalled_stats.peak <= max(buffer_size, 2 * count)
    assert stalled_stats.coalesced == 10_000 - len(late)
    final: dict[int, RunningStatus] = {}
    for status in late:
        final[status.id] = status
    assert sorted(final) == sorted(d.id for d in made)
    for k, d in enumerate(made):
        last_stop = at(runs_each) + k * second + 30 * second
        assert (final[d.id].started, final[d.id].decided_at) == (False, last_stop)
    decided = [s.decided_at for s in late]
    assert decided == sorted(decided)


# -- options -----------------------------------------------------------------------------------


async def test_with_the_callers_client(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(LIMIT):
        async with open_env() as env:
            created = await env.client.create(
                MICROGRID, type="A", start_time=at(1), duration=minutes(1)
            )
            async with open_dispatcher(
                microgrid_id=MICROGRID, client=env.client, clock=env.clock
            ) as dispatcher:
                with dispatcher.running_status_change.new_receiver() as statuses:
                    first = await statuses.receive()
                    assert (first.id, first.started, first.decided_at) == (created.id, True, at(1))
            assert dispatcher_tasks() == []
            # The client is the caller's: still open.
            assert await env.client.get(MICROGRID, created.id) == created


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "give either server_url (with key) or client, not both or neither"),
        ({"server_url": "grpc://localhost:1", "key": ""}, "key is required with server_url"),
        (
            {"server_url": "grpc://localhost:1", "key": KEY, "startup_timeout": timedelta(0)},
            "startup_timeout must be a positive timedelta, got datetime.timedelta(0)",
        ),
        (
            {"server_url": "grpc://localhost:1", "key": KEY, "buffer_size": 0},
            "buffer_size must be an int >= 1, got 0",
        ),
    ],
)
async def test_bad_options_raise_at_once(
    autojump_clock: trio.testing.MockClock, options: dict[str, Any], message: str
) -> None:
    with trio.fail_after(LIMIT), pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        async with open_dispatcher(microgrid_id=MICROGRID, **options):
            pytest.fail("must not start")
    assert trio.current_time() == 0


async def test_changes_between_subscribing_and_listing_are_not_replayed(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An update and a delete land after the re-subscribe but before the re-list.

    The listing already lacks the dispatch; the stream then still delivers the update
    and the delete. The dispatch must not come back to life in between.
    """
    hooks = install_hooks(monkeypatch)
    second = timedelta(seconds=1)
    with trio.fail_after(LIMIT):
        async with open_env() as env, trio.open_nursery() as nursery:
            recorder = Recorder(env.clock, nursery)
            x = await env.client.create(MICROGRID, type="A", start_time=at(1), duration=minutes(60))
            async with env.open_dispatcher(backoff=Backoff(base=1, cap=1, jitter=0)) as dispatcher:
                statuses = recorder.record(
                    "running", dispatcher.running_status_change.new_receiver()
                )
                events = recorder.record("lifecycle", dispatcher.lifecycle_events.new_receiver())
                await env.sleep_until(at(5))
                hooks.list_latency = 30.0  # (the client's call timeout is 60 s)
                hooks.end_streams()  # re-subscribes at 5:01, lists until 5:31
                await env.sleep_until(at(5) + 10 * second)
                assert len(hooks.stream_calls) == 2
                await env.client.update(MICROGRID, x.id, payload={"p": 1})
                await env.client.delete(MICROGRID, x.id)
                await env.sleep_until(at(10))
                assert dispatcher.dispatches == {}
    assert lives(events) == [(at(5) + 31 * second, "Deleted", x.id)]
    assert runs(statuses) == [
        (at(1), x.id, RUNNING, at(61), None),
        (at(5) + 31 * second, x.id, STOPPED, None, None),
    ]
