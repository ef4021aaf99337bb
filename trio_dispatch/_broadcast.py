"""Fan-out to subscribers that never blocks the sender and never loses the last word.

Each receiver has its own queue. `Broadcast.publish` appends to every matching queue
without waiting. A queue that reaches its limit is *coalesced*: for each dispatch only
the newest item is kept, in the order of those newest items. So a subscriber that stops
reading costs memory bounded by the number of dispatches (not by the event rate), and
when it resumes it still sees the final state of every dispatch. A subscriber that keeps
up sees every item.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, TypeVar, final

import trio

__all__ = ["Broadcast", "Receiver", "ReceiverStatistics", "receive_parked"]

T = TypeVar("T")


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class ReceiverStatistics:
    """How one receiver is doing."""

    queued: int
    """Items waiting to be read now."""
    peak: int
    """The most items that were ever waiting."""
    coalesced: int
    """Items dropped because a newer item about the same dispatch replaced them."""


@final
class Receiver(trio.abc.ReceiveChannel[T], Generic[T]):
    """A subscription: a trio receive channel (``async for``, ``receive()``).

    Close it (``with receiver:`` does) to unsubscribe. After the dispatcher stops,
    it yields what is queued and then raises `trio.EndOfChannel`.
    """

    def __init__(
        self,
        owner: Broadcast[T],
        accept: Callable[[T], bool],
        key: Callable[[T], Hashable],
        limit: int,
    ) -> None:
        self._owner = owner
        self._accept = accept
        self._key = key
        self._limit = limit
        self._threshold = limit
        self._queue: deque[T] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        self._ended = False
        self._closed = False
        self._peak = 0
        self._coalesced = 0

    def _put(self, item: T) -> None:
        if not self._accept(item):
            return
        queue = self._queue
        queue.append(item)
        if len(queue) > self._threshold:
            self._coalesce()
        self._peak = max(self._peak, len(queue))
        self._lot.unpark_all()

    def _coalesce(self) -> None:
        queue = self._queue
        seen: set[Hashable] = set()
        kept: list[T] = []
        for item in reversed(queue):
            key = self._key(item)
            if key not in seen:
                seen.add(key)
                kept.append(item)
        kept.reverse()
        self._coalesced += len(queue) - len(kept)
        queue.clear()
        queue.extend(kept)
        # With more distinct dispatches than the limit, let the queue grow (memory stays
        # bounded by the number of dispatches) so coalescing does not run on every put.
        self._threshold = max(self._limit, 2 * len(kept))

    def _end(self) -> None:
        self._ended = True
        self._lot.unpark_all()

    def receive_nowait(self) -> T:
        """Return a queued item, or raise `trio.WouldBlock` / `trio.EndOfChannel`."""
        if self._closed:
            raise trio.ClosedResourceError("this receiver was closed")
        if self._queue:
            return self._queue.popleft()
        if self._ended:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def receive(self) -> T:
        """Wait for the next item."""
        return await receive_parked(self.receive_nowait, self._lot)

    def close(self) -> None:
        """Unsubscribe; further receives raise `trio.ClosedResourceError`."""
        if not self._closed:
            self._closed = True
            self._queue.clear()
            self._owner._receivers.discard(self)
            self._lot.unpark_all()

    async def aclose(self) -> None:
        """Unsubscribe (see `close`)."""
        self.close()
        await trio.lowlevel.checkpoint()

    def __enter__(self) -> Receiver[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def statistics(self) -> ReceiverStatistics:
        """Queue length now, its peak, and how many items were coalesced away."""
        return ReceiverStatistics(
            queued=len(self._queue), peak=self._peak, coalesced=self._coalesced
        )


async def receive_parked(receive_nowait: Callable[[], T], lot: trio.lowlevel.ParkingLot) -> T:
    """The `receive` of a channel built on `receive_nowait` and a parking lot.

    A full checkpoint, like trio's own channels: cancellation is checked first (nothing
    is taken then), and an item that was taken is always returned.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    while True:
        try:
            item = receive_nowait()
        except trio.WouldBlock:
            await lot.park()
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return item


@final
class Broadcast(Generic[T]):
    """One sender, many `Receiver` s."""

    def __init__(self, key: Callable[[T], Hashable], limit: int) -> None:
        self._key = key
        self._limit = limit
        self._receivers: set[Receiver[T]] = set()
        self._ended = False
        self.published = 0

    def subscribe(self, accept: Callable[[T], bool], initial: Iterable[T] = ()) -> Receiver[T]:
        """A new receiver of the items `accept` admits, starting with `initial`."""
        receiver = Receiver(self, accept, self._key, self._limit)
        for item in initial:
            receiver._put(item)
        if self._ended:
            receiver._end()
        else:
            self._receivers.add(receiver)
        return receiver

    def publish(self, item: T) -> None:
        """Queue `item` for every receiver that admits it; never blocks."""
        self.published += 1
        for receiver in self._receivers:
            receiver._put(item)

    def end(self) -> None:
        """No more items: receivers drain their queues, then see `trio.EndOfChannel`."""
        self._ended = True
        for receiver in self._receivers:
            receiver._end()

    @property
    def receivers(self) -> frozenset[Receiver[T]]:
        """The live receivers."""
        return frozenset(self._receivers)
