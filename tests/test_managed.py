"""`Dispatcher.manage`: one task per running identity, end to end.

The real dispatcher runs against the embedded server under ``autojump_clock`` (via
`open_test_environment`), so every start, update, stop and restart happens at an exact
virtual time. Managed tasks log ``(seconds since the test began, what, ...)`` rows and
the tests compare the whole sequence.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
import trio
import trio.testing
from test_docs_examples import example

import trio_dispatch
from trio_dispatch import (
    Backoff,
    Dispatcher,
    ManagedInfo,
    ManagedStatistics,
    MergeByType,
    MergeByTypeTarget,
    RunningStatus,
    TargetIds,
)
from trio_dispatch._managed import _Updates
from trio_dispatch.testing import TestEnvironment, open_test_environment

SEC = timedelta(seconds=1)
LIMIT = 86400.0  # virtual seconds a test may take
NO_JITTER = Backoff(base=1, cap=60, jitter=0)

Run = Callable[[ManagedInfo, trio.abc.ReceiveChannel[ManagedInfo]], Awaitable[object]]


class Log:
    """Rows of ``(seconds since the environment started, *what)``."""

    def __init__(self, env: TestEnvironment) -> None:
        self.env = env
        self.rows: list[tuple[Any, ...]] = []

    def now(self) -> float:
        return (self.env.clock() - self.env.epoch).total_seconds()

    def add(self, *what: Any) -> None:
        self.rows.append((self.now(), *what))

    def seconds(self, info: ManagedInfo) -> float | None:
        return None if info.until is None else (info.until - self.env.epoch).total_seconds()

    def tracking(self) -> Run:
        """A run that logs its start, every update, the end of updates and a cancel."""

        async def run(info: ManagedInfo, updates: trio.abc.ReceiveChannel[ManagedInfo]) -> None:
            self.add("start", info.dispatch_ids, info.payload, self.seconds(info))
            try:
                async for new in updates:
                    self.add("update", new.dispatch_ids, new.payload, self.seconds(new))
                self.add("updates ended")
            except trio.Cancelled:
                self.add("cancelled")
                raise

        return run


def stats(dispatcher: Dispatcher) -> dict[str, ManagedStatistics]:
    return {s.type: s for s in dispatcher.statistics().managed}


def counts(s: ManagedStatistics) -> tuple[int, ...]:
    """``(running, tasks, started, restarted, stopped, failed)``."""
    return (s.running, s.tasks, s.started, s.restarted, s.stopped, s.failed)


@asynccontextmanager
async def scenario() -> AsyncIterator[tuple[TestEnvironment, Log]]:
    with trio.fail_after(LIMIT):
        async with open_test_environment() as env:
            yield env, Log(env)


async def sleep_to(env: TestEnvironment, seconds: float) -> None:
    await env.clock.sleep_until(env.epoch + seconds * SEC)


# -- start, reconfigure, stop ------------------------------------------------------------------


async def test_start_reconfigure_stop(autojump_clock: trio.testing.MockClock) -> None:
    async with scenario() as (env, log):
        a = await env.create("BATTERY", start_in=60 * SEC, duration=300 * SEC, payload={"p": 1})
        other = await env.create("PV", start_in=60 * SEC, duration=900 * SEC)
        async with env.open_dispatcher() as dispatcher, trio.open_nursery() as nursery:
            await nursery.start(dispatcher.manage, "BATTERY", log.tracking())
            assert counts(stats(dispatcher)["BATTERY"]) == (0, 0, 0, 0, 0, 0)
            await sleep_to(env, 180)
            await env.client.update(env.microgrid_id, a.id, payload={"p": 2})
            # Back to back with `a` (which ends at 360): the task goes on.
            b = await env.create("BATTERY", start_in=180 * SEC, duration=240 * SEC)
            await sleep_to(env, 400)
            assert counts(stats(dispatcher)["BATTERY"]) == (1, 1, 1, 0, 0, 0)
            await sleep_to(env, 1000)
            assert counts(stats(dispatcher)["BATTERY"]) == (0, 0, 1, 0, 1, 0)
            nursery.cancel_scope.cancel()
        assert dispatcher.statistics().managed == ()  # manage returned
    assert other.type == "PV"
    assert log.rows == [
        (60, "start", (a.id,), {"p": 1}, 360),
        (180, "update", (a.id,), {"p": 2}, 360),
        (360, "update", (b.id,), {}, 600),
        (600, "cancelled"),
    ]


async def test_merge_by_type_and_target_runs_one_task_per_target(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scenario() as (env, log):
        one = await env.create("EV", start_in=60 * SEC, duration=120 * SEC, target=TargetIds.of(1))
        two = await env.create("EV", start_in=90 * SEC, duration=120 * SEC, target=TargetIds.of(2))
        also_one = await env.create(
            "EV", start_in=120 * SEC, duration=120 * SEC, target=TargetIds.of(1)
        )
        async with env.open_dispatcher() as dispatcher, trio.open_nursery() as nursery:
            nursery.start_soon(
                functools.partial(
                    dispatcher.manage, "EV", log.tracking(), merge=MergeByTypeTarget()
                )
            )
            await sleep_to(env, 150)
            assert counts(stats(dispatcher)["EV"]) == (2, 2, 2, 0, 0, 0)
            await sleep_to(env, 400)
            nursery.cancel_scope.cancel()
    assert log.rows == [
        (60, "start", (one.id,), {}, 180),
        (90, "start", (two.id,), {}, 210),
        (120, "update", (one.id, also_one.id), {}, 240),
        (180, "update", (also_one.id,), {}, 240),
        (210, "cancelled"),
        (240, "cancelled"),
    ]


async def test_dispatches_running_when_manage_starts_get_their_tasks_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scenario() as (env, log):
        real = await env.create("BATTERY", duration=600 * SEC, payload={"p": 1})
        dry = await env.create("BATTERY", duration=None, dry_run=True)
        later = await env.create("BATTERY", start_in=300 * SEC, duration=60 * SEC)
        async with env.open_dispatcher() as dispatcher, trio.open_nursery() as nursery:
            await sleep_to(env, 120)
            await nursery.start(dispatcher.manage, "BATTERY", log.tracking())
            # Both running identities have their slots when start() returns ...
            assert stats(dispatcher)["BATTERY"].running == 2
            await trio.testing.wait_all_tasks_blocked()
            # ... and their tasks, without time passing.
            assert counts(stats(dispatcher)["BATTERY"]) == (2, 2, 2, 0, 0, 0)
            assert log.now() == 120
            await sleep_to(env, 700)
            nursery.cancel_scope.cancel()
    assert sorted(log.rows, key=lambda r: (r[0], r[2] if len(r) > 2 else ())) == [
        (120, "start", (real.id,), {"p": 1}, 600),
        (120, "start", (dry.id,), {}, None),
        (300, "update", (real.id, later.id), {}, 600),
        (360, "update", (real.id,), {"p": 1}, 600),
        (600, "cancelled"),
        (700, "cancelled"),  # the unbounded dry run: cancelled with manage
    ]


async def test_updates_keep_only_the_newest(autojump_clock: trio.testing.MockClock) -> None:
    async with scenario() as (env, log):
        d = await env.create("BATTERY", start_in=60 * SEC, duration=600 * SEC, payload={"n": 0})

        async def slow_reader(
            info: ManagedInfo, updates: trio.abc.ReceiveChannel[ManagedInfo]
        ) -> None:
            log.add("start", info.payload)
            await trio.sleep(300)  # busy; meanwhile two reconfigurations
            async for new in updates:
                log.add("update", new.payload)
            log.add("updates ended")

        async with env.open_dispatcher() as dispatcher, trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(dispatcher.manage, "BATTERY", slow_reader, grace=60 * SEC)
            )
            for n, when in enumerate((120, 180, 500), start=1):
                await sleep_to(env, when)
                await env.client.update(env.microgrid_id, d.id, payload={"n": n})
            await sleep_to(env, 1000)
            assert counts(stats(dispatcher)["BATTERY"]) == (0, 0, 1, 0, 1, 0)
            nursery.cancel_scope.cancel()
    assert log.rows == [
        (60, "start", {"n": 0}),
        (360, "update", {"n": 2}),  # {"n": 1} was replaced before it was read
        (500, "update", {"n": 3}),
        (660, "updates ended"),  # the stop, with a grace period
    ]


def test_the_updates_channel() -> None:
    updates = _Updates()
    with pytest.raises(trio.WouldBlock):
        updates.receive_nowait()
    updates._end()
    with pytest.raises(trio.EndOfChannel):
        updates.receive_nowait()
    with updates:
        pass
    with pytest.raises(trio.ClosedResourceError):
        updates.receive_nowait()


# -- stopping ------------------------------------------------------------------------------------


async def test_grace_period_asks_then_insists(autojump_clock: trio.testing.MockClock) -> None:
    async with scenario() as (env, log):
        await env.create("POLITE", start_in=60 * SEC, duration=60 * SEC)
        first = await env.create("STUBBORN", start_in=60 * SEC, duration=60 * SEC)
        # Starts and stops while `first` is still stopping: never gets a task.
        await env.create("STUBBORN", start_in=130 * SEC, duration=10 * SEC)
        third = await env.create("STUBBORN", start_in=150 * SEC, duration=50 * SEC)

        async def polite(info: ManagedInfo, updates: trio.abc.ReceiveChannel[ManagedInfo]) -> None:
            log.add("polite start")
            async for _ in updates:
                pass
            log.add("polite cleaning up")
            await trio.sleep(30)
            log.add("polite done")

        async def stubborn(
            info: ManagedInfo, updates: trio.abc.ReceiveChannel[ManagedInfo]
        ) -> None:
            log.add("stubborn start", info.dispatch_ids)
            try:
                await trio.sleep_forever()  # never looks at updates
            except trio.Cancelled:
                log.add("stubborn cancelled")
                raise

        async with env.open_dispatcher() as dispatcher, trio.open_nursery() as nursery:
            for kind, run in (("POLITE", polite), ("STUBBORN", stubborn)):
                await nursery.start(functools.partial(dispatcher.manage, kind, run, grace=60 * SEC))
            await sleep_to(env, 400)
            assert counts(stats(dispatcher)["POLITE"]) == (0, 0, 1, 0, 1, 0)
            assert counts(stats(dispatcher)["STUBBORN"]) == (0, 0, 2, 0, 2, 0)
            nursery.cancel_scope.cancel()
    # Two manage calls: their rows at one instant may interleave either way.
    assert [r for r in log.rows if r[1].startswith("polite")] == [
        (60, "polite start"),
        (120, "polite cleaning up"),  # stop: updates ended
        (150, "polite done"),  # within the grace period
    ]
    assert [r for r in log.rows if r[1].startswith("stubborn")] == [
        (60, "stubborn start", (first.id,)),
        (180, "stubborn cancelled"),  # 120 + 60 s of grace
        (180, "stubborn start", (third.id,)),  # only now: the stop is complete
        (260, "stubborn cancelled"),  # 200 + 60
    ]


async def test_without_grace_a_stop_cancels_and_completes_before_the_next_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scenario() as (env, log):
        first = await env.create("BATTERY", start_in=60 * SEC, duration=60 * SEC)
        second = await env.create("BATTERY", start_in=120 * SEC, duration=60 * SEC, dry_run=True)
        third = await env.create("BATTERY", start_in=200 * SEC, duration=60 * SEC)

        async def slow_to_die(
            info: ManagedInfo, updates: trio.abc.ReceiveChannel[ManagedInfo]
        ) -> None:
            log.add("start", info.dispatch_ids)
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await trio.sleep(100)  # a cleanup that takes long, shielded
                log.add("stopped", info.dispatch_ids)

        async with env.open_dispatcher() as dispatcher, trio.open_nursery() as nursery:
            await nursery.start(dispatcher.manage, "BATTERY", slow_to_die)
            await sleep_to(env, 500)
            nursery.cancel_scope.cancel()
    first_id = first.id
    assert log.rows == [
        (60, "start", (first_id,)),
        (120, "start", (second.id,)),  # another identity (dry run): not held up
        (220, "stopped", (first_id,)),
        (220, "start", (third.id,)),  # waited for the first identity's stop
        (280, "stopped", (second.id,)),
        (360, "stopped", (third.id,)),
    ]


async def test_a_task_that_returns_is_not_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scenario() as (env, log):
        d = await env.create("BATTERY", start_in=60 * SEC, duration=300 * SEC)

        async def once(info: ManagedInfo, updates: trio.abc.ReceiveChannel[ManagedInfo]) -> None:
            log.add("ran", info.dispatch_ids)

        async with env.open_dispatcher() as dispatcher, trio.open_nursery() as nursery:
            await nursery.start(dispatcher.manage, "BATTERY", once)
            await sleep_to(env, 120)
            assert counts(stats(dispatcher)["BATTERY"]) == (1, 0, 1, 0, 1, 0)
            await env.client.update(env.microgrid_id, d.id, payload={"p": 1})
            await sleep_to(env, 400)
            again = await env.create("BATTERY", duration=60 * SEC)
            await sleep_to(env, 600)
            assert counts(stats(dispatcher)["BATTERY"]) == (0, 0, 2, 0, 2, 0)
            nursery.cancel_scope.cancel()
    assert log.rows == [(60, "ran", (d.id,)), (400, "ran", (again.id,))]


async def test_manage_returns_when_the_dispatcher_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scenario() as (env, log):
        await env.create("BATTERY", duration=None)
        async with trio.open_nursery() as nursery, env.open_dispatcher() as dispatcher:
            await nursery.start(
                functools.partial(dispatcher.manage, "BATTERY", log.tracking(), grace=10 * SEC)
            )
            await sleep_to(env, 60)
            # The nursery ends by itself: manage stopped its task (gracefully) and returned.
        assert log.now() == 60
    assert log.rows == [(0, "start", (1,), {}, None), (60, "updates ended")]


async def test_cancelling_manage_cancels_its_tasks_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scenario() as (env, log):
        await env.create("BATTERY", duration=None)
        async with env.open_dispatcher() as dispatcher:
            with trio.move_on_after(30):
                await dispatcher.manage("BATTERY", log.tracking(), grace=timedelta(hours=1))
            assert log.now() == 30
            assert dispatcher.statistics().managed == ()
    assert log.rows == [(0, "start", (1,), {}, None), (30, "cancelled")]


# -- failures ------------------------------------------------------------------------------------


async def test_failures_are_logged_and_restarted_with_backoff(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="trio_dispatch")
    async with scenario() as (env, log):
        real = await env.create("BATTERY", start_in=60 * SEC, duration=540 * SEC)
        await env.create("BATTERY", start_in=60 * SEC, duration=30 * SEC, dry_run=True)
        calls = {True: 0, False: 0}

        async def flaky(info: ManagedInfo, updates: trio.abc.ReceiveChannel[ManagedInfo]) -> None:
            calls[info.dry_run] += 1
            n = calls[info.dry_run]
            log.add(info.dry_run, n)
            if info.dry_run or n <= 3:  # the dry run always fails; the real one 3 times
                raise ValueError(f"boom {n}")
            await trio.sleep_forever()

        async with env.open_dispatcher() as dispatcher, trio.open_nursery() as nursery:
            statuses = dispatcher.running_status_change.new_receiver(type="BATTERY")
            await nursery.start(
                functools.partial(dispatcher.manage, "BATTERY", flaky, restart_backoff=NO_JITTER)
            )
            await sleep_to(env, 100)
            assert counts(stats(dispatcher)["BATTERY"]) == (1, 1, 2, 7, 0, 8)
            await sleep_to(env, 700)
            # The dispatcher never noticed: its receivers got every status.
            seen = []
            while True:
                try:
                    seen.append(statuses.receive_nowait())
                except trio.WouldBlock:
                    break
            assert [(s.id, s.started) for s in seen if isinstance(s, RunningStatus)][-1] == (
                real.id,
                False,
            )
            assert counts(stats(dispatcher)["BATTERY"]) == (0, 0, 2, 7, 1, 8)
            nursery.cancel_scope.cancel()
    assert [r for r in log.rows if r[1] is False] == [
        (60, False, 1),
        (61, False, 2),  # + 1 s
        (63, False, 3),  # + 2 s
        (67, False, 4),  # + 4 s: this one works until the stop at 600
    ]
    assert [r for r in log.rows if r[1] is True] == [
        (60, True, 1),
        (61, True, 2),
        (63, True, 3),
        (67, True, 4),
        (75, True, 5),  # the next would be at 91: the run stopped at 90
    ]
    errors = [r.getMessage() for r in caplog.records if r.name == "trio_dispatch"]
    assert errors[:2] == [
        "managed task for BATTERY ('BATTERY', False) failed; restarting in 1 s",
        "managed task for BATTERY ('BATTERY', True) failed; restarting in 1 s",
    ]
    assert sorted(errors) == sorted(
        [
            f"managed task for BATTERY ('BATTERY', False) failed; restarting in {s} s"
            for s in (1, 2, 4)
        ]
        + [
            f"managed task for BATTERY ('BATTERY', True) failed; restarting in {s} s"
            for s in (1, 2, 4, 8, 16)
        ]
    )
    assert all(r.exc_info is not None and r.exc_info[0] is ValueError for r in caplog.records)


async def test_backoff_starts_over_after_a_healthy_run(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="trio_dispatch")
    async with scenario() as (env, log):
        await env.create("BATTERY", start_in=60 * SEC, duration=600 * SEC)
        lifetimes = iter([0, 0, 100, 0, math.inf])

        async def run(info: ManagedInfo, updates: trio.abc.ReceiveChannel[ManagedInfo]) -> None:
            log.add("call")
            await trio.sleep(next(lifetimes))
            raise RuntimeError("gave up")

        async with env.open_dispatcher() as dispatcher, trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(dispatcher.manage, "BATTERY", run, restart_backoff=NO_JITTER)
            )
            await sleep_to(env, 700)
            assert counts(stats(dispatcher)["BATTERY"]) == (0, 0, 1, 4, 1, 4)
            nursery.cancel_scope.cancel()
    # Fails at once twice (1 s, 2 s); lives 100 s (>= cap) and fails: 1 s again.
    assert log.rows == [(60, "call"), (61, "call"), (63, "call"), (164, "call"), (166, "call")]


async def test_an_error_while_stopping_is_logged_and_counted(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="trio_dispatch")
    async with scenario() as (env, log):
        await env.create("BATTERY", start_in=60 * SEC, duration=60 * SEC)
        await env.create("BATTERY", start_in=200 * SEC, duration=60 * SEC)

        async def messy(info: ManagedInfo, updates: trio.abc.ReceiveChannel[ManagedInfo]) -> None:
            log.add("start")
            try:
                await trio.sleep_forever()
            finally:
                raise OSError("cleanup failed")

        async def messy_nursery(
            info: ManagedInfo, updates: trio.abc.ReceiveChannel[ManagedInfo]
        ) -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(messy, info, updates)
                await trio.sleep_forever()

        async with env.open_dispatcher() as dispatcher, trio.open_nursery() as nursery:
            await nursery.start(dispatcher.manage, "BATTERY", messy_nursery)
            await sleep_to(env, 300)
            assert counts(stats(dispatcher)["BATTERY"]) == (0, 0, 2, 0, 0, 2)
            nursery.cancel_scope.cancel()
    assert log.rows == [(60, "start"), (200, "start")]  # not restarted after a stop
    assert len(caplog.records) == 2
    assert all("failed" in r.getMessage() for r in caplog.records)


async def test_a_second_manage_of_a_type_is_an_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scenario() as (env, log), env.open_dispatcher() as dispatcher:
        async with trio.open_nursery() as nursery:
            await nursery.start(dispatcher.manage, "BATTERY", log.tracking())
            with pytest.raises(RuntimeError, match="'BATTERY' are already managed"):
                await dispatcher.manage("BATTERY", log.tracking())
            await nursery.start(dispatcher.manage, "PV", log.tracking())  # another type
            assert sorted(stats(dispatcher)) == ["BATTERY", "PV"]
            nursery.cancel_scope.cancel()
        # Once the first one returned, the type can be managed again.
        with trio.move_on_after(1):
            await dispatcher.manage("BATTERY", log.tracking())


async def test_bad_arguments_raise_at_once(autojump_clock: trio.testing.MockClock) -> None:
    async with scenario() as (env, log), env.open_dispatcher() as dispatcher:
        run = log.tracking()
        with pytest.raises(ValueError, match="type must be a non-empty str"):
            await dispatcher.manage("", run)
        with pytest.raises(ValueError, match="grace must be None or a timedelta"):
            await dispatcher.manage("A", run, grace=-SEC)
        with pytest.raises(ValueError, match="grace must be None or a timedelta"):
            await dispatcher.manage("A", run, grace=5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="run must be"):
            await dispatcher.manage("A", None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="merge strategy must have an identity"):
            await dispatcher.manage("A", run, merge=object())  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="restart_backoff must be a Backoff"):
            await dispatcher.manage("A", run, restart_backoff=1)  # type: ignore[arg-type]
        assert dispatcher.statistics().managed == ()


# -- the docs example ----------------------------------------------------------------------------


class Actor:
    """Records what the example asks of it, with the seconds since the test began."""

    def __init__(self, log: Log) -> None:
        self.log = log

    def start(self, **kwargs: Any) -> None:
        self.log.add("start", kwargs)

    def reconfigure(self, **kwargs: Any) -> None:
        self.log.add("reconfigure", kwargs)

    def stop(self) -> None:
        self.log.add("stop", {})


async def test_managed_page_example_drives_an_actor(
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    namespace = example("managed.md", "managed-example")
    async with scenario() as (env, log):
        # The one change to the code as shown: the dispatcher reads the test's clock.
        namespace["open_dispatcher"] = functools.partial(
            trio_dispatch.open_dispatcher, clock=env.clock
        )
        monkeypatch.setenv("DISPATCH_API_URL", env.server.url)
        monkeypatch.setenv("DISPATCH_API_KEY", "test-key")
        first = await env.create(
            "DEMO_TYPE",
            start_in=60 * SEC,
            duration=300 * SEC,
            target=TargetIds.of(4, 5),
            payload={"power_w": 1500},
        )
        await env.create("OTHER", start_in=60 * SEC, duration=None)  # ignored
        async with trio.open_nursery() as nursery:
            nursery.start_soon(namespace["run"], Actor(log))
            await sleep_to(env, 180)
            await env.client.update(env.microgrid_id, first.id, payload={"power_w": 500})
            # Starts as the first ends: the actor is reconfigured, not restarted.
            second = await env.create(
                "DEMO_TYPE", start_in=180 * SEC, duration=120 * SEC, target=TargetIds.of(6)
            )
            await sleep_to(env, 900)
            nursery.cancel_scope.cancel()

    def at(seconds: float) -> Any:
        return env.epoch + seconds * SEC

    assert log.rows == [
        (
            60,
            "start",
            {
                "components": TargetIds.of(4, 5),
                "run_parameters": {"power_w": 1500},
                "dry_run": False,
                "until": at(360),
            },
        ),
        (
            180,
            "reconfigure",
            {
                "components": TargetIds.of(4, 5),
                "run_parameters": {"power_w": 500},
                "dry_run": False,
                "until": at(360),
            },
        ),
        (
            360,
            "reconfigure",
            {
                "components": TargetIds.of(6),
                "run_parameters": {},
                "dry_run": False,
                "until": at(480),
            },
        ),
        (480, "stop", {}),
    ]
    assert capsys.readouterr().out.splitlines() == [
        f"Executing dispatches ({first.id},), until {at(360)}"
    ]
    assert second.id == first.id + 2
    assert MergeByType().identity(second) == ("DEMO_TYPE", False)
