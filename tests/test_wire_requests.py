"""What our client puts on the wire, read back with the official protobuf classes.

A tiny grpclib server records the raw bytes of every request (its codec hands the
handlers ``bytes``) together with the call's metadata, and answers with replies built
from the official ``dispatch_pb2`` classes. Each test drives `DispatchClient`, parses
the recorded bytes with ``dispatch_pb2.<Request>.FromString`` and compares them with an
official message built field by field, so presence matters: an ``optional`` field that
is set to its default (``is_dry_run=False``) differs from one that is absent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import grpclib.const
import grpclib.server
import pytest
import trio
import trio_asyncio
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as off_ec,
)
from frequenz.api.common.v1alpha8.pagination import pagination_info_pb2, pagination_params_pb2
from frequenz.api.common.v1alpha8.streaming import event_pb2
from frequenz.api.common.v1alpha8.types import interval_pb2
from frequenz.api.dispatch.v1 import dispatch_pb2 as off
from google.protobuf import field_mask_pb2, struct_pb2, timestamp_pb2
from google.protobuf.message import Message
from grpclib.encoding.base import CodecBase

from trio_dispatch import (
    BatteryType,
    ComponentCategory,
    EndCriteria,
    Frequency,
    InverterType,
    RecurrenceRule,
    TargetCategories,
    TargetCategory,
    TargetIds,
    Weekday,
)
from trio_dispatch._client import (
    DispatchClient,
    SortField,
    SortOrder,
    StreamEvent,
    open_client,
)
from trio_dispatch._transport import asyncio_loop

SERVICE: Final = "/frequenz.api.dispatch.v1.MicrogridDispatchService/"
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
T_START = datetime(2030, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
T_UNTIL = datetime(2030, 6, 1, tzinfo=UTC)
T_FROM = datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
T_TO = datetime(2030, 3, 4, 5, 6, 7, 654321, tzinfo=UTC)
MICROGRID = 2**40 + 3
KEY = "wire-key"
SECRET = "wire-secret"


def ts(t: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(t)
    return stamp


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


def reply_dispatch(dispatch_id: int, data: off.DispatchData | None = None) -> off.Dispatch:
    """A valid dispatch for replies; our client must be able to decode it."""
    body = off.DispatchData()
    if data is not None:
        body.CopyFrom(data)
    if not body.HasField("start_time"):
        body.start_time.CopyFrom(ts(T_START))
    if not body.type:
        body.type = "REPLY"
    return off.Dispatch(
        metadata=off.DispatchMetadata(
            dispatch_id=dispatch_id, create_time=ts(NOW), update_time=ts(NOW)
        ),
        data=body,
    )


# -- the recording server -----------------------------------------------------------------


class _RawRequestCodec(CodecBase):  # type: ignore[misc]
    """Requests stay bytes; replies (official messages) are serialized as usual."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        data: bytes = message.SerializeToString()
        return data

    def decode(self, data: bytes, message_type: Any) -> Any:
        if message_type is bytes:
            return bytes(data)
        return message_type.FromString(data)


@dataclass(frozen=True)
class Call:
    method: str
    body: bytes
    metadata: dict[str, str]


def _reply_create(body: bytes) -> Message:
    request = off.CreateMicrogridDispatchRequest.FromString(body)
    return off.CreateMicrogridDispatchResponse(dispatch=reply_dispatch(41, request.dispatch_data))


def _reply_update(body: bytes) -> Message:
    request = off.UpdateMicrogridDispatchRequest.FromString(body)
    return off.UpdateMicrogridDispatchResponse(dispatch=reply_dispatch(request.dispatch_id))


def _reply_get(body: bytes) -> Message:
    request = off.GetMicrogridDispatchRequest.FromString(body)
    return off.GetMicrogridDispatchResponse(
        microgrid_id=request.microgrid_id, dispatch=reply_dispatch(request.dispatch_id)
    )


def _reply_delete(body: bytes) -> Message:
    return off.DeleteMicrogridDispatchResponse()


def _reply_list(body: bytes) -> Message:
    """Two pages: the first (by page size) points to ``page-2``, which is the last."""
    request = off.ListMicrogridDispatchesRequest.FromString(body)
    first = request.pagination_params.WhichOneof("params") != "page_token"
    return off.ListMicrogridDispatchesResponse(
        dispatches=[reply_dispatch(1 if first else 2)],
        pagination_info=pagination_info_pb2.PaginationInfo(
            total_items=2, next_page_token="page-2" if first else ""
        ),
    )


_UNARY: Final[dict[str, Callable[[bytes], Message]]] = {
    "CreateMicrogridDispatch": _reply_create,
    "UpdateMicrogridDispatch": _reply_update,
    "GetMicrogridDispatch": _reply_get,
    "DeleteMicrogridDispatch": _reply_delete,
    "ListMicrogridDispatches": _reply_list,
}


class Recorder:
    """A servable that records every request and answers it."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def _record(self, method: str, stream: Any, body: bytes) -> None:
        metadata = {k: v for k, v in (stream.metadata or {}).items() if isinstance(v, str)}
        self.calls.append(Call(method, body, metadata))

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        def unary(method: str, reply: Callable[[bytes], Message]) -> grpclib.const.Handler:
            async def handle(stream: Any) -> None:
                body = await stream.recv_message()
                self._record(method, stream, body)
                await stream.send_message(reply(body))

            return grpclib.const.Handler(
                handle, grpclib.const.Cardinality.UNARY_UNARY, bytes, object
            )

        async def stream_handler(stream: Any) -> None:
            body = await stream.recv_message()
            self._record("StreamMicrogridDispatches", stream, body)
            for event, dispatch_id in (
                (event_pb2.EVENT_CREATED, 5),
                (event_pb2.EVENT_DELETED, 5),
            ):
                await stream.send_message(
                    off.StreamMicrogridDispatchesResponse(
                        dispatch=reply_dispatch(dispatch_id), event=event
                    )
                )

        handlers = {SERVICE + name: unary(name, reply) for name, reply in _UNARY.items()}
        handlers[SERVICE + "StreamMicrogridDispatches"] = grpclib.const.Handler(
            stream_handler, grpclib.const.Cardinality.UNARY_STREAM, bytes, object
        )
        return handlers

    def only(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]


@asynccontextmanager
async def recording_client(
    *, sign_secret: str | None = None
) -> AsyncIterator[tuple[DispatchClient, Recorder]]:
    recorder = Recorder()
    async with asyncio_loop():
        server = grpclib.server.Server([recorder], codec=_RawRequestCodec())
        await trio_asyncio.aio_as_trio(server.start)("127.0.0.1", 0)
        try:
            port = server._server.sockets[0].getsockname()[1]
            async with open_client(
                server_url=f"grpc://127.0.0.1:{port}?ssl=false",
                key=KEY,
                sign_secret=sign_secret,
                clock=lambda: NOW,
            ) as client:
                yield client, recorder
        finally:
            server.close()
            with trio.CancelScope(shield=True):
                await trio_asyncio.aio_as_trio(server.wait_closed)()


# -- create -------------------------------------------------------------------------------


async def test_create_start_immediately_with_every_field() -> None:
    with trio.fail_after(10):
        async with recording_client() as (client, recorder):
            created = await client.create(
                MICROGRID,
                type="BATTERY_PEAK_SHAVING",
                start_time="now",
                duration=timedelta(minutes=15),
                target=TargetCategories.of(
                    ComponentCategory.INVERTER,
                    TargetCategory(category=ComponentCategory.BATTERY, type=BatteryType.LI_ION),
                ),
                active=False,
                dry_run=True,
                payload={"power_w": 1500, "tags": ["a", None], "nested": {"on": True}},
                recurrence=RecurrenceRule(
                    frequency=Frequency.WEEKLY,
                    interval=2,
                    end_criteria=EndCriteria(until=T_UNTIL),
                    byminutes=(30, 0),
                    byhours=(8,),
                    byweekdays=(Weekday.FRIDAY, Weekday.MONDAY),
                    bymonthdays=(-1, 1),
                    bymonths=(3, 1),
                ),
            )
    [call] = recorder.calls
    assert call.method == "CreateMicrogridDispatch"
    assert call.metadata["key"] == KEY
    assert not {"ts", "nonce", "sig"} & call.metadata.keys()
    parsed = off.CreateMicrogridDispatchRequest.FromString(call.body)
    target = off.TargetComponents()
    target.component_categories_types.categories.extend(
        [
            off.TargetComponents.CategoryAndType(
                category=off_ec.ELECTRICAL_COMPONENT_CATEGORY_INVERTER
            ),
            off.TargetComponents.CategoryAndType(
                category=off_ec.ELECTRICAL_COMPONENT_CATEGORY_BATTERY,
                battery=off_ec.BATTERY_TYPE_LI_ION,
            ),
        ]
    )
    expected = off.CreateMicrogridDispatchRequest(
        microgrid_id=MICROGRID,
        dispatch_data=off.DispatchData(
            type="BATTERY_PEAK_SHAVING",
            duration=900,
            target=target,
            is_active=False,
            is_dry_run=True,
            payload=struct({"power_w": 1500.0, "tags": ["a", None], "nested": {"on": True}}),
            recurrence=off.RecurrenceRule(
                freq=off.RecurrenceRule.FREQUENCY_WEEKLY,
                interval=2,
                end_criteria=off.RecurrenceRule.EndCriteria(until_time=ts(T_UNTIL)),
                byminutes=[0, 30],
                byhours=[8],
                byweekdays=[off.RecurrenceRule.WEEKDAY_MONDAY, off.RecurrenceRule.WEEKDAY_FRIDAY],
                bymonthdays=[-1, 1],
                bymonths=[1, 3],
            ),
        ),
        start_immediately=True,
    )
    assert parsed == expected
    assert not parsed.dispatch_data.HasField("start_time")
    # The reply (an official message echoing the data) decodes into the same values.
    assert created.id == 41
    assert created.type == "BATTERY_PEAK_SHAVING"
    assert created.start_time == T_START
    assert created.payload == {"power_w": 1500.0, "tags": ["a", None], "nested": {"on": True}}
    assert created.recurrence is not None
    assert created.recurrence.byweekdays == (Weekday.MONDAY, Weekday.FRIDAY)


async def test_create_at_a_time_with_defaults() -> None:
    with trio.fail_after(10):
        async with recording_client() as (client, recorder):
            await client.create(
                0,
                type="T",
                start_time=T_START,
                duration=None,
                target=TargetIds.of(7, 3, 2**63),
            )
    parsed = off.CreateMicrogridDispatchRequest.FromString(recorder.calls[0].body)
    target = off.TargetComponents()
    target.component_ids.ids.extend([3, 7, 2**63])
    expected = off.CreateMicrogridDispatchRequest(
        microgrid_id=0,
        dispatch_data=off.DispatchData(
            type="T",
            start_time=ts(T_START),
            target=target,
            is_active=True,
            is_dry_run=False,
            payload=struct({}),
        ),
    )
    assert parsed == expected
    assert parsed.dispatch_data.start_time.nanos == 789012000  # microseconds kept
    assert not parsed.HasField("start_immediately")
    assert not parsed.dispatch_data.HasField("duration")
    assert not parsed.dispatch_data.HasField("recurrence")


async def test_create_with_no_target_sends_an_empty_id_set() -> None:
    with trio.fail_after(10):
        async with recording_client() as (client, recorder):
            await client.create(1, type="T", start_time=T_START, duration=timedelta(0))
    parsed = off.CreateMicrogridDispatchRequest.FromString(recorder.calls[0].body)
    assert parsed.dispatch_data.target.WhichOneof("components") == "component_ids"
    assert list(parsed.dispatch_data.target.component_ids.ids) == []
    assert parsed.dispatch_data.HasField("duration")
    assert parsed.dispatch_data.duration == 0


# -- list ---------------------------------------------------------------------------------


async def test_list_sends_every_filter_and_follows_the_page_token() -> None:
    with trio.fail_after(10):
        async with recording_client() as (client, recorder):
            listing = client.list(
                MICROGRID,
                targets=[
                    TargetIds.of(3, 1),
                    TargetCategories.of(
                        TargetCategory(category=ComponentCategory.INVERTER, type=InverterType.PV)
                    ),
                ],
                active=True,
                dry_run=False,
                recurring=True,
                start_from=T_FROM,
                start_to=T_TO,
                end_from=T_FROM,
                update_to=T_TO,
                dispatch_ids=[6, 5],
                queries=["peak", "#7"],
                sort_by=SortField.START_TIME,
                sort_order=SortOrder.ASCENDING,
                page_size=2,
            )
            pages = [page async for page in listing.pages()]
    assert [[d.id for d in p.dispatches] for p in pages] == [[1], [2]]
    assert [(p.total, p.next_page_token) for p in pages] == [(2, "page-2"), (2, None)]

    ids_target = off.TargetComponents()
    ids_target.component_ids.ids.extend([1, 3])
    pv_target = off.TargetComponents()
    pv_target.component_categories_types.categories.append(
        off.TargetComponents.CategoryAndType(
            category=off_ec.ELECTRICAL_COMPONENT_CATEGORY_INVERTER,
            inverter=off_ec.INVERTER_TYPE_PV,
        )
    )
    filter_ = off.DispatchFilter(
        targets=[ids_target, pv_target],
        is_active=True,
        is_dry_run=False,
        is_recurring=True,
        start_time_interval=interval_pb2.Interval(start_time=ts(T_FROM), end_time=ts(T_TO)),
        end_time_interval=interval_pb2.Interval(start_time=ts(T_FROM)),
        update_time_interval=interval_pb2.Interval(end_time=ts(T_TO)),
        dispatch_ids=[6, 5],
        queries=["peak", "#7"],
    )
    sort = off.SortOptions(
        sort_field=off.SORT_FIELD_START_TIME, sort_order=off.SORT_ORDER_ASCENDING
    )
    first, second = (
        off.ListMicrogridDispatchesRequest.FromString(c.body)
        for c in recorder.only("ListMicrogridDispatches")
    )
    assert first == off.ListMicrogridDispatchesRequest(
        microgrid_id=MICROGRID,
        filter=filter_,
        sort_options=sort,
        pagination_params=pagination_params_pb2.PaginationParams(page_size=2),
    )
    assert second == off.ListMicrogridDispatchesRequest(
        microgrid_id=MICROGRID,
        filter=filter_,
        sort_options=sort,
        pagination_params=pagination_params_pb2.PaginationParams(page_token="page-2"),
    )
    assert first.filter.HasField("is_dry_run")  # False, yet present
    assert first.filter.WhichOneof("recurrence") == "is_recurring"


async def test_list_defaults() -> None:
    with trio.fail_after(10):
        async with recording_client() as (client, recorder):
            assert [d.id async for d in client.list(MICROGRID, recurring=False)] == [1, 2]
    first, second = (off.ListMicrogridDispatchesRequest.FromString(c.body) for c in recorder.calls)
    expected_filter = off.DispatchFilter(is_recurring=False)
    sort = off.SortOptions(
        sort_field=off.SORT_FIELD_CREATE_TIME, sort_order=off.SORT_ORDER_DESCENDING
    )
    assert first == off.ListMicrogridDispatchesRequest(
        microgrid_id=MICROGRID,
        filter=expected_filter,
        sort_options=sort,
        pagination_params=pagination_params_pb2.PaginationParams(page_size=1000),
    )
    assert second.pagination_params == pagination_params_pb2.PaginationParams(page_token="page-2")
    for name in ("is_active", "is_dry_run", "start_time_interval", "end_time_interval"):
        assert not first.filter.HasField(name), name


# -- update -------------------------------------------------------------------------------

RuleUpdate = off.UpdateMicrogridDispatchRequest.DispatchUpdate.RecurrenceRuleUpdate


def update_request(paths: list[str], **fields: Any) -> off.UpdateMicrogridDispatchRequest:
    return off.UpdateMicrogridDispatchRequest(
        microgrid_id=MICROGRID,
        dispatch_id=9,
        update_mask=field_mask_pb2.FieldMask(paths=paths),
        update=off.UpdateMicrogridDispatchRequest.DispatchUpdate(**fields),
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param(
            {
                "start_time": T_START,
                "duration": timedelta(minutes=5),
                "target": TargetCategories.of(ComponentCategory.EV_CHARGER),
                "active": False,
                "payload": {"limit": 0.5},
            },
            update_request(
                ["start_time", "duration", "target", "is_active", "payload"],
                start_time=ts(T_START),
                duration=300,
                target=off.TargetComponents(
                    component_categories_types=off.TargetComponents.CategoryTypeSet(
                        categories=[
                            off.TargetComponents.CategoryAndType(
                                category=off_ec.ELECTRICAL_COMPONENT_CATEGORY_EV_CHARGER
                            )
                        ]
                    )
                ),
                is_active=False,
                payload=struct({"limit": 0.5}),
            ),
            id="top-level-fields",
        ),
        pytest.param(
            {"duration": None, "recurrence": None, "target": TargetIds.of(4)},
            update_request(
                ["duration", "target", "recurrence"],
                target=off.TargetComponents(component_ids=off.TargetComponents.IdSet(ids=[4])),
            ),
            id="clear-duration-and-rule",
        ),
        pytest.param(
            {
                "recurrence": RecurrenceRule(
                    frequency=Frequency.MONTHLY,
                    interval=2,
                    end_criteria=EndCriteria(count=5),
                    byhours=(7,),
                    byweekdays=(Weekday.SUNDAY,),
                    bymonthdays=(15,),
                )
            },
            update_request(
                ["recurrence"],
                recurrence=RuleUpdate(
                    freq=off.RecurrenceRule.FREQUENCY_MONTHLY,
                    interval=2,
                    end_criteria=off.RecurrenceRule.EndCriteria(count=5),
                    byhours=[7],
                    byweekdays=[off.RecurrenceRule.WEEKDAY_SUNDAY],
                    bymonthdays=[15],
                ),
            ),
            id="whole-rule",
        ),
        pytest.param(
            {
                "frequency": Frequency.DAILY,
                "interval": 3,
                "end_criteria": None,
                "byminutes": [15, 0],
                "bymonths": [12],
            },
            update_request(
                [
                    "recurrence.freq",
                    "recurrence.interval",
                    "recurrence.end_criteria",
                    "recurrence.byminutes",
                    "recurrence.bymonths",
                ],
                recurrence=RuleUpdate(
                    freq=off.RecurrenceRule.FREQUENCY_DAILY,
                    interval=3,
                    byminutes=[0, 15],
                    bymonths=[12],
                ),
            ),
            id="rule-parts",
        ),
        pytest.param(
            {"end_criteria": EndCriteria(until=T_UNTIL), "byweekdays": []},
            update_request(
                ["recurrence.end_criteria", "recurrence.byweekdays"],
                recurrence=RuleUpdate(
                    end_criteria=off.RecurrenceRule.EndCriteria(until_time=ts(T_UNTIL))
                ),
            ),
            id="until-and-cleared-list",
        ),
        pytest.param(
            {"interval": 4},
            update_request(["recurrence.interval"], recurrence=RuleUpdate(interval=4)),
            id="interval-alone",
        ),
    ],
)
async def test_update_sends_the_field_mask_and_values(
    changes: dict[str, Any], expected: off.UpdateMicrogridDispatchRequest
) -> None:
    with trio.fail_after(10):
        async with recording_client() as (client, recorder):
            updated = await client.update(MICROGRID, 9, **changes)
    assert updated.id == 9
    [call] = recorder.calls
    parsed = off.UpdateMicrogridDispatchRequest.FromString(call.body)
    assert list(parsed.update_mask.paths) == list(expected.update_mask.paths)
    assert parsed == expected
    if "recurrence" in parsed.update_mask.paths and changes.get("recurrence") is None:
        assert not parsed.update.HasField("recurrence")
    if "duration" in parsed.update_mask.paths and changes["duration"] is None:
        assert not parsed.update.HasField("duration")


# -- get, delete, stream ------------------------------------------------------------------


async def test_get_delete_and_stream_requests() -> None:
    with trio.fail_after(10):
        async with recording_client() as (client, recorder):
            got = await client.get(MICROGRID, 2**64 - 1)
            await client.delete(MICROGRID, 12)
            async with client.stream(MICROGRID) as events:
                items = [(event, dispatch.id) async for event, dispatch in events]
    assert got.id == 2**64 - 1
    assert items == [(StreamEvent.CREATED, 5), (StreamEvent.DELETED, 5)]
    [get], [delete], [stream] = (
        recorder.only(m)
        for m in ("GetMicrogridDispatch", "DeleteMicrogridDispatch", "StreamMicrogridDispatches")
    )
    assert off.GetMicrogridDispatchRequest.FromString(get.body) == off.GetMicrogridDispatchRequest(
        microgrid_id=MICROGRID, dispatch_id=2**64 - 1
    )
    assert off.DeleteMicrogridDispatchRequest.FromString(
        delete.body
    ) == off.DeleteMicrogridDispatchRequest(microgrid_id=MICROGRID, dispatch_id=12)
    assert off.StreamMicrogridDispatchesRequest.FromString(
        stream.body
    ) == off.StreamMicrogridDispatchesRequest(microgrid_id=MICROGRID)


# -- signing ------------------------------------------------------------------------------


def upstream_signature(secret: str, key: str, ts: str, nonce: str, method: str) -> str:
    """The signature as the Frequenz client base library computes it (written anew here)."""
    mac = hmac.new(secret.encode(), key.encode() + ts.encode() + nonce.encode(), hashlib.sha256)
    mac.update(method.encode())
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


async def test_signed_calls_carry_a_verifiable_signature() -> None:
    with trio.fail_after(10):
        async with recording_client(sign_secret=SECRET) as (client, recorder):
            await client.get(MICROGRID, 1)
            await client.get(MICROGRID, 1)
            await client.delete(MICROGRID, 1)
            _ = [d async for d in client.list(MICROGRID)]
            async with client.stream(MICROGRID) as events:
                _ = [item async for item in events]
    assert len(recorder.calls) == 6
    nonces = set()
    for call in recorder.calls:
        meta = call.metadata
        assert meta["key"] == KEY
        assert meta["ts"] == str(int(NOW.timestamp()))
        assert len(base64.urlsafe_b64decode(meta["nonce"])) == 16
        assert meta["sig"] == upstream_signature(
            SECRET, KEY, meta["ts"], meta["nonce"], call.method
        )
        nonces.add(meta["nonce"])
    assert len(nonces) == 6, "every call needs a fresh nonce"
