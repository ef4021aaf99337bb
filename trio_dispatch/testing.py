"""Test your dispatch-driven code under trio's fake clock, against a real server.

The dispatch API deals in wall-clock UTC times; trio's clock is monotonic and starts
anywhere. `WallClock` ties the two: it reads ``trio.current_time()`` and adds a fixed
UTC epoch, so when pytest-trio's ``autojump_clock`` skips an idle hour, the wall clock
moves an hour too, and a test of a month of daily dispatches runs in milliseconds.

`open_test_environment` starts the embedded server in-process on a free loopback port
with in-memory storage, and a client, all on one `WallClock`; its helpers create
dispatches relative to "now" and open a dispatcher on the same clock.

Example (pytest-trio with ``trio_mode = true``)::

    async def test_battery_actor(autojump_clock):
        async with open_test_environment() as env:
            await env.create("BATTERY", start_in=timedelta(minutes=1),
                             duration=timedelta(minutes=5))
            async with env.open_dispatcher() as dispatcher:
                with dispatcher.running_status_change.new_receiver() as changes:
                    status = await changes.receive()
                    assert env.clock() == env.epoch + timedelta(minutes=1)
                    assert status.running("BATTERY") is RunningState.RUNNING
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, final

import trio

from ._client import DispatchClient, open_client
from ._dispatcher import Dispatcher, open_dispatcher
from ._model import Dispatch
from .server import RunningServer, open_dispatch_server

__all__ = ["DEFAULT_EPOCH", "TEST_KEY", "TestEnvironment", "WallClock", "open_test_environment"]

DEFAULT_EPOCH: Final = datetime(2030, 1, 1, tzinfo=UTC)
"""Where test wall clocks start unless told otherwise: a fixed, future instant."""

TEST_KEY: Final = "test-key"
"""The API key of the test environment's server."""


@final
class WallClock:
    """A UTC wall clock that follows trio's clock (and so the fake clock in tests).

    Create it inside ``trio.run``; it shows `epoch` at that moment. Call it for the time.
    """

    follows_trio_clock: Final = True
    """Tells the dispatcher that this clock cannot jump behind trio's back."""

    def __init__(self, epoch: datetime = DEFAULT_EPOCH) -> None:
        if epoch.tzinfo is None:
            raise ValueError(f"epoch must be timezone-aware, got {epoch!r}")
        self.epoch = epoch.astimezone(UTC)
        self._trio_zero = trio.current_time()

    def __call__(self) -> datetime:
        """The current wall-clock time."""
        return self.at(trio.current_time())

    def at(self, trio_time: float) -> datetime:
        """The wall-clock time that corresponds to a trio clock reading."""
        return self.epoch + timedelta(seconds=trio_time - self._trio_zero)

    def trio_time(self, wall: datetime) -> float:
        """The trio clock reading at which this clock shows `wall`."""
        return self._trio_zero + (wall - self.epoch).total_seconds()

    async def sleep_until(self, wall: datetime) -> None:
        """Sleep until this clock shows `wall`."""
        await trio.sleep_until(self.trio_time(wall))


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class TestEnvironment:
    """A running server, a client and the clock they share."""

    __test__ = False  # not a pytest test class, despite the name

    clock: WallClock
    server: RunningServer
    client: DispatchClient
    microgrid_id: int

    @property
    def epoch(self) -> datetime:
        """The wall-clock time at which the environment started."""
        return self.clock.epoch

    async def create(
        self,
        type: str,
        *,
        start_in: timedelta = timedelta(0),
        duration: timedelta | None = timedelta(minutes=5),
        **fields: Any,
    ) -> Dispatch:
        """Create a dispatch of `type` starting `start_in` from now (0: now)."""
        start: datetime | str = "now" if start_in == timedelta(0) else self.clock() + start_in
        return await self.client.create(
            self.microgrid_id,
            type=type,
            start_time=start,  # type: ignore[arg-type]
            duration=duration,
            **fields,
        )

    def open_dispatcher(self, **options: Any) -> AbstractAsyncContextManager[Dispatcher]:
        """`open_dispatcher` on this environment's microgrid, client and clock."""
        return open_dispatcher(
            microgrid_id=self.microgrid_id, client=self.client, clock=self.clock, **options
        )


@asynccontextmanager
async def open_test_environment(
    *, microgrid_id: int = 1, epoch: datetime = DEFAULT_EPOCH
) -> AsyncIterator[TestEnvironment]:
    """Start an in-memory server and a client on a shared `WallClock`.

    The client sends no HTTP/2 keepalive pings: under the fake clock they would cost a
    wake-up every simulated minute, and the server runs in the same process anyway.

    Example:
        >>> async with open_test_environment() as env:
        ...     dispatch = await env.create("DEMO", start_in=timedelta(minutes=1))
    """
    clock = WallClock(epoch)
    async with (
        open_dispatch_server(keys=[TEST_KEY], clock=clock) as server,
        open_client(
            server_url=f"{server.url}&keep_alive=false", key=TEST_KEY, clock=clock
        ) as client,
    ):
        yield TestEnvironment(clock=clock, server=server, client=client, microgrid_id=microgrid_id)
