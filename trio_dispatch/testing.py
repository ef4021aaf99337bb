"""Helpers for testing code that uses trio_dispatch, under trio's fake clock.

The dispatch API deals in wall-clock UTC times; trio's clock is monotonic and starts
anywhere. `WallClock` ties the two: it reads ``trio.current_time()`` and adds a fixed UTC
epoch, so when pytest-trio's ``autojump_clock`` skips an hour of idle time, the wall
clock moves an hour too, and a test of a month of daily dispatches runs in milliseconds.

Example (pytest-trio, ``trio_mode = true``)::

    async def test_something(autojump_clock):
        clock = WallClock()
        async with open_dispatch_server(keys=["k"], clock=clock) as server:
            ...
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final, final

import trio

__all__ = ["DEFAULT_EPOCH", "WallClock"]

DEFAULT_EPOCH: Final = datetime(2030, 1, 1, tzinfo=UTC)
"""Where test wall clocks start unless told otherwise: a fixed, future instant."""


@final
class WallClock:
    """A UTC wall clock that follows trio's clock (and so the fake clock in tests).

    Create it inside ``trio.run``; it reads `epoch` at that moment. Call it for the time.
    """

    def __init__(self, epoch: datetime = DEFAULT_EPOCH) -> None:
        if epoch.tzinfo is None:
            raise ValueError(f"epoch must be timezone-aware, got {epoch!r}")
        self._epoch = epoch.astimezone(UTC)
        self._trio_zero = trio.current_time()

    def __call__(self) -> datetime:
        """The current wall-clock time."""
        return self._epoch + timedelta(seconds=trio.current_time() - self._trio_zero)

    def at(self, trio_time: float) -> datetime:
        """The wall-clock time that corresponds to a trio clock reading."""
        return self._epoch + timedelta(seconds=trio_time - self._trio_zero)

    def trio_time(self, wall: datetime) -> float:
        """The trio clock reading at which this clock shows `wall`."""
        return self._trio_zero + (wall - self._epoch).total_seconds()
