"""Shared fixtures: a wall clock on trio's clock, the embedded server, client factories.

Tests that use the async fixtures must also take ``autojump_clock`` (pytest-trio hands
the clock to ``trio.run`` only when the test function itself asks for it), so that the
server, the client and `WallClock` all run on virtual time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from trio_dispatch._client import DispatchClient, open_client
from trio_dispatch.server import _serve
from trio_dispatch.server._keys import ApiKey, KeyRing
from trio_dispatch.server._serve import RunningServer, open_dispatch_server
from trio_dispatch.server._service import DispatchService
from trio_dispatch.testing import WallClock

ClientFactory = Callable[..., AbstractAsyncContextManager[DispatchClient]]


@pytest.fixture
async def wall_clock() -> WallClock:
    """A UTC clock that starts at 2030-01-01T00:00Z and follows trio's (virtual) clock."""
    return WallClock()


@pytest.fixture
def key_ring() -> KeyRing:
    """The server's keys.

    * ``"test-key"``: every microgrid, unsigned.
    * ``"grid-7-key"``: microgrid 7 only, unsigned.
    * ``"signing-key"``: every microgrid; requests must be signed with ``"s3cret"``.
    """
    return KeyRing(
        [
            ApiKey(key="test-key"),
            ApiKey(key="grid-7-key", microgrids=frozenset({7})),
            ApiKey(key="signing-key", sign_secret="s3cret"),
        ]
    )


@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch) -> list[DispatchService]:
    """The `DispatchService` objects the servers of this test create, in order.

    For the few tests that must look inside the server (e.g. its stream subscribers).
    """
    created: list[DispatchService] = []

    def recording(*args: Any, **kwargs: Any) -> DispatchService:
        service = DispatchService(*args, **kwargs)
        created.append(service)
        return service

    monkeypatch.setattr(_serve, "DispatchService", recording)
    return created


@pytest.fixture
async def server(key_ring: KeyRing, wall_clock: WallClock) -> AsyncIterator[RunningServer]:
    """The embedded server on a free loopback port, plain HTTP/2, in-memory storage."""
    async with open_dispatch_server(keys=key_ring, clock=wall_clock) as running:
        yield running


@pytest.fixture
def connect(server: RunningServer, wall_clock: WallClock) -> ClientFactory:
    """``connect(**overrides)``: `open_client` to `server` as ``"test-key"`` on `wall_clock`."""

    def factory(**overrides: Any) -> AbstractAsyncContextManager[DispatchClient]:
        options: dict[str, Any] = {
            "server_url": server.url,
            "key": "test-key",
            "clock": wall_clock,
            **overrides,
        }
        return open_client(**options)

    return factory


@pytest.fixture
async def client(connect: ClientFactory) -> AsyncIterator[DispatchClient]:
    """A client connected to `server` as ``"test-key"``."""
    async with connect() as connected:
        yield connected
