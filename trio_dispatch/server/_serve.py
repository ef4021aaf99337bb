"""Run the embedded dispatch server inside a trio program.

`serve_dispatch_api` is a long-running task in the trio style: start it with
``await nursery.start(serve_dispatch_api, ...)``, which returns once the server listens
and tells where; cancel the nursery to stop it. `open_dispatch_server` wraps the same as
an ``async with`` for tests and scripts.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, final

import grpclib.protocol
import grpclib.server
import trio
import trio_asyncio

from .._client import system_clock
from .._transport import asyncio_loop
from ._keys import KeyRing
from ._service import DispatchService, WireCodec
from ._store import DispatchStore

__all__ = ["RunningServer", "open_dispatch_server", "serve_dispatch_api"]

_log = logging.getLogger("trio_dispatch.server")

CLOSE_TIMEOUT: Final = 5.0
"""Seconds a stopping server waits for its connections to close."""


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class RunningServer:
    """Where a started server listens."""

    host: str
    port: int
    tls: bool

    @property
    def url(self) -> str:
        """The URL clients use: ``grpc://host:port?ssl=...``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"grpc://{host}:{self.port}?ssl={'true' if self.tls else 'false'}"


def _server_tls(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["h2"])
    return ctx


def _key_ring(keys: KeyRing | Iterable[str]) -> KeyRing:
    if isinstance(keys, KeyRing):
        return keys
    if isinstance(keys, str):
        raise TypeError("keys must be a KeyRing or a collection of key strings, not one str")
    return KeyRing.of(*keys)


class _Server(grpclib.server.Server):
    """grpclib's server, remembering its connections so that stopping can close them.

    grpclib's `close` only cancels the running handlers: its connections stay open, so
    a client's stream would wait forever on a stopped server and the sockets leak.
    """

    def __init__(self, handlers: list[DispatchService]) -> None:
        super().__init__(handlers, codec=WireCodec())
        self._protocols: weakref.WeakSet[grpclib.protocol.H2Protocol] = weakref.WeakSet()

    def _protocol_factory(self) -> grpclib.protocol.H2Protocol:
        protocol = super()._protocol_factory()
        self._protocols.add(protocol)
        return protocol

    def close_connections(self) -> None:
        for protocol in list(self._protocols):
            connection = getattr(protocol, "connection", None)
            if connection is not None:
                connection.close()


async def serve_dispatch_api(
    *,
    keys: KeyRing | Iterable[str],
    host: str = "127.0.0.1",
    port: int = 0,
    database: str | Path = ":memory:",
    tls_cert: str | Path | None = None,
    tls_key: str | Path | None = None,
    clock: Callable[[], datetime] = system_clock,
    task_status: trio.TaskStatus[RunningServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `frequenz.api.dispatch.v1.MicrogridDispatchService` until cancelled.

    Args:
        keys: who may call: a `KeyRing`, or plain key strings granting every microgrid.
        host: the address to listen on.
        port: the port to listen on; 0 picks a free one.
        database: the SQLite file (created if missing), or ``":memory:"``.
        tls_cert: PEM certificate chain; give it with `tls_key`, or neither. Without
            them the server speaks plain HTTP/2 (clients use ``?ssl=false``).
        tls_key: PEM private key of `tls_cert`.
        clock: the wall clock (UTC) for create/update times and the past-start check.
        task_status: receives the `RunningServer` once listening.

    Example:
        >>> async with trio.open_nursery() as nursery:
        ...     server = await nursery.start(
        ...         functools.partial(serve_dispatch_api, keys=["secret"], port=50051)
        ...     )
        ...     print(server.url)
    """
    ring = _key_ring(keys)
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert and tls_key must be given together")
    tls = None if tls_cert is None or tls_key is None else _server_tls(tls_cert, tls_key)
    with DispatchStore.open(database) as store:
        async with asyncio_loop():
            server = _Server([DispatchService(store, ring, clock)])
            await trio_asyncio.aio_as_trio(server.start)(host, port, ssl=tls)
            try:
                listening = server._server
                assert isinstance(listening, asyncio.Server)
                bound = listening.sockets[0].getsockname()
                running = RunningServer(host=host, port=bound[1], tls=tls is not None)
                _log.info("dispatch server listening on %s", running.url)
                task_status.started(running)
                await trio.sleep_forever()
            finally:
                server.close()
                server.close_connections()
                with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
                    await trio_asyncio.aio_as_trio(server.wait_closed)()
                    # Let the closed transports run their callbacks before the loop
                    # (possibly ours) goes away; otherwise the sockets are reported unclosed.
                    await trio_asyncio.aio_as_trio(asyncio.sleep)(0)


@asynccontextmanager
async def open_dispatch_server(
    *,
    keys: KeyRing | Iterable[str],
    host: str = "127.0.0.1",
    port: int = 0,
    database: str | Path = ":memory:",
    tls_cert: str | Path | None = None,
    tls_key: str | Path | None = None,
    clock: Callable[[], datetime] = system_clock,
) -> AsyncIterator[RunningServer]:
    """Run the server for the duration of the ``async with``; see `serve_dispatch_api`.

    Example:
        >>> async with open_dispatch_server(keys=["secret"]) as server:
        ...     async with open_client(server_url=server.url, key="secret") as client:
        ...         ...
    """
    async with trio.open_nursery() as nursery:
        running: RunningServer = await nursery.start(
            lambda task_status: serve_dispatch_api(
                keys=keys,
                host=host,
                port=port,
                database=database,
                tls_cert=tls_cert,
                tls_key=tls_key,
                clock=clock,
                task_status=task_status,
            )
        )
        try:
            yield running
        finally:
            nursery.cancel_scope.cancel()
