"""The gRPC face of the embedded server: `MicrogridDispatchService` on grpclib.

Each handler authenticates the call (`KeyRing`), asks the store, and answers; an
`ApiError` from below becomes a gRPC status here and nowhere else. Handlers run on the
asyncio side of trio-asyncio and call the store synchronously: one thread, so the store
needs no locks and trio's fake clock governs everything in tests.

Streams: each subscriber of a microgrid has its own bounded queue. A write commits,
then puts the event into every subscriber's queue without waiting, in commit order. A
subscriber whose queue is full is not waited for: its stream ends with ``UNAVAILABLE``
and it must reconnect and re-list (which the dispatcher does). So a slow subscriber can
stall neither the writers nor the other subscribers, and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

import grpclib.const
import grpclib.encoding.proto
import grpclib.server
from grpclib.exceptions import GRPCError

from .._proto.frequenz.api.common.v1alpha8 import pagination as pb_page
from .._proto.frequenz.api.common.v1alpha8 import streaming as pb_streaming
from .._proto.frequenz.api.dispatch import v1 as pb
from ._errors import ApiError
from ._keys import KeyRing
from ._store import DispatchStore

__all__ = ["SUBSCRIBER_QUEUE_SIZE", "DispatchService"]

_log = logging.getLogger("trio_dispatch.server")

SUBSCRIBER_QUEUE_SIZE: Final = 10_000
"""Events a stream subscriber may fall behind before its stream is ended."""

_SERVICE: Final = "/frequenz.api.dispatch.v1.MicrogridDispatchService/"
_STREAM: Final = _SERVICE + "StreamMicrogridDispatches"
_Status = grpclib.const.Status
_Unary = grpclib.const.Cardinality.UNARY_UNARY


class Encoded:
    """A reply serialized in advance; `WireCodec` sends its bytes as they are."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class WireCodec(grpclib.encoding.proto.ProtoCodec):
    """grpclib's protobuf codec, plus pass-through of `Encoded` replies."""

    def encode(self, message: Any, message_type: type[Any]) -> bytes:
        """Serialize `message` (or return the bytes of an `Encoded` one)."""
        if isinstance(message, Encoded):
            return message.data
        return super().encode(message, message_type)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field: tag, length, bytes."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


class _Subscriber:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Encoded] = asyncio.Queue(SUBSCRIBER_QUEUE_SIZE)
        self.overflowed = False


class DispatchService:
    """The servable object handed to `grpclib.server.Server`."""

    def __init__(self, store: DispatchStore, keys: KeyRing, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._keys = keys
        self._clock = clock
        self._subscribers: dict[int, set[_Subscriber]] = {}

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        def unary(
            method: str, handler: Callable[[Any], Any], request: type[Any], reply: type[Any]
        ) -> tuple[str, grpclib.const.Handler]:
            path = _SERVICE + method

            async def serve(stream: grpclib.server.Stream[Any, Any]) -> None:
                message = await stream.recv_message()
                await stream.send_message(self._answer(stream, path, message, handler))

            return path, grpclib.const.Handler(serve, _Unary, request, reply)

        return dict(
            [
                unary(
                    "ListMicrogridDispatches",
                    self._list,
                    pb.ListMicrogridDispatchesRequest,
                    pb.ListMicrogridDispatchesResponse,
                ),
                unary(
                    "GetMicrogridDispatch",
                    self._get,
                    pb.GetMicrogridDispatchRequest,
                    pb.GetMicrogridDispatchResponse,
                ),
                unary(
                    "CreateMicrogridDispatch",
                    self._create,
                    pb.CreateMicrogridDispatchRequest,
                    pb.CreateMicrogridDispatchResponse,
                ),
                unary(
                    "UpdateMicrogridDispatch",
                    self._update,
                    pb.UpdateMicrogridDispatchRequest,
                    pb.UpdateMicrogridDispatchResponse,
                ),
                unary(
                    "DeleteMicrogridDispatch",
                    self._delete,
                    pb.DeleteMicrogridDispatchRequest,
                    pb.DeleteMicrogridDispatchResponse,
                ),
            ]
        ) | {
            _STREAM: grpclib.const.Handler(
                self._stream,
                grpclib.const.Cardinality.UNARY_STREAM,
                pb.StreamMicrogridDispatchesRequest,
                pb.StreamMicrogridDispatchesResponse,
            ),
        }

    # -- plumbing --------------------------------------------------------------------

    def _answer(
        self,
        stream: grpclib.server.Stream[Any, Any],
        path: str,
        message: Any,
        handler: Callable[[Any], Any],
    ) -> Any:
        """Authenticate, authorize and run `handler`; an `ApiError` becomes a status."""
        try:
            if message is None:
                raise ApiError("INVALID_ARGUMENT", "the request carries no message")
            metadata: Mapping[str, str] = {
                k: v for k, v in (stream.metadata or {}).items() if isinstance(v, str)
            }
            api_key = self._keys.authenticate(metadata, path, self._clock())
            self._keys.authorize(api_key, message.microgrid_id)
            return handler(message)
        except ApiError as exc:
            raise GRPCError(grpclib.const.Status[exc.status], exc.message) from None

    def _publish(self, microgrid_id: int, event: pb_streaming.Event, body: bytes) -> None:
        subscribers = self._subscribers.get(microgrid_id)
        if not subscribers:
            return
        # StreamMicrogridDispatchesResponse: dispatch = 1, event = 2; encoded once for all.
        message = Encoded(_field(1, body) + _varint(2 << 3) + _varint(int(event)))
        for subscriber in subscribers:
            if subscriber.overflowed:
                continue
            try:
                subscriber.queue.put_nowait(message)
            except asyncio.QueueFull:
                subscriber.overflowed = True
                _log.warning("ending a stream of microgrid %d: subscriber too slow", microgrid_id)

    # -- the RPCs --------------------------------------------------------------------

    def _list(self, request: pb.ListMicrogridDispatchesRequest) -> Any:
        page = self._store.list(request.microgrid_id, request)
        info = pb_page.PaginationInfo(
            total_items=page.total_items, next_page_token=page.next_page_token
        )
        # ListMicrogridDispatchesResponse: dispatches = 1 (repeated), pagination_info = 2.
        parts = [_field(1, self._store.encoded(d.id)) for d in page.items]
        parts.append(_field(2, bytes(info)))
        return Encoded(b"".join(parts))

    def _get(self, request: pb.GetMicrogridDispatchRequest) -> Any:
        dispatch = self._store.get(request.microgrid_id, request.dispatch_id)
        # GetMicrogridDispatchResponse: microgrid_id = 1, dispatch = 2.
        head = _varint(1 << 3) + _varint(request.microgrid_id) if request.microgrid_id else b""
        return Encoded(head + _field(2, self._store.encoded(dispatch.id)))

    def _create(self, request: pb.CreateMicrogridDispatchRequest) -> Any:
        if request.dispatch_data is None:
            raise ApiError("INVALID_ARGUMENT", "dispatch_data is missing")
        dispatch = self._store.create(
            request.microgrid_id,
            request.dispatch_data,
            start_immediately=bool(request.start_immediately),
            now=self._clock(),
        )
        self._publish(
            request.microgrid_id, pb_streaming.Event.CREATED, self._store.encoded(dispatch.id)
        )
        return Encoded(_field(1, self._store.encoded(dispatch.id)))  # Create...Response.dispatch

    def _update(self, request: pb.UpdateMicrogridDispatchRequest) -> Any:
        dispatch = self._store.update(request.microgrid_id, request, now=self._clock())
        self._publish(
            request.microgrid_id, pb_streaming.Event.UPDATED, self._store.encoded(dispatch.id)
        )
        return Encoded(_field(1, self._store.encoded(dispatch.id)))  # Update...Response.dispatch

    def _delete(self, request: pb.DeleteMicrogridDispatchRequest) -> Any:
        self._store.get(request.microgrid_id, request.dispatch_id)  # NOT_FOUND before anything
        body = self._store.encoded(request.dispatch_id)
        self._store.delete(request.microgrid_id, request.dispatch_id)
        self._publish(request.microgrid_id, pb_streaming.Event.DELETED, body)
        return pb.DeleteMicrogridDispatchResponse(
            microgrid_id=request.microgrid_id, dispatch_id=request.dispatch_id
        )

    async def _stream(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        self._answer(stream, _STREAM, request, lambda _: None)
        assert request is not None
        microgrid_id: int = request.microgrid_id
        subscriber = _Subscriber()
        self._subscribers.setdefault(microgrid_id, set()).add(subscriber)
        try:
            await stream.send_initial_metadata()
            while True:
                if subscriber.overflowed:
                    raise GRPCError(
                        _Status.UNAVAILABLE,
                        "the subscriber fell too far behind; reconnect and list again",
                    )
                await stream.send_message(await subscriber.queue.get())
        finally:
            self._subscribers[microgrid_id].discard(subscriber)
            if not self._subscribers[microgrid_id]:
                del self._subscribers[microgrid_id]
