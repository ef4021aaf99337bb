"""The coalescing fan-out: every receiver gets its own queue, slow ones lose only history.

Items are ``Item(id, seq)``; the broadcast coalesces by ``id``. Queues are inspected
with `receive_nowait` (sync) wherever that is enough; the tests that need a task parked
in `receive()` run under a trio-time bound.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pytest
import trio
import trio.testing

from trio_dispatch._broadcast import Broadcast, Receiver, ReceiverStatistics


@dataclass(frozen=True)
class Item:
    id: int
    seq: int


def key(item: Item) -> int:
    return item.id


def everything(item: Item) -> bool:
    return True


def make(limit: int = 4) -> Broadcast[Item]:
    return Broadcast(key, limit)


def drain(rx: Receiver[Item]) -> list[tuple[int, int]]:
    """Everything queued now, as ``(id, seq)``."""
    out: list[tuple[int, int]] = []
    while True:
        try:
            item = rx.receive_nowait()
        except trio.WouldBlock:
            return out
        out.append((item.id, item.seq))


def publish_ids(b: Broadcast[Item], ids: Iterable[int], first_seq: int = 0) -> list[Item]:
    items = [Item(i, seq) for seq, i in enumerate(ids, start=first_seq)]
    for item in items:
        b.publish(item)
    return items


# -- delivery -------------------------------------------------------------------------------


def test_only_items_published_after_subscribing_are_delivered() -> None:
    b = make()
    b.publish(Item(1, 0))
    rx = b.subscribe(everything)
    with pytest.raises(trio.WouldBlock):
        rx.receive_nowait()
    b.publish(Item(1, 1))
    b.publish(Item(2, 2))
    assert drain(rx) == [(1, 1), (2, 2)]
    assert b.published == 3
    assert b.receivers == frozenset({rx})


def test_every_receiver_gets_every_item() -> None:
    b = make()
    one, two = b.subscribe(everything), b.subscribe(everything)
    publish_ids(b, [1, 2, 3])
    assert drain(one) == drain(two) == [(1, 0), (2, 1), (3, 2)]


def test_accept_filters_per_receiver() -> None:
    b = make()
    odd = b.subscribe(lambda item: item.id % 2 == 1)
    even = b.subscribe(lambda item: item.id % 2 == 0)
    publish_ids(b, [1, 2, 3, 4, 5])
    assert drain(odd) == [(1, 0), (3, 2), (5, 4)]
    assert drain(even) == [(2, 1), (4, 3)]


def test_initial_items_come_first_and_only_to_the_new_receiver() -> None:
    b = make()
    old = b.subscribe(everything)
    new = b.subscribe(lambda item: item.id != 3, initial=[Item(7, -2), Item(3, -1)])
    publish_ids(b, [1, 2])
    assert drain(new) == [(7, -2), (1, 0), (2, 1)]  # the filter applies to them too
    assert drain(old) == [(1, 0), (2, 1)]


# -- a receiver that never reads ----------------------------------------------------------


def test_full_queue_keeps_only_the_latest_item_per_id() -> None:
    b = make(limit=4)
    rx = b.subscribe(everything)
    publish_ids(b, [1, 2, 1, 3, 1, 4, 5])
    assert rx.statistics() == ReceiverStatistics(queued=5, peak=5, coalesced=2)
    # The latest item per id, in the order of those latest items.
    assert drain(rx) == [(2, 1), (3, 3), (1, 4), (4, 5), (5, 6)]
    assert rx.statistics() == ReceiverStatistics(queued=0, peak=5, coalesced=2)


def test_queue_under_the_limit_keeps_everything() -> None:
    b = make(limit=4)
    rx = b.subscribe(everything)
    publish_ids(b, [1, 1, 1, 1])
    assert rx.statistics() == ReceiverStatistics(queued=4, peak=4, coalesced=0)
    assert drain(rx) == [(1, 0), (1, 1), (1, 2), (1, 3)]


def test_coalescing_one_receiver_does_not_touch_another() -> None:
    b = make(limit=2)
    slow, fast = b.subscribe(everything), b.subscribe(everything)
    seen: list[tuple[int, int]] = []
    for seq, i in enumerate([1, 1, 1, 2, 2, 1, 3, 3]):
        b.publish(Item(i, seq))
        seen += drain(fast)
    assert seen == [(1, 0), (1, 1), (1, 2), (2, 3), (2, 4), (1, 5), (3, 6), (3, 7)]
    assert fast.statistics() == ReceiverStatistics(queued=0, peak=1, coalesced=0)
    # `slow` missed history, but not the latest state of any id.
    assert slow.statistics() == ReceiverStatistics(queued=3, peak=4, coalesced=5)
    assert drain(slow) == [(2, 4), (1, 5), (3, 7)]


def test_a_reader_that_keeps_up_sees_every_item() -> None:
    b = make(limit=2)
    rx = b.subscribe(everything)
    seen: list[tuple[int, int]] = []
    for seq in range(1000):
        b.publish(Item(seq % 3, seq))
        if seq % 2:  # reading every other item: two queued at most, the limit
            seen += drain(rx)
    assert seen == [(seq % 3, seq) for seq in range(1000)]
    assert rx.statistics() == ReceiverStatistics(queued=0, peak=2, coalesced=0)


def test_memory_is_bounded_by_the_number_of_ids() -> None:
    b = make(limit=4)
    rx = b.subscribe(everything)
    n, ids = 100_000, 10
    for seq in range(n):
        b.publish(Item(seq % ids, seq))
    stats = rx.statistics()
    assert stats.queued <= 2 * ids
    assert stats.peak <= 2 * ids
    assert stats.coalesced == n - stats.queued
    items = drain(rx)
    # Nothing is reordered, and the last word of every id is there, last.
    assert items == sorted(items, key=lambda item: item[1])
    assert items[-ids:] == [(seq % ids, seq) for seq in range(n - ids, n)]


def test_many_distinct_ids_are_all_kept() -> None:
    b = make(limit=4)
    rx = b.subscribe(everything)
    publish_ids(b, range(50))
    publish_ids(b, range(50), first_seq=50)
    items = drain(rx)
    # Never fewer than one item per id: the latest of each, in order.
    assert items[-50:] == [(i, 50 + i) for i in range(50)]
    assert len(items) <= 100
    assert rx.statistics().coalesced == 100 - len(items)


# -- end, close -----------------------------------------------------------------------------


def test_end_drains_then_end_of_channel() -> None:
    b = make()
    rx = b.subscribe(everything)
    publish_ids(b, [1, 2])
    b.end()
    assert drain_until_end(rx) == [(1, 0), (2, 1)]
    with pytest.raises(trio.EndOfChannel):
        rx.receive_nowait()


def drain_until_end(rx: Receiver[Item]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    while True:
        try:
            item = rx.receive_nowait()
        except trio.EndOfChannel:
            return out
        out.append((item.id, item.seq))


def test_subscribe_after_end_gets_initial_then_end_of_channel() -> None:
    b = make()
    b.end()
    rx = b.subscribe(everything, initial=[Item(1, 0)])
    assert drain_until_end(rx) == [(1, 0)]
    assert rx not in b.receivers


def test_close_unsubscribes_and_later_receives_fail() -> None:
    b = make()
    rx = b.subscribe(everything)
    other = b.subscribe(everything)
    publish_ids(b, [1])
    rx.close()
    rx.close()  # idempotent
    assert b.receivers == frozenset({other})
    publish_ids(b, [2, 3], first_seq=1)
    assert rx.statistics().queued == 0
    with pytest.raises(trio.ClosedResourceError):
        rx.receive_nowait()
    assert drain(other) == [(1, 0), (2, 1), (3, 2)]


def test_with_closes_the_receiver() -> None:
    b = make()
    with b.subscribe(everything) as rx:
        assert b.receivers == frozenset({rx})
    assert b.receivers == frozenset()
    with pytest.raises(trio.ClosedResourceError):
        rx.receive_nowait()


async def test_receive_after_close_raises_closed_resource_error() -> None:
    b = make()
    rx = b.subscribe(everything)
    publish_ids(b, [1])
    await rx.aclose()
    assert b.receivers == frozenset()
    with trio.fail_after(5), pytest.raises(trio.ClosedResourceError):
        await rx.receive()


async def test_async_for_ends_at_end_of_channel() -> None:
    b = make()
    rx = b.subscribe(everything, initial=[Item(9, -1)])
    publish_ids(b, [1, 2])
    b.end()
    seen = []
    with trio.fail_after(5):
        async for item in rx:
            seen.append((item.id, item.seq))
    assert seen == [(9, -1), (1, 0), (2, 1)]
    with pytest.raises(trio.EndOfChannel):
        await rx.receive()


async def test_parked_receiver_is_woken_by_publish_and_by_end() -> None:
    b = make()
    rx = b.subscribe(everything)
    seen: list[tuple[int, int]] = []

    async def consume() -> None:
        async for item in rx:
            seen.append((item.id, item.seq))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            for seq in range(100):
                await trio.testing.wait_all_tasks_blocked()
                b.publish(Item(seq % 3, seq))
            await trio.testing.wait_all_tasks_blocked()
            b.end()
    assert seen == [(seq % 3, seq) for seq in range(100)]
    assert rx.statistics() == ReceiverStatistics(queued=0, peak=1, coalesced=0)


async def test_close_wakes_a_parked_receiver_with_closed_resource_error() -> None:
    b = make()
    rx = b.subscribe(everything)

    async def consume() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await rx.receive()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            rx.close()


# -- receive() is a trio checkpoint ---------------------------------------------------------


async def test_receive_is_a_checkpoint_even_with_an_item_queued() -> None:
    b = make()
    rx = b.subscribe(everything)
    publish_ids(b, [1, 2])
    with trio.testing.assert_checkpoints():
        item = await rx.receive()
    assert item == Item(1, 0)


async def test_receive_cancelled_beforehand_raises_and_keeps_the_item() -> None:
    b = make()
    rx = b.subscribe(everything)
    publish_ids(b, [1])
    with trio.move_on_after(0) as scope:
        await rx.receive()
    assert scope.cancelled_caught
    assert drain(rx) == [(1, 0)]


async def test_receive_cancelled_while_waiting_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    b = make()
    rx = b.subscribe(everything)
    with trio.fail_after(100):
        with trio.move_on_after(10) as scope:
            await rx.receive()
        assert scope.cancelled_caught
        assert trio.current_time() == 10
        publish_ids(b, [1])
        assert await rx.receive() == Item(1, 0)
