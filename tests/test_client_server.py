"""The real client against the real embedded server, over loopback, on virtual time.

Every test runs under pytest-trio's ``autojump_clock``; server and client share one
`WallClock`, so ``await trio.sleep(60)`` moves the server's "now" by exactly a minute
and every server-set time below is an exact value. A few tests use a scripted grpclib
service instead of the real server, to send what the real one never would (invalid
dispatches, unknown events, a reply that never comes).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpclib.const
import grpclib.exceptions
import grpclib.server
import pytest
import trio
import trio_asyncio
import trustme

from trio_dispatch import (
    BatteryType,
    ComponentCategory,
    Dispatch,
    DispatchApiError,
    DispatchConnectionError,
    EndCriteria,
    EvChargerType,
    Frequency,
    InvalidDispatchError,
    InverterType,
    RecurrenceRule,
    TargetCategories,
    TargetCategory,
    TargetIds,
    Weekday,
)
from trio_dispatch._client import (
    DispatchClient,
    DispatchPage,
    SortField,
    SortOrder,
    StreamEvent,
    StreamItem,
    open_client,
)
from trio_dispatch._convert import dispatch_to_proto
from trio_dispatch._proto.frequenz.api.common.v1alpha8 import pagination as pb_page
from trio_dispatch._proto.frequenz.api.common.v1alpha8 import streaming as pb_streaming
from trio_dispatch._proto.frequenz.api.dispatch import v1 as pb
from trio_dispatch._transport import asyncio_loop
from trio_dispatch.server._keys import KeyRing
from trio_dispatch.server._serve import RunningServer, open_dispatch_server, serve_dispatch_api
from trio_dispatch.server._service import DispatchService
from trio_dispatch.testing import DEFAULT_EPOCH, WallClock

EPOCH = DEFAULT_EPOCH  # what the shared WallClock shows when the test starts
LIMIT = 600  # virtual seconds each test may take
HOUR = timedelta(hours=1)
MAX_ID = 2**64 - 1

ClientFactory = Callable[..., Any]


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A UTC time in January 2030."""
    return datetime(2030, 1, day, hour, minute, tzinfo=UTC)


def since_epoch(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


async def collect(listing: Any) -> list[Dispatch]:
    return [dispatch async for dispatch in listing]


async def ids_of(listing: Any) -> list[int]:
    return [dispatch.id for dispatch in await collect(listing)]


async def eventually(predicate: Callable[[], bool]) -> None:
    """Wait (in virtual time) until `predicate` holds; the test's limit bounds it."""
    # Server state lives on the asyncio side, with no trio event to wait on: poll it.
    while not predicate():  # noqa: ASYNC110
        await trio.sleep(0.001)


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- create / get / update / delete -------------------------------------------------------


async def test_create_with_every_field(autojump_clock: Any, client: DispatchClient) -> None:
    with trio.fail_after(LIMIT):
        await trio.sleep(90)
        target = TargetCategories.of(
            TargetCategory(category=ComponentCategory.BATTERY, type=BatteryType.LI_ION),
            TargetCategory(category=ComponentCategory.INVERTER, type=InverterType.PV),
            ComponentCategory.EV_CHARGER,
        )
        payload = {
            "power_w": 5000,
            "mode": "peak",
            "limits": {"soc": [10, 90.5], "enabled": True, "note": None, "nested": {"x": []}},
        }
        rule = RecurrenceRule(
            frequency=Frequency.DAILY, byhours=(8, 20), end_criteria=EndCriteria(count=3)
        )
        created = await client.create(
            1,
            type="BATTERY_PEAK_SHAVING",
            start_time=at(2, 8),
            duration=timedelta(minutes=15),
            target=target,
            active=True,
            dry_run=True,
            payload=payload,
            recurrence=rule,
        )
        expected = Dispatch(
            id=1,
            type="BATTERY_PEAK_SHAVING",
            start_time=at(2, 8),
            duration=timedelta(minutes=15),
            target=target,
            active=True,
            dry_run=True,
            payload=payload,
            recurrence=rule,
            create_time=since_epoch(90),
            update_time=since_epoch(90),
            # Runs at 2nd 08:00, 2nd 20:00 and 3rd 08:00; the last ends 15 minutes later.
            end_time=at(3, 8, 15),
        )
        assert created == expected
        # Numbers come back as floats (a protobuf Struct holds doubles).
        assert type(created.payload["power_w"]) is float
        assert created.payload["limits"]["soc"] == [10.0, 90.5]
        assert await client.get(1, 1) == expected


async def test_create_minimal_defaults(autojump_clock: Any, client: DispatchClient) -> None:
    with trio.fail_after(LIMIT):
        created = await client.create(1, type="T", start_time=at(2), duration=None)
        assert created == Dispatch(
            id=1,
            type="T",
            start_time=at(2),
            duration=None,
            target=TargetIds(ids=frozenset()),
            active=True,
            dry_run=False,
            payload={},
            recurrence=None,
            create_time=EPOCH,
            update_time=EPOCH,
            end_time=None,
        )


async def test_create_now_starts_at_server_now(
    autojump_clock: Any, client: DispatchClient, wall_clock: WallClock
) -> None:
    with trio.fail_after(LIMIT):
        await trio.sleep(123.25)
        assert wall_clock() == since_epoch(123.25)
        created = await client.create(
            1, type="DEMO", start_time="now", duration=timedelta(minutes=5)
        )
        assert created.start_time == since_epoch(123.25)
        assert created.create_time == created.update_time == since_epoch(123.25)
        assert created.end_time == since_epoch(123.25 + 300)
        # A start exactly at "now" is not in the past.
        exact = await client.create(1, type="DEMO", start_time=wall_clock(), duration=None)
        assert exact.start_time == since_epoch(123.25)


async def test_ids_are_unique_across_microgrids(
    autojump_clock: Any, client: DispatchClient
) -> None:
    with trio.fail_after(LIMIT):
        first = await client.create(1, type="A", start_time=at(2), duration=None)
        second = await client.create(2, type="B", start_time=at(2), duration=None)
        big = await client.create(MAX_ID, type="C", start_time=at(2), duration=None)
        assert (first.id, second.id, big.id) == (1, 2, 3)
        assert await client.get(MAX_ID, 3) == big
        with pytest.raises(DispatchApiError) as info:
            await client.get(2, first.id)
        assert (info.value.status, info.value.message) == (
            "NOT_FOUND",
            "dispatch 1 not found in microgrid 2",
        )


async def test_update_each_kind(autojump_clock: Any, client: DispatchClient) -> None:
    with trio.fail_after(LIMIT):
        expected = await client.create(
            1,
            type="T",
            start_time=at(2, 8),
            duration=HOUR,
            target=TargetIds.of(1),
            payload={"a": 1},
            recurrence=RecurrenceRule(frequency=Frequency.DAILY, end_criteria=EndCriteria(count=5)),
        )
        assert (expected.create_time, expected.update_time) == (EPOCH, EPOCH)
        assert expected.end_time == at(6, 9)
        weekly = RecurrenceRule(frequency=Frequency.WEEKLY, end_criteria=EndCriteria(count=2))
        hybrid = TargetCategories.of(
            TargetCategory(category=ComponentCategory.INVERTER, type=InverterType.HYBRID)
        )
        steps: list[tuple[dict[str, Any], dict[str, Any]]] = [
            ({"start_time": at(3, 8)}, {"start_time": at(3, 8), "end_time": at(7, 9)}),
            ({"duration": None}, {"duration": None, "end_time": None}),
            (
                {"duration": timedelta(minutes=30)},
                {"duration": timedelta(minutes=30), "end_time": at(7, 8, 30)},
            ),
            ({"target": hybrid}, {"target": hybrid}),
            # The end describes the schedule: pausing keeps it.
            ({"active": False}, {"active": False, "end_time": at(7, 8, 30)}),
            ({"active": True}, {"active": True}),
            (
                {"payload": {"mode": "eco", "levels": [1, 2]}},
                {"payload": {"mode": "eco", "levels": [1.0, 2.0]}},
            ),
            ({"recurrence": weekly}, {"recurrence": weekly, "end_time": at(10, 8, 30)}),
            (
                {"interval": 2},
                {"recurrence": replace(weekly, interval=2), "end_time": at(17, 8, 30)},
            ),
            (
                {"byhours": [20, 8]},
                {
                    "recurrence": replace(weekly, interval=2, byhours=(8, 20)),
                    "end_time": at(3, 20, 30),
                },
            ),
            (
                {"end_criteria": None},
                {
                    "recurrence": replace(weekly, interval=2, byhours=(8, 20), end_criteria=None),
                    "end_time": None,
                },
            ),
            (
                {"end_criteria": EndCriteria(until=at(20))},
                {
                    "recurrence": replace(
                        weekly, interval=2, byhours=(8, 20), end_criteria=EndCriteria(until=at(20))
                    ),
                    "end_time": at(17, 20, 30),
                },
            ),
            (
                {"frequency": Frequency.DAILY, "byweekdays": [Weekday.THURSDAY]},
                {
                    # 2030-01-03 is a Thursday: every other day, on Thursdays only.
                    "recurrence": RecurrenceRule(
                        frequency=Frequency.DAILY,
                        interval=2,
                        byhours=(8, 20),
                        byweekdays=(Weekday.THURSDAY,),
                        end_criteria=EndCriteria(until=at(20)),
                    ),
                    "end_time": at(17, 20, 30),
                },
            ),
            ({"recurrence": None}, {"recurrence": None, "end_time": at(3, 8, 30)}),
        ]
        for n, (arguments, changes) in enumerate(steps, start=1):
            await trio.sleep(10)
            expected = replace(expected, **changes, update_time=since_epoch(10 * n))
            updated = await client.update(1, expected.id, **arguments)
            assert updated == expected, arguments
            assert updated.create_time == EPOCH
            assert await client.get(1, expected.id) == expected


async def test_update_rejected_by_the_server(autojump_clock: Any, client: DispatchClient) -> None:
    with trio.fail_after(LIMIT):
        rule = RecurrenceRule(frequency=Frequency.DAILY, end_criteria=EndCriteria(until=at(10)))
        created = await client.create(1, type="T", start_time=at(2), duration=HOUR, recurrence=rule)
        with pytest.raises(DispatchApiError) as info:
            await client.update(1, created.id, start_time=at(11))
        assert info.value.status == "INVALID_ARGUMENT"
        assert info.value.message == (
            "recurrence.end_criteria.until must be after start_time "
            "2030-01-11T00:00:00+00:00, got 2030-01-10T00:00:00+00:00"
        )
        assert str(info.value) == f"INVALID_ARGUMENT: {info.value.message}"
        assert isinstance(info.value.__cause__, grpclib.exceptions.GRPCError)
        assert await client.get(1, created.id) == created


async def test_delete(autojump_clock: Any, client: DispatchClient) -> None:
    with trio.fail_after(LIMIT):
        created = await client.create(7, type="T", start_time=at(2), duration=None)
        kept = await client.create(7, type="U", start_time=at(2), duration=None)
        assert await client.delete(7, created.id) is None
        for call in (
            lambda: client.get(7, created.id),
            lambda: client.delete(7, created.id),
            lambda: client.update(7, created.id, active=False),
        ):
            with pytest.raises(DispatchApiError) as info:
                await call()
            assert info.value.status == "NOT_FOUND"
            assert info.value.message == "dispatch 1 not found in microgrid 7"
            assert str(info.value) == "NOT_FOUND: dispatch 1 not found in microgrid 7"
        assert await collect(client.list(7)) == [kept]


# -- list ----------------------------------------------------------------------------------


async def make_dataset(client: DispatchClient) -> dict[str, Dispatch]:
    """Five dispatches created 10 s apart (ids 1..5), then A updated at +50 s.

    ====  ======================  ===========  =====  ======  ======  =========  =========
    name  type                    start        end    active  dry     recurring  updated
    ====  ======================  ===========  =====  ======  ======  =========  =========
    A     BATTERY_PEAK_SHAVING    2nd 08:00    09:00  yes     no      no         +50 s
    B     EV_CHARGING             3rd 00:00    none   yes     yes     daily      +10 s
    C     battery_balance         1st 12:00    15:30  no      no      hourly x4  +20 s
    D     PV_CURTAIL              5th 00:00    02:00  yes     yes     no (rule)  +30 s
    E     EV_CHARGING             4th 00:00    01:00  yes     no      no         +40 s
    ====  ======================  ===========  =====  ======  ======  =========  =========
    """
    made: dict[str, Dispatch] = {}
    made["A"] = await client.create(
        1,
        type="BATTERY_PEAK_SHAVING",
        start_time=at(2, 8),
        duration=HOUR,
        target=TargetIds.of(1, 2),
    )
    await trio.sleep(10)
    made["B"] = await client.create(
        1,
        type="EV_CHARGING",
        start_time=at(3),
        duration=None,
        target=TargetCategories.of(
            TargetCategory(category=ComponentCategory.EV_CHARGER, type=EvChargerType.AC)
        ),
        dry_run=True,
        recurrence=RecurrenceRule(frequency=Frequency.DAILY),
    )
    await trio.sleep(10)
    made["C"] = await client.create(
        1,
        type="battery_balance",
        start_time=at(1, 12),
        duration=timedelta(minutes=30),
        target=TargetCategories.of(ComponentCategory.BATTERY),
        active=False,
        recurrence=RecurrenceRule(frequency=Frequency.HOURLY, end_criteria=EndCriteria(count=4)),
    )
    await trio.sleep(10)
    made["D"] = await client.create(
        1,
        type="PV_CURTAIL",
        start_time=at(5),
        duration=2 * HOUR,
        target=TargetIds.of(2, 3),
        dry_run=True,
        recurrence=RecurrenceRule(),
    )
    await trio.sleep(10)
    made["E"] = await client.create(
        1,
        type="EV_CHARGING",
        start_time=at(4),
        duration=HOUR,
        target=TargetCategories.of(
            TargetCategory(category=ComponentCategory.BATTERY, type=BatteryType.LI_ION),
            TargetCategory(category=ComponentCategory.INVERTER, type=InverterType.PV),
        ),
    )
    await trio.sleep(10)
    made["A"] = await client.update(1, made["A"].id, payload={"v": 2})
    # Another microgrid, which no listing of microgrid 1 may show.
    await client.create(2, type="EV_CHARGING", start_time=at(3), duration=None)
    assert [made[name].id for name in "ABCDE"] == [1, 2, 3, 4, 5]
    assert [made[name].end_time for name in "ABCDE"] == [
        at(2, 9),
        None,
        at(1, 15, 30),
        at(5, 2),
        at(4, 1),
    ]
    assert [made[name].update_time for name in "ABCDE"] == [
        since_epoch(50),
        since_epoch(10),
        since_epoch(20),
        since_epoch(30),
        since_epoch(40),
    ]
    return made


BATTERY = ComponentCategory.BATTERY
LI_ION = TargetCategory(category=ComponentCategory.BATTERY, type=BatteryType.LI_ION)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, "EDCBA"),
        ({"targets": [TargetIds.of(2)]}, "DA"),
        ({"targets": [TargetIds.of(9)]}, ""),
        # A category without subtype matches every subtype, and none.
        ({"targets": [TargetCategories.of(BATTERY)]}, "EC"),
        # A category with a subtype matches exactly that.
        ({"targets": [TargetCategories.of(LI_ION)]}, "E"),
        ({"targets": [TargetIds.of(1), TargetCategories.of(ComponentCategory.EV_CHARGER)]}, "BA"),
        ({"active": True}, "EDBA"),
        ({"active": False}, "C"),
        ({"dry_run": True}, "DB"),
        ({"dry_run": False}, "ECA"),
        ({"recurring": True}, "CB"),
        ({"recurring": False}, "EDA"),
        ({"active": True, "dry_run": True}, "DB"),
        ({"start_from": at(3), "start_to": at(5)}, "EB"),
        ({"start_from": at(5)}, "D"),
        ({"start_to": at(2, 8)}, "C"),
        # Unbounded dispatches lie only in intervals without an upper bound.
        ({"end_from": at(2, 9)}, "EDBA"),
        ({"end_to": at(4, 1)}, "CA"),
        ({"end_from": at(1), "end_to": at(9)}, "EDCA"),
        ({"update_from": since_epoch(40)}, "EA"),
        ({"update_to": since_epoch(20)}, "B"),
        ({"update_from": since_epoch(20), "update_to": since_epoch(40)}, "DC"),
        ({"dispatch_ids": [1, 3, 999]}, "CA"),
        ({"queries": ["#3"]}, "C"),
        ({"queries": ["ev_"]}, "EB"),
        ({"queries": ["Battery"]}, "CA"),
        ({"queries": ["#2", "curtail"]}, "DB"),
        ({"queries": ["#abc"]}, ""),
        ({"queries": ["#6"]}, ""),
        ({"queries": ["charging"], "dispatch_ids": [5], "active": True}, "E"),
    ],
)
async def test_list_filters(
    autojump_clock: Any, client: DispatchClient, filters: dict[str, Any], expected: str
) -> None:
    with trio.fail_after(LIMIT):
        made = await make_dataset(client)
        assert await collect(client.list(1, **filters)) == [made[name] for name in expected]


@pytest.mark.parametrize(
    ("sort_by", "sort_order", "expected"),
    [
        (SortField.CREATE_TIME, SortOrder.DESCENDING, "EDCBA"),
        (SortField.CREATE_TIME, SortOrder.ASCENDING, "ABCDE"),
        (SortField.START_TIME, SortOrder.ASCENDING, "CABED"),
        (SortField.START_TIME, SortOrder.DESCENDING, "DEBAC"),
        (SortField.UPDATE_TIME, SortOrder.ASCENDING, "BCDEA"),
        (SortField.UPDATE_TIME, SortOrder.DESCENDING, "AEDCB"),
    ],
)
async def test_list_sort(
    autojump_clock: Any,
    client: DispatchClient,
    sort_by: SortField,
    sort_order: SortOrder,
    expected: str,
) -> None:
    with trio.fail_after(LIMIT):
        made = await make_dataset(client)
        for page_size in (1000, 2):  # the order holds across pages too
            listing = client.list(1, sort_by=sort_by, sort_order=sort_order, page_size=page_size)
            assert await ids_of(listing) == [made[name].id for name in expected]


async def test_list_small_pages(autojump_clock: Any, client: DispatchClient) -> None:
    with trio.fail_after(LIMIT):
        made = await make_dataset(client)
        listing = client.list(1, page_size=2)
        pages = [page async for page in listing.pages()]
        assert [[d.id for d in page.dispatches] for page in pages] == [[5, 4], [3, 2], [1]]
        assert [page.total for page in pages] == [5, 5, 5]
        assert [page.next_page_token is None for page in pages] == [False, False, True]
        assert pages[2] == DispatchPage(dispatches=(made["A"],), total=5, next_page_token=None)
        # Each iteration starts afresh.
        assert await ids_of(listing) == [5, 4, 3, 2, 1]
        assert await ids_of(listing) == [5, 4, 3, 2, 1]
        empty = [page async for page in client.list(3).pages()]
        assert empty == [DispatchPage(dispatches=(), total=0, next_page_token=None)]


async def test_list_pagination_2500(
    autojump_clock: Any, services: list[DispatchService], client: DispatchClient
) -> None:
    with trio.fail_after(LIMIT):
        # 2,500 create RPCs cost about 10 s of CPU (protobuf on both ends), so fill the
        # running server's own store directly; the listing below goes over the wire.
        (service,) = services
        created_at: dict[int, datetime] = {}
        for n in range(2500):
            data = pb.DispatchData(type=f"T{n % 7}", start_time=at(2), is_active=True)
            now = since_epoch(n % 10)  # ten create times, interleaved with the ids
            stored = service._store.create(1, data, start_immediately=False, now=now)
            created_at[stored.id] = now
        assert sorted(created_at) == list(range(1, 2501))
        newest_first = sorted(created_at, key=lambda i: (created_at[i], i), reverse=True)

        listing = client.list(1, page_size=1000)
        pages = [page async for page in listing.pages()]
        assert [len(page.dispatches) for page in pages] == [1000, 1000, 500]
        assert [page.total for page in pages] == [2500, 2500, 2500]
        assert [page.next_page_token is None for page in pages] == [False, False, True]
        assert [d.id for page in pages for d in page.dispatches] == newest_first
        # Iterating fetches the pages transparently, in the default order (create time,
        # newest first; ties broken by id, also descending).
        assert await ids_of(listing) == newest_first
        assert await ids_of(client.list(1)) == newest_first
        ascending = client.list(1, sort_order=SortOrder.ASCENDING, page_size=1000)
        assert await ids_of(ascending) == newest_first[::-1]
        # Filters hold across pages too.
        filtered = client.list(1, page_size=100, queries=["t3"])
        assert await ids_of(filtered) == [i for i in newest_first if (i - 1) % 7 == 3]
        assert [page.total async for page in filtered.pages()] == [357, 357, 357, 357]


# -- arguments are checked before anything is sent ----------------------------------------

NAIVE = datetime(2030, 1, 2)  # noqa: DTZ001 (the point of the test)

Call = Callable[[DispatchClient], Awaitable[Any]]


async def _list_all(client: DispatchClient, **kwargs: Any) -> Any:
    return await collect(client.list(1, **kwargs))


async def _stream(client: DispatchClient, microgrid_id: int) -> None:
    async with client.stream(microgrid_id):
        pass


ARGUMENT_ERRORS: list[tuple[str, Call, type[Exception], str]] = [
    (
        "naive start_time",
        lambda c: c.create(1, type="T", start_time=NAIVE, duration=None),
        ValueError,
        "start_time must be timezone-aware, got naive 2030-01-02T00:00:00",
    ),
    (
        "past start_time",
        lambda c: c.create(1, type="T", start_time=EPOCH - timedelta(seconds=1), duration=None),
        ValueError,
        "start_time must not be in the past, got 2029-12-31T23:59:59+00:00 "
        "(now is 2030-01-01T00:00:00+00:00)",
    ),
    (
        "start_time 'later'",
        lambda c: c.create(1, type="T", start_time="later", duration=None),  # type: ignore[arg-type]
        ValueError,
        "start_time must be a datetime or 'now', got 'later'",
    ),
    (
        "start_time int",
        lambda c: c.create(1, type="T", start_time=1893456000, duration=None),  # type: ignore[arg-type]
        TypeError,
        "start_time must be a datetime, got 1893456000",
    ),
    (
        "empty type",
        lambda c: c.create(1, type="", start_time=at(2), duration=None),
        ValueError,
        "type must not be empty, got ''",
    ),
    (
        "blank type",
        lambda c: c.create(1, type="  ", start_time=at(2), duration=None),
        ValueError,
        "type must not be empty, got '  '",
    ),
    (
        "fractional duration",
        lambda c: c.create(1, type="T", start_time=at(2), duration=timedelta(milliseconds=1500)),
        ValueError,
        "duration must be a whole number of seconds >= 0, got "
        "datetime.timedelta(seconds=1, microseconds=500000)",
    ),
    (
        "negative duration",
        lambda c: c.create(1, type="T", start_time=at(2), duration=timedelta(seconds=-1)),
        ValueError,
        "duration must be a whole number of seconds >= 0, got "
        "datetime.timedelta(days=-1, seconds=86399)",
    ),
    (
        "int duration",
        lambda c: c.create(1, type="T", start_time=at(2), duration=60),  # type: ignore[arg-type]
        TypeError,
        "duration must be a timedelta or None, got 60",
    ),
    (
        "bad payload",
        lambda c: c.create(1, type="T", start_time=at(2), duration=None, payload={"x": {1, 2}}),
        TypeError,
        "payload.x has a value that is not JSON-like: {1, 2}",
    ),
    (
        "create microgrid -1",
        lambda c: c.create(-1, type="T", start_time=at(2), duration=None),
        ValueError,
        "microgrid_id must be in 0..18446744073709551615, got -1",
    ),
    (
        "get microgrid -1",
        lambda c: c.get(-1, 1),
        ValueError,
        "microgrid_id must be in 0..18446744073709551615, got -1",
    ),
    (
        "get dispatch -1",
        lambda c: c.get(1, -1),
        ValueError,
        "dispatch_id must be in 0..18446744073709551615, got -1",
    ),
    (
        "delete microgrid 2**64",
        lambda c: c.delete(2**64, 1),
        ValueError,
        "microgrid_id must be in 0..18446744073709551615, got 18446744073709551616",
    ),
    (
        "stream microgrid -1",
        lambda c: _stream(c, -1),
        ValueError,
        "microgrid_id must be in 0..18446744073709551615, got -1",
    ),
    (
        "update without fields",
        lambda c: c.update(1, 1),
        ValueError,
        "update needs at least one field to change",
    ),
    (
        "update recurrence and parts",
        lambda c: c.update(1, 1, recurrence=None, interval=2, byhours=[1]),
        ValueError,
        "recurrence and its parts ['byhours', 'interval'] cannot be updated together",
    ),
    (
        "update unknown keyword",
        lambda c: c.update(1, 1, type="X"),  # type: ignore[call-arg]
        TypeError,
        "DispatchClient.update() got an unexpected keyword argument 'type'",
    ),
    (
        "update past start_time",
        lambda c: c.update(1, 1, start_time=at(1) - HOUR),
        ValueError,
        "start_time must not be in the past, got 2029-12-31T23:00:00+00:00 "
        "(now is 2030-01-01T00:00:00+00:00)",
    ),
    (
        "update naive start_time",
        lambda c: c.update(1, 1, start_time=NAIVE),
        ValueError,
        "start_time must be timezone-aware, got naive 2030-01-02T00:00:00",
    ),
    (
        "update fractional duration",
        lambda c: c.update(1, 1, duration=timedelta(seconds=0.5)),
        ValueError,
        "duration must be a whole number of seconds >= 0, got "
        "datetime.timedelta(microseconds=500000)",
    ),
    (
        "update active not bool",
        lambda c: c.update(1, 1, active="yes"),  # type: ignore[arg-type]
        TypeError,
        "active must be a bool, got 'yes'",
    ),
    (
        "update interval 0",
        lambda c: c.update(1, 1, interval=0),
        ValueError,
        "interval must be in 1..4294967295, got 0",
    ),
    (
        "update byhours 24",
        lambda c: c.update(1, 1, byhours=[24]),
        ValueError,
        "byhours values must be 0..23, got 24",
    ),
    (
        "update target",
        lambda c: c.update(1, 1, target=[1, 2]),  # type: ignore[arg-type]
        TypeError,
        "target must be a TargetIds or TargetCategories, got [1, 2]",
    ),
    (
        "page_size 0",
        lambda c: _list_all(c, page_size=0),
        ValueError,
        "page_size must be in 1..1000, got 0",
    ),
    (
        "page_size 1001",
        lambda c: _list_all(c, page_size=1001),
        ValueError,
        "page_size must be in 1..1000, got 1001",
    ),
    (
        "bad target in list",
        lambda c: _list_all(c, targets=[TargetIds.of(1), 5]),
        TypeError,
        "targets must contain TargetIds or TargetCategories, got 5",
    ),
    (
        "list active not bool",
        lambda c: _list_all(c, active=1),
        TypeError,
        "active must be a bool or None, got 1",
    ),
    (
        "list interval backwards",
        lambda c: _list_all(c, start_from=at(2), start_to=at(1)),
        ValueError,
        "start_to must not be before start_from, got 2030-01-01 00:00:00+00:00 < "
        "2030-01-02 00:00:00+00:00",
    ),
    (
        "list naive bound",
        lambda c: _list_all(c, update_to=NAIVE),
        ValueError,
        "update_to must be timezone-aware, got naive 2030-01-02T00:00:00",
    ),
    (
        "list query not str",
        lambda c: _list_all(c, queries=["ok", 3]),
        TypeError,
        "queries must contain str, got 3",
    ),
    (
        "list sort field not SortField",
        lambda c: _list_all(c, sort_by=2),
        TypeError,
        "sort_by must be a SortField, got 2",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [pytest.param(call, error, message, id=name) for name, call, error, message in ARGUMENT_ERRORS],
)
async def test_argument_errors_before_sending(
    autojump_clock: Any,
    wall_clock: WallClock,
    call: Call,
    error: type[Exception],
    message: str,
) -> None:
    # Nobody listens on this port: anything sent would fail with DispatchConnectionError.
    url = f"grpc://127.0.0.1:{closed_port()}?ssl=false"
    with trio.fail_after(LIMIT):
        async with open_client(server_url=url, key="k", clock=wall_clock) as client:
            with pytest.raises(error) as info:
                await call(client)
            assert str(info.value) == message


def test_list_checks_arguments_when_called() -> None:
    # `list` is synchronous: it checks at once, and sends nothing until iterated.
    client = DispatchClient(
        None,  # type: ignore[arg-type]
        key="k",
        sign_secret=None,
        call_timeout=1.0,
        clock=lambda: EPOCH,
        on_invalid=lambda error: None,
    )
    with pytest.raises(ValueError, match=r"^page_size must be in 1\.\.1000, got 0$"):
        client.list(1, page_size=0)
    client.list(1, targets=[TargetIds.of(1)], queries=["x"])  # nothing sent yet


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"key": ""}, ValueError, "key must be a non-empty str, got ''"),
        ({"key": None}, ValueError, "key must be a non-empty str, got None"),
        ({"sign_secret": ""}, ValueError, "sign_secret must be a non-empty str or None"),
        (
            {"call_timeout": timedelta(0)},
            ValueError,
            "call_timeout must be a positive timedelta, got datetime.timedelta(0)",
        ),
        (
            {"call_timeout": 5},
            ValueError,
            "call_timeout must be a positive timedelta, got 5",
        ),
        (
            {"server_url": "http://127.0.0.1:1"},
            ValueError,
            "server_url scheme must be 'grpc', got 'http' in 'http://127.0.0.1:1'",
        ),
    ],
)
async def test_open_client_argument_errors(
    autojump_clock: Any, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    arguments = {"server_url": "grpc://127.0.0.1:1?ssl=false", "key": "k", **options}
    with trio.fail_after(LIMIT), pytest.raises(error) as info:
        async with open_client(**arguments):
            pass
    assert str(info.value) == message


# -- authentication ------------------------------------------------------------------------


async def test_wrong_key(autojump_clock: Any, connect: ClientFactory) -> None:
    with trio.fail_after(LIMIT):
        async with connect(key="nobody") as client:
            with pytest.raises(DispatchApiError) as info:
                await client.get(1, 1)
            assert (info.value.status, info.value.message) == (
                "UNAUTHENTICATED",
                "the API key is not valid",
            )
            with pytest.raises(DispatchApiError) as info:
                await collect(client.list(1))
            assert info.value.status == "UNAUTHENTICATED"
            with pytest.raises(DispatchApiError) as info:
                async with client.stream(1):
                    pytest.fail("the stream must not open")
            assert (info.value.status, info.value.message) == (
                "UNAUTHENTICATED",
                "the API key is not valid",
            )


async def test_key_without_the_microgrid(autojump_clock: Any, connect: ClientFactory) -> None:
    with trio.fail_after(LIMIT):
        async with connect(key="grid-7-key") as client:
            created = await client.create(7, type="T", start_time=at(2), duration=None)
            assert await client.get(7, created.id) == created
            with pytest.raises(DispatchApiError) as info:
                await client.get(8, created.id)
            assert (info.value.status, info.value.message) == (
                "PERMISSION_DENIED",
                "the API key does not grant access to microgrid 8",
            )
            with pytest.raises(DispatchApiError) as info:
                await client.create(8, type="T", start_time=at(2), duration=None)
            assert info.value.status == "PERMISSION_DENIED"
            with pytest.raises(DispatchApiError) as info:
                async with client.stream(8):
                    pytest.fail("the stream must not open")
            assert (info.value.status, info.value.message) == (
                "PERMISSION_DENIED",
                "the API key does not grant access to microgrid 8",
            )


async def test_signed_requests_all_rpcs(autojump_clock: Any, connect: ClientFactory) -> None:
    with trio.fail_after(LIMIT):
        async with (
            connect(key="signing-key", sign_secret="s3cret") as client,
            client.stream(1) as events,
        ):
            created = await client.create(1, type="T", start_time=at(2), duration=None)
            assert await client.get(1, created.id) == created
            await trio.sleep(5)
            updated = await client.update(1, created.id, duration=HOUR)
            assert updated.update_time == since_epoch(5)
            assert await collect(client.list(1)) == [updated]
            await client.delete(1, created.id)
            assert [await events.receive() for _ in range(3)] == [
                StreamItem(StreamEvent.CREATED, created),
                StreamItem(StreamEvent.UPDATED, updated),
                StreamItem(StreamEvent.DELETED, updated),
            ]


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (None, "this key requires signed requests (ts, nonce, sig)"),
        ("wrong", "the request signature is not valid"),
    ],
)
async def test_signing_key_needs_the_right_secret(
    autojump_clock: Any, connect: ClientFactory, secret: str | None, message: str
) -> None:
    with trio.fail_after(LIMIT):
        async with connect(key="signing-key", sign_secret=secret) as client:
            with pytest.raises(DispatchApiError) as info:
                await client.create(1, type="T", start_time=at(2), duration=None)
            assert (info.value.status, info.value.message) == ("UNAUTHENTICATED", message)
            with pytest.raises(DispatchApiError) as info:
                async with client.stream(1):
                    pytest.fail("the stream must not open")
            assert (info.value.status, info.value.message) == ("UNAUTHENTICATED", message)


async def test_signing_client_clock_too_far_ahead(
    autojump_clock: Any, connect: ClientFactory
) -> None:
    with trio.fail_after(LIMIT):
        ahead = WallClock(EPOCH + timedelta(minutes=10))
        async with connect(key="signing-key", sign_secret="s3cret", clock=ahead) as client:
            with pytest.raises(DispatchApiError) as info:
                await client.get(1, 1)
            assert (info.value.status, info.value.message) == (
                "UNAUTHENTICATED",
                "'ts' is 600 s away from the server's clock (at most 300 s allowed)",
            )


# -- stream --------------------------------------------------------------------------------


async def test_stream_events_in_commit_order(autojump_clock: Any, client: DispatchClient) -> None:
    with trio.fail_after(LIMIT):
        async with client.stream(1) as events:
            a = await client.create(1, type="A", start_time=at(2), duration=HOUR)
            await client.create(2, type="other microgrid", start_time=at(2), duration=None)
            await trio.sleep(1)
            a2 = await client.update(1, a.id, active=False)
            b = await client.create(
                1, type="B", start_time="now", duration=None, payload={"k": [1, {"z": None}]}
            )
            await client.delete(1, a.id)
            received = [await events.receive() for _ in range(4)]
            assert received == [
                StreamItem(StreamEvent.CREATED, a),
                StreamItem(StreamEvent.UPDATED, a2),
                StreamItem(StreamEvent.CREATED, b),
                StreamItem(StreamEvent.DELETED, a2),
            ]
            event, dispatch = received[2]  # unpacks as (event, dispatch)
            assert (event, dispatch.start_time) == (StreamEvent.CREATED, since_epoch(1))
            assert a2.update_time == since_epoch(1)
            with trio.move_on_after(5) as quiet:
                await events.receive()
            assert quiet.cancelled_caught


async def test_stream_subscribers_and_microgrids(
    autojump_clock: Any, connect: ClientFactory, client: DispatchClient
) -> None:
    with trio.fail_after(LIMIT):
        async with (
            connect() as other_client,
            client.stream(1) as first,
            other_client.stream(1) as second,
            client.stream(1) as third,
            other_client.stream(2) as elsewhere,
        ):
            a = await client.create(1, type="A", start_time=at(2), duration=None)
            b = await other_client.create(1, type="B", start_time=at(2), duration=None)
            b2 = await client.update(1, b.id, target=TargetIds.of(4))
            await other_client.delete(1, a.id)
            expected = [
                StreamItem(StreamEvent.CREATED, a),
                StreamItem(StreamEvent.CREATED, b),
                StreamItem(StreamEvent.UPDATED, b2),
                StreamItem(StreamEvent.DELETED, a),
            ]
            for events in (first, second, third):
                assert [await events.receive() for _ in range(4)] == expected
            with trio.move_on_after(5) as quiet:
                await elsewhere.receive()
            assert quiet.cancelled_caught


async def test_leaving_the_stream_cancels_the_call(
    autojump_clock: Any, services: list[DispatchService], client: DispatchClient
) -> None:
    with trio.fail_after(LIMIT):
        (service,) = services

        def subscribers() -> int:
            return len(service._subscribers.get(1, ()))

        async with client.stream(1) as staying:
            async with client.stream(1) as leaving:
                assert subscribers() == 2
                created = await client.create(1, type="A", start_time=at(2), duration=None)
                assert await leaving.receive() == StreamItem(StreamEvent.CREATED, created)
            await eventually(lambda: subscribers() == 1)
            # Left by cancellation: the same.
            with trio.move_on_after(3) as scope:
                async with client.stream(1) as cancelled:
                    assert subscribers() == 2
                    await cancelled.receive()
                    await cancelled.receive()
            assert scope.cancelled_caught
            await eventually(lambda: subscribers() == 1)
            # The remaining subscriber still gets everything.
            await client.delete(1, created.id)
            assert await staying.receive() == StreamItem(StreamEvent.CREATED, created)
            assert await staying.receive() == StreamItem(StreamEvent.DELETED, created)
        await eventually(lambda: subscribers() == 0)
        assert service._subscribers == {}


async def test_stream_ends_when_the_server_stops(
    autojump_clock: Any, key_ring: KeyRing, wall_clock: WallClock
) -> None:
    # Documented (DispatchClient.stream): a broken stream raises DispatchConnectionError
    # out of the ``async with``; reconnecting is the caller's job.
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            server_scope = trio.CancelScope()

            async def run_server(task_status: trio.TaskStatus[RunningServer]) -> None:
                with server_scope:
                    await serve_dispatch_api(
                        keys=key_ring, clock=wall_clock, task_status=task_status
                    )

            server: RunningServer = await nursery.start(run_server)
            async with open_client(server_url=server.url, key="test-key", clock=wall_clock) as c:
                received: list[StreamItem] = []

                async def subscribe_then_stop_the_server() -> None:
                    async with c.stream(1) as events:
                        await c.create(1, type="A", start_time=at(2), duration=None)
                        received.append(await events.receive())
                        server_scope.cancel()
                        async for item in events:
                            received.append(item)

                stopped_at = trio.current_time()
                with pytest.raises(DispatchConnectionError) as info:
                    await subscribe_then_stop_the_server()
                assert trio.current_time() == stopped_at  # at once, not after a timeout
                created = received[0].dispatch
                assert received == [StreamItem(StreamEvent.CREATED, created)]
                assert created.id == 1
                assert str(info.value) == (
                    "StreamMicrogridDispatches: StreamTerminatedError: Connection lost"
                )
                assert isinstance(info.value.__cause__, grpclib.exceptions.StreamTerminatedError)
                # With the server gone, calls fail as connection errors too.
                with pytest.raises(DispatchConnectionError) as refused:
                    await c.get(1, created.id)
                cause = refused.value.__cause__
                assert isinstance(cause, ConnectionRefusedError)
                assert (
                    str(refused.value) == f"GetMicrogridDispatch: ConnectionRefusedError: {cause}"
                )


async def test_error_in_stream_body_propagates_bare(
    autojump_clock: Any, client: DispatchClient
) -> None:
    # The stream's nursery must not wrap the caller's own errors in an ExceptionGroup.
    with trio.fail_after(LIMIT):
        with pytest.raises(KeyError) as info:
            async with client.stream(1):
                raise KeyError("mine")
        assert info.value.args == ("mine",)
        # The client still works.
        assert await collect(client.list(1)) == []


# -- connections ---------------------------------------------------------------------------


async def test_closed_port(autojump_clock: Any, wall_clock: WallClock) -> None:
    port = closed_port()
    with trio.fail_after(LIMIT):
        async with open_client(
            server_url=f"grpc://127.0.0.1:{port}?ssl=false", key="k", clock=wall_clock
        ) as client:
            calls: list[tuple[str, Call]] = [
                ("GetMicrogridDispatch", lambda c: c.get(1, 1)),
                ("ListMicrogridDispatches", _list_all),
                ("StreamMicrogridDispatches", lambda c: _stream(c, 1)),
            ]
            for method, call in calls:
                with pytest.raises(DispatchConnectionError) as info:
                    await call(client)
                cause = info.value.__cause__
                assert isinstance(cause, ConnectionRefusedError)
                assert str(cause) == f"[Errno 111] Connect call failed ('127.0.0.1', {port})"
                assert str(info.value) == f"{method}: ConnectionRefusedError: {cause}"


async def _other_asyncio_tasks() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


async def _use_every_rpc(client: DispatchClient) -> None:
    async with client.stream(1) as events:
        created = await client.create(1, type="T", start_time=at(2), duration=None)
        updated = await client.update(1, created.id, active=False)
        assert await client.get(1, created.id) == updated
        assert await collect(client.list(1)) == [updated]
        await client.delete(1, created.id)
        assert [await events.receive() for _ in range(3)] == [
            StreamItem(StreamEvent.CREATED, created),
            StreamItem(StreamEvent.UPDATED, updated),
            StreamItem(StreamEvent.DELETED, updated),
        ]


async def test_no_asyncio_task_left_behind_in_callers_loop(
    autojump_clock: Any, server: RunningServer, connect: ClientFactory
) -> None:
    with trio.fail_after(LIMIT):
        async with trio_asyncio.open_loop():
            before = await trio_asyncio.aio_as_trio(_other_asyncio_tasks)()
            async with connect() as client:
                await _use_every_rpc(client)
                during = await trio_asyncio.aio_as_trio(_other_asyncio_tasks)()
                assert during == before  # unary calls and a closed stream leave nothing
            after = await trio_asyncio.aio_as_trio(_other_asyncio_tasks)()
            assert after == before


async def test_works_without_a_callers_loop(autojump_clock: Any, connect: ClientFactory) -> None:
    with trio.fail_after(LIMIT):
        assert trio_asyncio.current_loop.get() is None
        for _ in range(2):  # and again, after the first client's loop is gone
            async with connect() as client:
                await _use_every_rpc(client)
            assert trio_asyncio.current_loop.get() is None


async def test_two_clients_in_one_callers_loop(autojump_clock: Any, connect: ClientFactory) -> None:
    with trio.fail_after(LIMIT):
        async with trio_asyncio.open_loop(), connect() as first, connect() as second:
            created = await first.create(1, type="T", start_time=at(2), duration=None)
            assert await second.get(1, created.id) == created


# -- TLS -----------------------------------------------------------------------------------


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    client_cert = ca.issue_cert("client@example.com")
    files = {
        "ca": tmp_path / "ca.pem",
        "cert": tmp_path / "server-chain.pem",
        "key": tmp_path / "server-key.pem",
        "client_cert": tmp_path / "client-chain.pem",
        "client_key": tmp_path / "client-key.pem",
    }
    ca.cert_pem.write_to_path(files["ca"])
    server_cert.private_key_pem.write_to_path(files["key"])
    files["cert"].write_bytes(b"".join(pem.bytes() for pem in server_cert.cert_chain_pems))
    client_cert.private_key_pem.write_to_path(files["client_key"])
    files["client_cert"].write_bytes(b"".join(pem.bytes() for pem in client_cert.cert_chain_pems))
    return files


async def test_tls(
    autojump_clock: Any, key_ring: KeyRing, wall_clock: WallClock, tls_files: dict[str, Path]
) -> None:
    with trio.fail_after(LIMIT):
        async with open_dispatch_server(
            keys=key_ring, clock=wall_clock, tls_cert=tls_files["cert"], tls_key=tls_files["key"]
        ) as server:
            assert server.tls
            assert server.url == f"grpc://127.0.0.1:{server.port}?ssl=true"
            trusted = f"{server.url}&ssl_root_certificates_path={tls_files['ca']}"
            async with open_client(server_url=trusted, key="test-key", clock=wall_clock) as client:
                created = await client.create(1, type="T", start_time=at(2), duration=None)
                async with client.stream(1) as events:
                    await client.delete(1, created.id)
                    assert await events.receive() == StreamItem(StreamEvent.DELETED, created)
            with_client_cert = (
                f"{trusted}&ssl_certificate_chain_path={tls_files['client_cert']}"
                f"&ssl_private_key_path={tls_files['client_key']}"
            )
            async with open_client(
                server_url=with_client_cert, key="test-key", clock=wall_clock
            ) as client:
                assert await collect(client.list(1)) == []
            # Without our CA the server's certificate is not trusted.
            async with open_client(server_url=server.url, key="test-key", clock=wall_clock) as c:
                with pytest.raises(DispatchConnectionError) as info:
                    await c.get(1, 1)
                cause = info.value.__cause__
                assert isinstance(cause, ssl.SSLCertVerificationError)
                assert str(info.value) == f"GetMicrogridDispatch: SSLCertVerificationError: {cause}"
            # A plain-HTTP/2 client cannot talk to a TLS server.
            plain = f"grpc://127.0.0.1:{server.port}?ssl=false"
            async with open_client(server_url=plain, key="test-key", clock=wall_clock) as c:
                with pytest.raises(DispatchConnectionError):
                    await c.get(1, 1)


# -- a scripted server: what the real one never sends --------------------------------------

_SERVICE = "/frequenz.api.dispatch.v1.MicrogridDispatchService/"
HANG_ID = 666


def valid_message(dispatch_id: int, type: str = "T") -> pb.Dispatch:
    return dispatch_to_proto(
        Dispatch(
            id=dispatch_id,
            type=type,
            start_time=at(2),
            create_time=EPOCH,
            update_time=EPOCH,
        )
    )


def no_start_time(dispatch_id: int) -> pb.Dispatch:
    message = valid_message(dispatch_id)
    assert message.data is not None
    message.data.start_time = None
    return message


def empty_type(dispatch_id: int) -> pb.Dispatch:
    message = valid_message(dispatch_id)
    assert message.data is not None
    message.data.type = ""
    return message


class ScriptedService:
    """List, Get and Stream answering with fixed messages; Get of `HANG_ID` never answers."""

    def __init__(self) -> None:
        self.listed = [valid_message(1), no_start_time(2), empty_type(3), valid_message(4)]
        self.streamed: list[pb.StreamMicrogridDispatchesResponse] = [
            pb.StreamMicrogridDispatchesResponse(
                event=pb_streaming.Event.CREATED, dispatch=valid_message(1)
            ),
            pb.StreamMicrogridDispatchesResponse(
                event=pb_streaming.Event.CREATED, dispatch=no_start_time(2)
            ),
            pb.StreamMicrogridDispatchesResponse(event=99, dispatch=valid_message(3)),  # type: ignore[arg-type]
            pb.StreamMicrogridDispatchesResponse(
                event=pb_streaming.Event.UNSPECIFIED, dispatch=valid_message(4)
            ),
            pb.StreamMicrogridDispatchesResponse(event=pb_streaming.Event.UPDATED),
            pb.StreamMicrogridDispatchesResponse(
                event=pb_streaming.Event.DELETED, dispatch=valid_message(1)
            ),
        ]
        self.hanging = 0
        self.cancelled = 0

    async def _list(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        await stream.recv_message()
        await stream.send_message(
            pb.ListMicrogridDispatchesResponse(
                dispatches=self.listed,
                pagination_info=pb_page.PaginationInfo(total_items=len(self.listed)),
            )
        )

    async def _get(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        assert request is not None
        if request.dispatch_id == HANG_ID:
            self.hanging += 1
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        by_id = {m.metadata.dispatch_id: m for m in self.listed if m.metadata is not None}
        await stream.send_message(
            pb.GetMicrogridDispatchResponse(
                microgrid_id=request.microgrid_id, dispatch=by_id[request.dispatch_id]
            )
        )

    async def _stream(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        await stream.recv_message()
        await stream.send_initial_metadata()
        for message in self.streamed:
            await stream.send_message(message)
        # ...and the stream ends cleanly (status OK).

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        unary = grpclib.const.Cardinality.UNARY_UNARY
        return {
            _SERVICE + "ListMicrogridDispatches": grpclib.const.Handler(
                self._list,
                unary,
                pb.ListMicrogridDispatchesRequest,
                pb.ListMicrogridDispatchesResponse,
            ),
            _SERVICE + "GetMicrogridDispatch": grpclib.const.Handler(
                self._get, unary, pb.GetMicrogridDispatchRequest, pb.GetMicrogridDispatchResponse
            ),
            _SERVICE + "StreamMicrogridDispatches": grpclib.const.Handler(
                self._stream,
                grpclib.const.Cardinality.UNARY_STREAM,
                pb.StreamMicrogridDispatchesRequest,
                pb.StreamMicrogridDispatchesResponse,
            ),
        }


@asynccontextmanager
async def scripted_server(service: ScriptedService) -> AsyncIterator[str]:
    """Serve `service` on a free loopback port; yields the client URL."""
    async with asyncio_loop():
        server = grpclib.server.Server([service])
        await trio_asyncio.aio_as_trio(server.start)("127.0.0.1", 0)
        try:
            port = server._server.sockets[0].getsockname()[1]
            yield f"grpc://127.0.0.1:{port}?ssl=false"
        finally:
            server.close()
            with trio.CancelScope(shield=True):
                await trio_asyncio.aio_as_trio(server.wait_closed)()


async def test_invalid_dispatches_are_skipped(autojump_clock: Any, wall_clock: WallClock) -> None:
    invalid: list[InvalidDispatchError] = []
    with trio.fail_after(LIMIT):
        async with (
            scripted_server(ScriptedService()) as url,
            open_client(server_url=url, key="k", clock=wall_clock, on_invalid=invalid.append) as c,
        ):
            assert await ids_of(c.list(1)) == [1, 4]
            assert [(e.dispatch_id, e.reason) for e in invalid] == [
                (2, "start_time is missing"),
                (3, "type must not be empty, got ''"),
            ]
            assert str(invalid[0]) == "invalid dispatch 2 from server: start_time is missing"
            (page,) = [page async for page in c.list(1).pages()]
            assert page.total == 4  # as the server counted
            assert [d.id for d in page.dispatches] == [1, 4]

            # A direct call has nothing to skip to: it raises.
            invalid.clear()
            assert (await c.get(1, 4)).id == 4
            with pytest.raises(InvalidDispatchError) as info:
                await c.get(1, 2)
            assert (info.value.dispatch_id, info.value.reason) == (2, "start_time is missing")
            assert invalid == []

            # The stream skips invalid dispatches, unknown events and empty messages, and
            # a clean end of the stream ends the receiver.
            async with c.stream(1) as events:
                received = [item async for item in events]
            assert [(event, d.id) for event, d in received] == [
                (StreamEvent.CREATED, 1),
                (StreamEvent.DELETED, 1),
            ]
            assert [(e.dispatch_id, e.reason) for e in invalid] == [
                (2, "start_time is missing"),
                (0, "stream message carries no dispatch"),
            ]


async def test_invalid_dispatches_are_logged_by_default(
    autojump_clock: Any, wall_clock: WallClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="trio_dispatch")
    with trio.fail_after(LIMIT):
        async with (
            scripted_server(ScriptedService()) as url,
            open_client(server_url=url, key="k", clock=wall_clock) as c,
        ):
            assert await ids_of(c.list(1)) == [1, 4]
            async with c.stream(1) as events:
                assert len([item async for item in events]) == 2
    assert [r.getMessage() for r in caplog.records if r.name == "trio_dispatch"] == [
        "skipping invalid dispatch 2 from server: start_time is missing",
        "skipping invalid dispatch 3 from server: type must not be empty, got ''",
        "skipping invalid dispatch 2 from server: start_time is missing",
        "skipping a stream message with unknown event 99",
        "skipping a stream message with unknown event 0",
        "skipping invalid dispatch 0 from server: stream message carries no dispatch",
    ]


# -- cancellation and deadlines ------------------------------------------------------------


async def test_cancelled_call_returns_promptly(autojump_clock: Any, wall_clock: WallClock) -> None:
    service = ScriptedService()
    with trio.fail_after(LIMIT):
        async with (
            scripted_server(service) as url,
            open_client(server_url=url, key="k", clock=wall_clock) as client,
        ):
            start = trio.current_time()
            with trio.move_on_after(5) as scope:
                await client.get(1, HANG_ID)
            assert scope.cancelled_caught
            assert trio.current_time() == start + 5
            assert service.hanging == 1
            # The server sees the call end (grpclib resets the HTTP/2 stream).
            await eventually(lambda: service.cancelled == 1)
            # The connection is still good.
            assert (await client.get(1, 1)).id == 1
            assert await ids_of(client.list(1)) == [1, 4]


async def test_cancelled_calls_real_server(autojump_clock: Any, client: DispatchClient) -> None:
    with trio.fail_after(LIMIT):
        created = await client.create(1, type="T", start_time=at(2), duration=None)
        start = trio.current_time()
        with trio.CancelScope() as scope:
            scope.cancel()
            await client.get(1, created.id)
        assert scope.cancelled_caught
        # Cancelled between the pages of a listing: no further page is asked for.
        pages: list[DispatchPage] = []
        with trio.move_on_after(1) as scope:
            # Leaving the iteration early must not leave anything to finalize (no warning).
            async for page in client.list(1, page_size=1).pages():
                pages.append(page)
                await trio.sleep(10)
        assert scope.cancelled_caught
        assert len(pages) == 1
        assert trio.current_time() == start + 1
        for _ in range(3):
            more = await client.create(1, type="T", start_time=at(2), duration=None)
        assert await ids_of(client.list(1)) == [more.id, 3, 2, 1]


async def test_call_timeout(autojump_clock: Any, wall_clock: WallClock) -> None:
    service = ScriptedService()
    with trio.fail_after(LIMIT):
        async with (
            scripted_server(service) as url,
            open_client(
                server_url=url, key="k", clock=wall_clock, call_timeout=timedelta(seconds=2)
            ) as client,
        ):
            start = trio.current_time()
            with pytest.raises(DispatchConnectionError) as info:
                await client.get(1, HANG_ID)
            # grpclib measures deadlines with time.monotonic(), i.e. real time: the few
            # real milliseconds the call takes to set up come off the virtual 2 s.
            assert trio.current_time() - start == pytest.approx(2, abs=0.2)
            assert str(info.value) == "GetMicrogridDispatch: DEADLINE_EXCEEDED"
            cause = info.value.__cause__
            assert isinstance(cause, grpclib.exceptions.GRPCError)
            assert cause.status is grpclib.const.Status.DEADLINE_EXCEEDED
            await eventually(lambda: service.cancelled == 1)
            assert (await client.get(1, 4)).id == 4
