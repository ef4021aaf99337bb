"""`DispatchClient`: the six RPCs of the dispatch API, for trio code.

The client speaks model types (`Dispatch`, `RecurrenceRule`, targets) and hides the
wire: pagination is an async iterator, updates are keyword arguments turned into a
field mask, authentication metadata is added to every call, and errors arrive as
`DispatchApiError` / `DispatchConnectionError`. Arguments are checked before anything is
sent, so a typo fails at once with a `ValueError`/`TypeError` that names the field.

Example:
    >>> async def main():
    ...     async with open_client(server_url="grpc://127.0.0.1:50051?ssl=false",
    ...                            key="my-key") as client:
    ...         created = await client.create(
    ...             1, type="DEMO", start_time="now", duration=timedelta(minutes=15)
    ...         )
    ...         async for dispatch in client.list(1, queries=["DEMO"]):
    ...             print(dispatch.id, dispatch.start_time)
"""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, NamedTuple, TypeAlias, TypeVar, final

import trio
from frequenz.api.dispatch.v1 import dispatch_pb2 as pb2

from . import _transport as transport
from . import _validate as v
from ._auth import auth_metadata
from ._convert import (
    dispatch_data_to_proto,
    dispatch_from_pb2,
    end_criteria_to_proto,
    payload_to_proto,
    target_to_proto,
)
from ._exceptions import InvalidDispatchError
from ._model import Dispatch
from ._payload import Payload, check_payload
from ._proto.frequenz.api.common.v1alpha8 import pagination as pb_page
from ._proto.frequenz.api.common.v1alpha8 import types as pb_types
from ._proto.frequenz.api.dispatch import v1 as pb
from ._proto.google import protobuf as pb_wkt
from ._rule import EndCriteria, Frequency, RecurrenceRule, Weekday
from ._target import Target, TargetCategories, TargetIds
from ._url import parse_server_url

__all__ = [
    "DispatchClient",
    "DispatchListing",
    "DispatchPage",
    "SortField",
    "SortOrder",
    "StreamEvent",
    "StreamItem",
    "open_client",
]

_log = logging.getLogger("trio_dispatch")

_SERVICE: Final = "/frequenz.api.dispatch.v1.MicrogridDispatchService/"
LIST: Final = _SERVICE + "ListMicrogridDispatches"
STREAM: Final = _SERVICE + "StreamMicrogridDispatches"
CREATE: Final = _SERVICE + "CreateMicrogridDispatch"
UPDATE: Final = _SERVICE + "UpdateMicrogridDispatch"
GET: Final = _SERVICE + "GetMicrogridDispatch"
DELETE: Final = _SERVICE + "DeleteMicrogridDispatch"

DEFAULT_CALL_TIMEOUT: Final = timedelta(seconds=60)
MAX_PAGE_SIZE: Final = 1000

WallClock = Callable[[], datetime]


def system_clock() -> datetime:
    """The system's wall clock, in UTC."""
    return datetime.now(UTC)


class StreamEvent(enum.IntEnum):
    """What happened to a dispatch, as the server's stream reports it."""

    CREATED = 1
    UPDATED = 2
    DELETED = 3


class StreamItem(NamedTuple):
    """One message of the server's stream: unpacks as ``event, dispatch``."""

    event: StreamEvent
    dispatch: Dispatch


class SortField(enum.IntEnum):
    """What `DispatchClient.list` sorts by."""

    CREATE_TIME = 2
    START_TIME = 1
    UPDATE_TIME = 3


class SortOrder(enum.IntEnum):
    """Sort direction."""

    ASCENDING = 1
    DESCENDING = 2


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class DispatchPage:
    """One page of a listing."""

    dispatches: tuple[Dispatch, ...]
    total: int
    """How many dispatches match the whole query."""
    next_page_token: str | None
    """Opaque token of the next page; `None` on the last."""


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET: Final = _Unset.UNSET
"""Marks an update argument that was not given (distinct from `None`, which clears)."""

T = TypeVar("T")
Maybe: TypeAlias = T | Literal[_Unset.UNSET]


def _on_invalid_default(error: InvalidDispatchError) -> None:
    _log.warning("skipping %s", error)


@final
class DispatchClient:
    """A connection to a dispatch server. Build it with `open_client`."""

    def __init__(
        self,
        channel: transport.Channel,
        *,
        key: str,
        sign_secret: bytes | None,
        call_timeout: float,
        clock: WallClock,
        on_invalid: Callable[[InvalidDispatchError], None],
    ) -> None:
        self._channel = channel
        self._key = key
        self._secret = sign_secret
        self._call_timeout = call_timeout
        self._clock = clock
        self._on_invalid = on_invalid
        self._invalid = 0

    @property
    def invalid_dispatches(self) -> int:
        """How many dispatches from the server were skipped as invalid so far."""
        return self._invalid

    def _skip(self, error: InvalidDispatchError) -> None:
        self._invalid += 1
        self._on_invalid(error)

    # -- plumbing --------------------------------------------------------------------

    def _metadata(self, path: str) -> dict[str, str]:
        return auth_metadata(self._key, self._secret, path, now_s=int(self._clock().timestamp()))

    async def _call(self, path: str, request: Any, reply_type: type[T]) -> T:
        return await transport.unary(
            self._channel,
            path,
            request,
            reply_type,
            call_timeout=self._call_timeout,
            metadata=self._metadata(path),
        )

    def _decode(self, msg: pb2.Dispatch) -> Dispatch | None:
        try:
            return dispatch_from_pb2(msg)
        except InvalidDispatchError as exc:
            self._skip(exc)
            return None

    def _decode_or_raise(self, reply: Any) -> Dispatch:
        # Replies are parsed with the official classes (see `_convert`).
        if not reply.HasField("dispatch"):
            raise InvalidDispatchError(0, "the reply carries no dispatch")
        return dispatch_from_pb2(reply.dispatch)

    # -- the RPCs --------------------------------------------------------------------

    async def create(
        self,
        microgrid_id: int,
        *,
        type: str,
        start_time: datetime | Literal["now"],
        duration: timedelta | None,
        target: Target | None = None,
        active: bool = True,
        dry_run: bool = False,
        payload: Payload | None = None,
        recurrence: RecurrenceRule | None = None,
    ) -> Dispatch:
        """Create a dispatch and return it as the server stored it.

        `start_time="now"` asks the server to start it at its own current time. A
        datetime must be timezone-aware and not in the past.
        """
        _check_microgrid(microgrid_id)
        now = self._clock()
        immediately = isinstance(start_time, str)
        if immediately and start_time != "now":
            raise ValueError(f"start_time must be a datetime or 'now', got {start_time!r}")
        if not immediately:
            start = v.utc_datetime("start_time", start_time)
            if start < now:
                raise ValueError(
                    f"start_time must not be in the past, got {start.isoformat()} "
                    f"(now is {now.isoformat()})"
                )
        draft = Dispatch(  # validates every field, with the field's name in the error
            id=0,
            type=type,
            start_time=now if immediately else start_time,  # type: ignore[arg-type]
            duration=duration,
            target=TargetIds(ids=frozenset()) if target is None else target,
            active=active,
            dry_run=dry_run,
            payload={} if payload is None else payload,
            recurrence=recurrence,
        )
        data = dispatch_data_to_proto(draft)
        if immediately:
            data.start_time = None
        request = pb.CreateMicrogridDispatchRequest(
            microgrid_id=microgrid_id,
            dispatch_data=data,
            start_immediately=True if immediately else None,
        )
        reply = await self._call(CREATE, request, pb2.CreateMicrogridDispatchResponse)
        return self._decode_or_raise(reply)

    async def get(self, microgrid_id: int, dispatch_id: int) -> Dispatch:
        """Fetch one dispatch; `DispatchApiError` with ``NOT_FOUND`` if it does not exist."""
        _check_microgrid(microgrid_id)
        v.integer("dispatch_id", dispatch_id, 0, 2**64 - 1)
        request = pb.GetMicrogridDispatchRequest(microgrid_id=microgrid_id, dispatch_id=dispatch_id)
        reply = await self._call(GET, request, pb2.GetMicrogridDispatchResponse)
        return self._decode_or_raise(reply)

    async def delete(self, microgrid_id: int, dispatch_id: int) -> None:
        """Delete one dispatch; `DispatchApiError` with ``NOT_FOUND`` if it does not exist."""
        _check_microgrid(microgrid_id)
        v.integer("dispatch_id", dispatch_id, 0, 2**64 - 1)
        request = pb.DeleteMicrogridDispatchRequest(
            microgrid_id=microgrid_id, dispatch_id=dispatch_id
        )
        await self._call(DELETE, request, pb2.DeleteMicrogridDispatchResponse)

    async def update(
        self,
        microgrid_id: int,
        dispatch_id: int,
        *,
        start_time: Maybe[datetime] = UNSET,
        duration: Maybe[timedelta | None] = UNSET,
        target: Maybe[Target] = UNSET,
        active: Maybe[bool] = UNSET,
        payload: Maybe[Payload] = UNSET,
        recurrence: Maybe[RecurrenceRule | None] = UNSET,
        frequency: Maybe[Frequency] = UNSET,
        interval: Maybe[int] = UNSET,
        end_criteria: Maybe[EndCriteria | None] = UNSET,
        byminutes: Maybe[Iterable[int]] = UNSET,
        byhours: Maybe[Iterable[int]] = UNSET,
        byweekdays: Maybe[Iterable[Weekday]] = UNSET,
        bymonthdays: Maybe[Iterable[int]] = UNSET,
        bymonths: Maybe[Iterable[int]] = UNSET,
    ) -> Dispatch:
        """Change some fields of a dispatch; return it as updated.

        Only the arguments given are sent (as a field mask). `None` clears a field:
        ``duration=None`` makes the runs unbounded, ``recurrence=None`` makes it a
        one-off, ``end_criteria=None`` makes a rule endless. The recurrence sub-fields
        (`frequency` ... `bymonths`) change one part of the rule and keep the rest;
        they cannot be combined with `recurrence`.
        """
        _check_microgrid(microgrid_id)
        v.integer("dispatch_id", dispatch_id, 0, 2**64 - 1)
        update = pb.UpdateMicrogridDispatchRequestDispatchUpdate()
        paths: list[str] = []
        if start_time is not UNSET:
            start = v.utc_datetime("start_time", start_time)
            now = self._clock()
            if start < now:
                raise ValueError(
                    f"start_time must not be in the past, got {start.isoformat()} "
                    f"(now is {now.isoformat()})"
                )
            update.start_time = start
            paths.append("start_time")
        if duration is not UNSET:
            checked = v.whole_seconds("duration", duration)
            update.duration = None if checked is None else int(checked.total_seconds())
            paths.append("duration")
        if target is not UNSET:
            if not isinstance(target, TargetIds | TargetCategories):
                raise TypeError(f"target must be a TargetIds or TargetCategories, got {target!r}")
            update.target = target_to_proto(target)
            paths.append("target")
        if active is not UNSET:
            if not isinstance(active, bool):
                raise TypeError(f"active must be a bool, got {active!r}")
            update.is_active = active
            paths.append("is_active")
        if payload is not UNSET:
            update.payload = payload_to_proto(check_payload(payload))
            paths.append("payload")
        parts = {
            "freq": frequency,
            "interval": interval,
            "end_criteria": end_criteria,
            "byminutes": byminutes,
            "byhours": byhours,
            "byweekdays": byweekdays,
            "bymonthdays": bymonthdays,
            "bymonths": bymonths,
        }
        given = {name: value for name, value in parts.items() if value is not UNSET}
        if recurrence is not UNSET and given:
            raise ValueError(f"recurrence and its parts {sorted(given)} cannot be updated together")
        if recurrence is not UNSET:
            if recurrence is not None and not isinstance(recurrence, RecurrenceRule):
                raise TypeError(f"recurrence must be a RecurrenceRule or None, got {recurrence!r}")
            update.recurrence = None if recurrence is None else _rule_update(recurrence, None)
            paths.append("recurrence")
        elif given:
            update.recurrence = _rule_update(_partial_rule(given), given)
            paths.extend(f"recurrence.{name}" for name in given)
        if not paths:
            raise ValueError("update needs at least one field to change")
        request = pb.UpdateMicrogridDispatchRequest(
            microgrid_id=microgrid_id,
            dispatch_id=dispatch_id,
            update_mask=pb_wkt.FieldMask(paths=paths),
            update=update,
        )
        reply = await self._call(UPDATE, request, pb2.UpdateMicrogridDispatchResponse)
        return self._decode_or_raise(reply)

    def list(
        self,
        microgrid_id: int,
        *,
        targets: Sequence[Target] = (),
        active: bool | None = None,
        dry_run: bool | None = None,
        recurring: bool | None = None,
        start_from: datetime | None = None,
        start_to: datetime | None = None,
        end_from: datetime | None = None,
        end_to: datetime | None = None,
        update_from: datetime | None = None,
        update_to: datetime | None = None,
        dispatch_ids: Iterable[int] = (),
        queries: Iterable[str] = (),
        sort_by: SortField = SortField.CREATE_TIME,
        sort_order: SortOrder = SortOrder.DESCENDING,
        page_size: int = MAX_PAGE_SIZE,
    ) -> DispatchListing:
        """The dispatches of a microgrid that match all the given filters.

        Within a list filter (`targets`, `dispatch_ids`, `queries`) any item may match.
        Time filters are half-open intervals ``[from, to)``; leave out a side for no
        bound. A query ``"#12"`` matches dispatch 12, any other query a part of the type
        (ignoring case). Arguments are checked here; nothing is sent until iteration.

        Example:
            >>> async for dispatch in client.list(1, active=True):
            ...     print(dispatch.id)
            >>> async for page in client.list(1, page_size=100).pages():
            ...     print(page.total, len(page.dispatches))
        """
        _check_microgrid(microgrid_id)
        v.integer("page_size", page_size, 1, MAX_PAGE_SIZE)
        for target in targets:
            if not isinstance(target, TargetIds | TargetCategories):
                raise TypeError(
                    f"targets must contain TargetIds or TargetCategories, got {target!r}"
                )
        for name, flag in (("active", active), ("dry_run", dry_run), ("recurring", recurring)):
            if flag is not None and not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool or None, got {flag!r}")
        ids = [v.integer("dispatch_ids", i, 0, 2**64 - 1) for i in dispatch_ids]
        texts = list(queries)
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"queries must contain str, got {text!r}")
        if not isinstance(sort_by, SortField):
            raise TypeError(f"sort_by must be a SortField, got {sort_by!r}")
        if not isinstance(sort_order, SortOrder):
            raise TypeError(f"sort_order must be a SortOrder, got {sort_order!r}")
        request = pb.ListMicrogridDispatchesRequest(
            microgrid_id=microgrid_id,
            filter=pb.DispatchFilter(
                targets=[target_to_proto(t) for t in targets],
                is_active=active,
                is_dry_run=dry_run,
                is_recurring=recurring,
                start_time_interval=_interval("start", start_from, start_to),
                end_time_interval=_interval("end", end_from, end_to),
                update_time_interval=_interval("update", update_from, update_to),
                dispatch_ids=ids,
                queries=texts,
            ),
            sort_options=pb.SortOptions(
                sort_field=pb.SortField(int(sort_by)), sort_order=pb.SortOrder(int(sort_order))
            ),
        )
        return DispatchListing(self, request, page_size)

    async def _list_page(
        self, request: pb.ListMicrogridDispatchesRequest, page_size: int, token: str | None
    ) -> DispatchPage:
        paged = pb.ListMicrogridDispatchesRequest(
            microgrid_id=request.microgrid_id,
            filter=request.filter,
            sort_options=request.sort_options,
            pagination_params=(
                pb_page.PaginationParams(page_size=page_size)
                if token is None
                else pb_page.PaginationParams(page_token=token)
            ),
        )
        reply = await self._call(LIST, paged, pb2.ListMicrogridDispatchesResponse)
        decoded = (self._decode(d) for d in reply.dispatches)
        info = reply.pagination_info
        return DispatchPage(
            dispatches=tuple(d for d in decoded if d is not None),
            total=info.total_items,
            next_page_token=info.next_page_token or None,
        )

    @asynccontextmanager
    async def stream(
        self, microgrid_id: int, *, window: int = transport.STREAM_WINDOW
    ) -> AsyncIterator[trio.abc.ReceiveChannel[StreamItem]]:
        """Subscribe to the changes of a microgrid's dispatches.

        Yields a receive channel of `StreamItem` ``(event, dispatch)``. It ends with
        `trio.EndOfChannel` if the server ends the stream; a broken stream raises
        `DispatchConnectionError` out of the ``async with``. Reconnecting is the
        dispatcher's job, not this call's.

        Example:
            >>> async with client.stream(1) as events:
            ...     async for event, dispatch in events:
            ...         print(event.name, dispatch.id)
        """
        _check_microgrid(microgrid_id)
        request = pb.StreamMicrogridDispatchesRequest(microgrid_id=microgrid_id)
        async with transport.open_stream(
            self._channel,
            STREAM,
            request,
            pb2.StreamMicrogridDispatchesResponse,
            self._stream_item,
            metadata=self._metadata(STREAM),
            window=window,
        ) as receiver:
            yield receiver

    def _stream_item(self, msg: pb2.StreamMicrogridDispatchesResponse) -> StreamItem | None:
        event = int(msg.event)
        if event not in StreamEvent._value2member_map_:
            _log.warning("skipping a stream message with unknown event %d", event)
            return None
        if not msg.HasField("dispatch"):
            self._skip(InvalidDispatchError(0, "stream message carries no dispatch"))
            return None
        dispatch = self._decode(msg.dispatch)
        return None if dispatch is None else StreamItem(StreamEvent(event), dispatch)


@final
class DispatchListing:
    """The result of `DispatchClient.list`: iterate it for dispatches, or `pages()`.

    Pages are fetched as the iteration needs them; each iteration starts afresh.
    Dispatches the model cannot represent are skipped and reported to ``on_invalid``
    (see `open_client`).
    """

    def __init__(
        self, client: DispatchClient, request: pb.ListMicrogridDispatchesRequest, page_size: int
    ) -> None:
        self._client = client
        self._request = request
        self._page_size = page_size

    def pages(self) -> AsyncIterator[DispatchPage]:
        """Iterate over the pages, fetching each when it is asked for."""
        return _Pages(self._client, self._request, self._page_size)

    def __aiter__(self) -> AsyncIterator[Dispatch]:
        return _Items(self.pages())


# Plain classes rather than async generators: an async generator left early (``break``,
# cancellation) is only finalized by the garbage collector, which trio reports.
@final
class _Pages:
    def __init__(
        self, client: DispatchClient, request: pb.ListMicrogridDispatchesRequest, page_size: int
    ) -> None:
        self._client = client
        self._request = request
        self._page_size = page_size
        self._token: str | None = None
        self._done = False

    def __aiter__(self) -> _Pages:
        return self

    async def __anext__(self) -> DispatchPage:
        if self._done:
            raise StopAsyncIteration
        page = await self._client._list_page(self._request, self._page_size, self._token)
        self._token = page.next_page_token
        self._done = self._token is None
        return page


@final
class _Items:
    def __init__(self, pages: AsyncIterator[DispatchPage]) -> None:
        self._pages = pages
        self._buffer: list[Dispatch] = []

    def __aiter__(self) -> _Items:
        return self

    async def __anext__(self) -> Dispatch:
        while not self._buffer:
            page = await anext(self._pages)  # StopAsyncIteration ends us too
            self._buffer = list(reversed(page.dispatches))
        return self._buffer.pop()


def _check_microgrid(microgrid_id: int) -> None:
    v.integer("microgrid_id", microgrid_id, 0, 2**64 - 1)


def _partial_rule(given: dict[str, Any]) -> RecurrenceRule:
    """Validate the given rule parts by building a rule of them alone."""
    fields = {("frequency" if k == "freq" else k): val for k, val in given.items()}
    if fields.get("end_criteria") is not None and not isinstance(
        fields["end_criteria"], EndCriteria
    ):
        raise TypeError(
            f"end_criteria must be an EndCriteria or None, got {fields['end_criteria']!r}"
        )
    if "interval" in fields and "frequency" not in fields:
        v.integer("interval", fields["interval"], 1, v.UINT32_MAX)
    return RecurrenceRule(**fields)


def _rule_update(
    rule: RecurrenceRule, only: dict[str, Any] | None
) -> pb.UpdateMicrogridDispatchRequestDispatchUpdateRecurrenceRuleUpdate:
    """The rule as a `RecurrenceRuleUpdate`; with `only`, just those parts."""

    def want(name: str) -> bool:
        return only is None or name in only

    return pb.UpdateMicrogridDispatchRequestDispatchUpdateRecurrenceRuleUpdate(
        freq=pb.RecurrenceRuleFrequency(int(rule.frequency)) if want("freq") else None,
        interval=rule.interval if want("interval") else None,
        end_criteria=end_criteria_to_proto(rule.end_criteria) if want("end_criteria") else None,
        byminutes=list(rule.byminutes),
        byhours=list(rule.byhours),
        byweekdays=[pb.RecurrenceRuleWeekday(int(d)) for d in rule.byweekdays],
        bymonthdays=list(rule.bymonthdays),
        bymonths=list(rule.bymonths),
    )


def _interval(name: str, start: datetime | None, end: datetime | None) -> pb_types.Interval | None:
    if start is None and end is None:
        return None
    lo = v.optional_utc_datetime(f"{name}_from", start)
    hi = v.optional_utc_datetime(f"{name}_to", end)
    if lo is not None and hi is not None and hi < lo:
        raise ValueError(f"{name}_to must not be before {name}_from, got {hi} < {lo}")
    return pb_types.Interval(start_time=lo, end_time=hi)


@asynccontextmanager
async def open_client(
    *,
    server_url: str,
    key: str,
    sign_secret: str | None = None,
    call_timeout: timedelta = DEFAULT_CALL_TIMEOUT,
    clock: WallClock = system_clock,
    on_invalid: Callable[[InvalidDispatchError], None] = _on_invalid_default,
) -> AsyncIterator[DispatchClient]:
    """Connect to a dispatch server for the duration of the ``async with``.

    Works in any trio program, whether or not it already runs a trio-asyncio loop.
    Leaving the block closes the HTTP/2 connection.

    Args:
        server_url: ``grpc://host[:port][?ssl=false&...]``; see `parse_server_url`.
        key: the API key, sent with every call.
        sign_secret: when given, every call is signed with it (HMAC-SHA256).
        call_timeout: deadline of each unary call.
        clock: the wall clock (UTC) used to refuse past start times and to sign.
        on_invalid: called with each dispatch from the server that cannot be
            represented; the default logs a warning. The dispatch is skipped.

    Example:
        >>> async with open_client(server_url=url, key=key) as client:
        ...     dispatch = await client.get(1, 42)
    """
    url = parse_server_url(server_url)
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty str, got {key!r}")
    if sign_secret is not None and (not isinstance(sign_secret, str) or not sign_secret):
        raise ValueError("sign_secret must be a non-empty str or None")
    if not isinstance(call_timeout, timedelta) or call_timeout <= timedelta(0):
        raise ValueError(f"call_timeout must be a positive timedelta, got {call_timeout!r}")
    async with transport.open_grpc_channel(url) as channel:
        yield DispatchClient(
            channel,
            key=key,
            sign_secret=None if sign_secret is None else sign_secret.encode(),
            call_timeout=call_timeout.total_seconds(),
            clock=clock,
            on_invalid=on_invalid,
        )
