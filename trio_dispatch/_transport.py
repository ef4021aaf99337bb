"""The one I/O seam: grpclib (asyncio) hosted inside trio through trio-asyncio.

Nothing above this module imports asyncio, grpclib or trio_asyncio. What it offers trio
code is small: open a connection (`open_grpc_channel`), make a unary call (`unary`),
and run a server stream into a trio channel (`open_stream`).

Theory of operation:

* grpclib needs an asyncio loop. `asyncio_loop()` enters the caller's trio-asyncio loop
  if one is running, and opens one otherwise; asyncio timers then follow trio's clock,
  so gRPC deadlines obey `MockClock` in tests.
* A unary call crosses the bridge once (`aio_as_trio`), ~65 us; negligible.
* A stream crosses it once per call, not once per message: an asyncio-side pump reads
  messages, converts each with a caller-supplied function, and hands it to trio with the
  synchronous `send_nowait`. A window of `STREAM_WINDOW` items bounds the buffer; when
  it is full the pump waits, grpclib stops reading, and HTTP/2 flow control pushes back
  on the server.
* Every grpclib and socket error is translated here, in `translate_errors`, into
  `DispatchApiError` (the server answered with a status) or `DispatchConnectionError`
  (no answer), with the original as ``__cause__``.
* Cancellation from trio cancels the asyncio task; grpclib then resets the HTTP/2
  stream, so the server sees the call end.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Final, Generic, TypeVar

import grpclib.client
import grpclib.config
import grpclib.const
import grpclib.exceptions
import trio
import trio_asyncio

from ._exceptions import DispatchApiError, DispatchConnectionError
from ._url import ServerUrl

__all__ = ["STREAM_WINDOW", "Channel", "asyncio_loop", "open_grpc_channel", "translate_errors"]

T = TypeVar("T")

STREAM_WINDOW: Final = 1024
"""Items a stream may buffer on the trio side before the pump waits for the reader."""

# Statuses that mean "no usable answer from the server" rather than "the server said no".
_CONNECTION_STATUSES: Final = frozenset(
    {grpclib.const.Status.UNAVAILABLE, grpclib.const.Status.DEADLINE_EXCEEDED}
)

Channel = grpclib.client.Channel


@asynccontextmanager
async def asyncio_loop() -> AsyncIterator[None]:
    """Run the body with a trio-asyncio loop: the caller's, or a new one."""
    if trio_asyncio.current_loop.get() is not None:
        yield
        return
    async with trio_asyncio.open_loop():
        yield


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Translate grpclib and network errors raised in the body; `what` names the call."""
    try:
        yield
    except grpclib.exceptions.GRPCError as exc:
        message = exc.message or ""
        if exc.status in _CONNECTION_STATUSES:
            detail = f": {message}" if message else ""
            raise DispatchConnectionError(f"{what}: {exc.status.name}{detail}") from exc
        raise DispatchApiError(exc.status.name, message) from exc
    except (
        OSError,  # includes TimeoutError
        grpclib.exceptions.StreamTerminatedError,
        grpclib.exceptions.ProtocolError,
    ) as exc:
        raise DispatchConnectionError(f"{what}: {type(exc).__name__}: {exc}") from exc


def _ssl_context(url: ServerUrl) -> ssl.SSLContext:
    ctx = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH,
        cafile=None
        if url.ssl_root_certificates_path is None
        else str(url.ssl_root_certificates_path),
    )
    if url.ssl_certificate_chain_path is not None:
        ctx.load_cert_chain(
            str(url.ssl_certificate_chain_path),
            None if url.ssl_private_key_path is None else str(url.ssl_private_key_path),
        )
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["h2"])
    return ctx


@asynccontextmanager
async def open_grpc_channel(url: ServerUrl) -> AsyncIterator[Channel]:
    """Open an HTTP/2 channel to `url`; closing the context closes the connection.

    The connection itself is made lazily, by the first call.
    """
    config = grpclib.config.Configuration(
        _keepalive_time=url.keep_alive_interval_s if url.keep_alive else None,
        _keepalive_timeout=url.keep_alive_timeout_s,
        _keepalive_permit_without_calls=url.keep_alive,
    )
    async with asyncio_loop():
        channel = Channel(
            url.host, url.port, ssl=_ssl_context(url) if url.ssl else None, config=config
        )
        try:
            yield channel
        finally:
            channel.close()
            # Let the asyncio side run the transport's close callbacks before the loop
            # (possibly ours) goes away; otherwise the socket is reported as unclosed.
            with trio.CancelScope(shield=True):
                await trio_asyncio.aio_as_trio(asyncio.sleep)(0)


async def unary(
    channel: Channel,
    path: str,
    request: Any,
    reply_type: type[T],
    *,
    call_timeout: float | None,
    metadata: Mapping[str, str],
) -> T:
    """Make one unary call; raises as `translate_errors` says.

    `call_timeout` (seconds) becomes the gRPC deadline, which the server sees too.
    """
    with translate_errors(path.rsplit("/", 1)[-1]):
        reply: T = await trio_asyncio.aio_as_trio(_aio_unary)(
            channel, path, request, reply_type, call_timeout, metadata
        )
        return reply


async def _aio_unary(
    channel: Channel,
    path: str,
    request: Any,
    reply_type: type[T],
    call_timeout: float | None,
    metadata: Mapping[str, str],
) -> T:
    async with channel.request(
        path,
        grpclib.const.Cardinality.UNARY_UNARY,
        type(request),
        reply_type,
        timeout=call_timeout,
        metadata=metadata,
    ) as stream:
        await stream.send_message(request, end=True)
        reply = await stream.recv_message()
    if reply is None:
        raise grpclib.exceptions.ProtocolError("the server sent no reply message")
    return reply


class StreamReceiver(trio.abc.ReceiveChannel[T], Generic[T]):
    """The trio end of a server stream; opens space in the window as items are read."""

    def __init__(self, receive: trio.MemoryReceiveChannel[T], space: asyncio.Event) -> None:
        self._receive = receive
        self._space = space

    def receive_nowait(self) -> T:
        """Return a buffered item, or raise `trio.WouldBlock`."""
        item = self._receive.receive_nowait()
        if not self._space.is_set():
            self._space.set()
        return item

    async def receive(self) -> T:
        """Wait for the next item; `trio.EndOfChannel` after the stream ended."""
        item = await self._receive.receive()
        if not self._space.is_set():
            self._space.set()
        return item

    async def aclose(self) -> None:
        """Stop reading; the pump is cancelled by whoever owns it."""
        await self._receive.aclose()


@asynccontextmanager
async def open_stream(
    channel: Channel,
    path: str,
    request: Any,
    reply_type: type[Any],
    convert: Callable[[Any], T | None],
    *,
    metadata: Mapping[str, str],
    window: int = STREAM_WINDOW,
) -> AsyncIterator[StreamReceiver[T]]:
    """Run a server-streaming call; yield a trio receive channel of converted items.

    `convert` runs on each message as it arrives; returning `None` skips the message.
    The receiver ends with `trio.EndOfChannel` when the server ends the stream cleanly.
    A failed stream raises `DispatchApiError` / `DispatchConnectionError` out of this
    context manager (and cancels its body). Leaving the context cancels the call.

    The body starts once the server has answered the call with its response headers,
    so that for a server that sends them on subscribing (ours does), nothing written
    after the body starts can be missed.
    """
    send, receive = trio.open_memory_channel[T](window)
    space = asyncio.Event()
    space.set()
    receiver = StreamReceiver(receive, space)
    name = path.rsplit("/", 1)[-1]
    subscribed = trio.Event()

    async def pump() -> None:
        with send, translate_errors(name):
            await trio_asyncio.aio_as_trio(_aio_pump)(
                channel, path, request, reply_type, convert, metadata, send, space, subscribed
            )

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump)
            await subscribed.wait()
            try:
                yield receiver
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The strict nursery wraps even a lone error (the pump's, or the body's); the
        # caller is promised the bare one, so that ``except DispatchConnectionError``
        # works. A group of several errors stays a group.
        if len(group.exceptions) != 1:
            raise
        error = group.exceptions[0]
        context = error.__context__
        try:
            raise error
        finally:
            error.__context__ = context  # keep the error's own context, not the group
            del error, context


async def _aio_pump(
    channel: Channel,
    path: str,
    request: Any,
    reply_type: type[Any],
    convert: Callable[[Any], T | None],
    metadata: Mapping[str, str],
    send: trio.MemorySendChannel[T],
    space: asyncio.Event,
    subscribed: trio.Event,
) -> None:
    async with channel.request(
        path,
        grpclib.const.Cardinality.UNARY_STREAM,
        type(request),
        reply_type,
        metadata=metadata,
    ) as stream:
        await stream.send_message(request, end=True)
        await stream.recv_initial_metadata()
        subscribed.set()
        while (message := await stream.recv_message()) is not None:
            item = convert(message)
            if item is None:
                continue
            while True:
                try:
                    send.send_nowait(item)
                    break
                except trio.WouldBlock:
                    space.clear()
                    await space.wait()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
