"""The demo, and the synchronous entry points of ``trio-dispatch demo`` / ``watch``.

Why: a dispatch library is hard to picture until a schedule runs in front of you. The
demo needs nothing but this package: it starts the embedded server (in memory, on a
free port), creates a handful of dispatches relative to now so that something starts or
stops every few seconds, and watches them through a real client and dispatcher, while a
small "operator" task edits the schedule every 20 s (a new payload, a deactivation, a
new dispatch, a deletion) so that lifecycle events show up too. The server stays
reachable for the whole run, so the CLI can inspect and change it from another
terminal.

The ``main_*`` functions are what the CLI calls: they run trio, stop cleanly on Ctrl-C
or SIGTERM (exit status 0, no traceback), and report errors in one line (status 1).
"""

from __future__ import annotations

import functools
import math
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, TextIO

import trio

from ._client import DispatchClient, open_client, system_clock
from ._dispatcher import open_dispatcher
from ._exceptions import DispatchError
from ._rule import EndCriteria, Frequency, RecurrenceRule
from ._target import (
    BatteryType,
    ComponentCategory,
    InverterType,
    TargetCategories,
    TargetCategory,
    TargetIds,
)
from ._watch import watch
from .server import open_dispatch_server

__all__ = ["DEMO_KEY", "DEMO_MICROGRID", "main_demo", "main_watch", "run_demo"]

DEMO_KEY: Final = "demo"
"""The API key of the demo's server."""

DEMO_MICROGRID: Final = 1
"""The microgrid the demo's dispatches belong to."""

OPERATOR_PERIOD: Final = 20.0
"""Seconds between two changes made by the demo's operator."""

OPERATOR_OFFSET: Final = 22.0
"""Seconds after the demo's start of the operator's first change (off the run edges)."""

_MINUTELY: Final = RecurrenceRule(frequency=Frequency.MINUTELY)


async def create_demo_dispatches(client: DispatchClient, base: datetime) -> dict[str, int]:
    """Create the demo's dispatches, timed from `base`; return their ids by type.

    In the first minute something starts or stops every 5 to 10 seconds:

    ====================  =========================  ==============================
    type                  when                       what it shows
    ====================  =========================  ==============================
    BATTERY_PEAK_SHAVING  every minute from +5 s     a recurring run of 20 s
    SOLAR_CURTAILMENT     once, at +15 s             a one-off run of 45 s
    FREQUENCY_RESPONSE    every 2 minutes from +30 s a dry run (actors only log)
    EV_CHARGING           every minute from +35 s    targets by component id
    DEMAND_RESPONSE       every minute from +40 s    ends after 3 runs
    GRID_MAINTENANCE      once, at +60 s             inactive: never runs
    ====================  =========================  ==============================
    """
    s = timedelta(seconds=1)
    create = functools.partial(client.create, DEMO_MICROGRID)
    made = [
        await create(
            type="BATTERY_PEAK_SHAVING",
            start_time=base + 5 * s,
            duration=20 * s,
            recurrence=_MINUTELY,
            target=TargetCategories.of(ComponentCategory.BATTERY),
            payload={"limit_kw": 50},
        ),
        await create(
            type="SOLAR_CURTAILMENT",
            start_time=base + 15 * s,
            duration=45 * s,
            target=TargetCategories.of(
                TargetCategory(category=ComponentCategory.INVERTER, type=InverterType.PV)
            ),
            payload={"max_feed_in_kw": 30},
        ),
        await create(
            type="FREQUENCY_RESPONSE",
            start_time=base + 30 * s,
            duration=20 * s,
            recurrence=RecurrenceRule(frequency=Frequency.MINUTELY, interval=2),
            target=TargetCategories.of(
                TargetCategory(category=ComponentCategory.BATTERY, type=BatteryType.LI_ION)
            ),
            dry_run=True,
            payload={"droop_pct": 4},
        ),
        await create(
            type="EV_CHARGING",
            start_time=base + 35 * s,
            duration=20 * s,
            recurrence=_MINUTELY,
            target=TargetIds.of(10, 11),
            payload={"max_current_a": 16},
        ),
        await create(
            type="DEMAND_RESPONSE",
            start_time=base + 40 * s,
            duration=10 * s,
            recurrence=RecurrenceRule(
                frequency=Frequency.MINUTELY, end_criteria=EndCriteria(count=3)
            ),
            target=TargetIds.of(20),
            payload={"reduce_kw": 15},
        ),
        await create(
            type="GRID_MAINTENANCE",
            start_time=base + 60 * s,
            duration=timedelta(minutes=10),
            target=TargetIds.of(1),
            active=False,
        ),
    ]
    ids = {d.type: d.id for d in made}
    return ids


@dataclass(slots=True)
class _Operator:
    """Someone editing the schedule while the demo runs: one change per period."""

    client: DispatchClient
    ids: dict[str, int]
    clock: Callable[[], datetime]
    boost: int | None = None
    limit: int = 50
    ev_active: bool = True

    async def step(self, n: int) -> None:
        mg = DEMO_MICROGRID
        match n % 4:
            case 0:  # retune the peak shaver (a reconfiguration if it is running)
                self.limit = 40 if self.limit == 50 else 50
                peak = self.ids["BATTERY_PEAK_SHAVING"]
                await self.client.update(mg, peak, payload={"limit_kw": self.limit})
            case 1:  # switch EV charging off, next time on again
                self.ev_active = not self.ev_active
                await self.client.update(mg, self.ids["EV_CHARGING"], active=self.ev_active)
            case 2:  # an ad-hoc one-off
                created = await self.client.create(
                    mg,
                    type="HEAT_PUMP_BOOST",
                    start_time=self.clock() + timedelta(seconds=5),
                    duration=timedelta(seconds=30),
                    target=TargetIds.of(30),
                    payload={"boost_kw": 5},
                )
                self.boost = created.id
            case _:  # ... cancelled while it runs
                if self.boost is not None:
                    await self.client.delete(mg, self.boost)
                    self.boost = None

    async def run(self, base: datetime) -> None:
        for n in range(1_000_000_000):
            due = base + timedelta(seconds=OPERATOR_OFFSET + n * OPERATOR_PERIOD)
            await trio.sleep(max(0.0, (due - self.clock()).total_seconds()))
            await self.step(n)


def _banner(url: str) -> list[str]:
    return [
        f'trio-dispatch demo: embedded server at {url} (API key "{DEMO_KEY}", '
        f"microgrid {DEMO_MICROGRID})",
        f"Inspect it from another terminal: trio-dispatch list --url '{url}' "
        f"--key {DEMO_KEY} -m {DEMO_MICROGRID}",
    ]


async def run_demo(
    *,
    out: TextIO,
    ansi: bool,
    duration: float | None = None,
    clock: Callable[[], datetime] = system_clock,
) -> None:
    """Run the demo on `out` until cancelled, or for `duration` seconds if given.

    Starts the embedded server (API key ``"demo"``, in-memory storage, a free loopback
    port), creates the dispatches of `create_demo_dispatches` timed from the current
    second, and shows them with `watch` while an operator task changes one thing every
    20 s. The same `clock` drives the server, the client and the dispatcher, so under
    trio's fake clock (with `trio_dispatch.testing.WallClock`) the demo runs in
    milliseconds.

    Example:
        >>> trio.run(functools.partial(run_demo, out=sys.stdout, ansi=False, duration=90))
    """
    if duration is not None and not duration > 0:
        raise ValueError(f"duration must be > 0 seconds or None, got {duration!r}")
    async with (
        open_dispatch_server(keys=[DEMO_KEY], database=":memory:", port=0, clock=clock) as server,
        open_client(server_url=server.url, key=DEMO_KEY, clock=clock) as client,
    ):
        base = clock().replace(microsecond=0)
        ids = await create_demo_dispatches(client, base)
        async with (
            open_dispatcher(microgrid_id=DEMO_MICROGRID, client=client, clock=clock) as dispatcher,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(_Operator(client, ids, clock).run, base)
            with trio.move_on_after(math.inf if duration is None else duration):
                await watch(dispatcher, out=out, clock=clock, ansi=ansi, banner=_banner(server.url))
            nursery.cancel_scope.cancel()


# -- synchronous entry points ----------------------------------------------------------------


def main_demo(duration: float | None = None, ansi: bool | None = None) -> int:
    """Run the demo on standard output until Ctrl-C (or for `duration` seconds).

    `ansi=None` redraws in place with colours when standard output is a terminal, and
    prints plain lines otherwise. Returns the process exit status.
    """
    out = sys.stdout
    job = functools.partial(run_demo, out=out, ansi=_want_ansi(out, ansi), duration=duration)
    return _run(job)


def main_watch(
    url: str,
    key: str,
    microgrid_id: int,
    sign_secret: str | None = None,
    ansi: bool | None = None,
) -> int:
    """Watch a microgrid's dispatches on a server until Ctrl-C; return the exit status."""
    out = sys.stdout
    use_ansi = _want_ansi(out, ansi)

    async def job() -> None:
        async with open_dispatcher(
            microgrid_id=microgrid_id, server_url=url, key=key, sign_secret=sign_secret
        ) as dispatcher:
            banner = [f"trio-dispatch watch: {url}"]
            await watch(dispatcher, out=out, clock=system_clock, ansi=use_ansi, banner=banner)

    return _run(job)


def _want_ansi(out: TextIO, ansi: bool | None) -> bool:
    if ansi is not None:
        return ansi
    try:
        return out.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _run(job: Callable[[], Awaitable[None]]) -> int:
    """`trio.run` the job; Ctrl-C / SIGTERM cancel it (status 0), errors print (status 1)."""
    code = 0
    try:
        trio.run(_until_signalled, job)
    except* KeyboardInterrupt:  # arrived before the signal handler was installed
        pass
    except* BrokenPipeError:  # the reader went away (``... | head``): not an error
        _silence_stdout()
    except* (DispatchError, ValueError, OSError) as group:
        for error in _leaves(group):
            print(f"trio-dispatch: error: {error}", file=sys.stderr)
        code = 1
    return code


async def _until_signalled(job: Callable[[], Awaitable[None]]) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(_cancel_on_signal, nursery.cancel_scope)
        await job()
        nursery.cancel_scope.cancel()


async def _cancel_on_signal(
    scope: trio.CancelScope, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            scope.cancel()
            return


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            yield from _leaves(error)
        else:
            yield error


def _silence_stdout() -> None:
    # Python flushes stdout at exit; with the pipe gone that would fail once more.
    with suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
