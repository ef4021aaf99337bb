"""Harness for `test_dispatcher.py`: the real embedded server, with a few test seams.

* `ServerControl` runs `serve_dispatch_api` in the test's nursery and can stop it and
  start it again on the same port and database file, as often as a test likes.
* `ServiceHooks` (installed with `install_hooks`) swaps the server's `DispatchService`
  for a subclass that behaves exactly like it unless told otherwise: it can add latency
  to every call, refuse the next stream calls with ``UNAVAILABLE``, end the open streams
  cleanly (status OK), add raw (possibly invalid) dispatches to list replies or to the
  streams, and it records when streams were called and how they ended.
* `Recorder` reads a receiver in a task and keeps ``(wall time, item)`` pairs.

Every helper keeps to the public API of the server and client, except the service
subclass, which needs the service's internals to inject what a correct server never
sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpclib.const
import grpclib.server
import pytest
import trio
import trio_asyncio
import trio_util
from grpclib.exceptions import GRPCError

from trio_dispatch import (
    ConnectionState,
    Created,
    Deleted,
    Dispatcher,
    LifecycleEvent,
    Receiver,
    RunningStatus,
    Updated,
    open_client,
    open_dispatcher,
)
from trio_dispatch._client import DispatchClient
from trio_dispatch._proto.frequenz.api.dispatch import v1 as pb
from trio_dispatch.server import _serve
from trio_dispatch.server._serve import RunningServer, serve_dispatch_api
from trio_dispatch.server._service import DispatchService, Encoded, _field
from trio_dispatch.testing import DEFAULT_EPOCH, WallClock

KEY = "test-key"
MICROGRID = 1
T0 = DEFAULT_EPOCH  # what the test's WallClock shows when the test starts


def minutes(m: float) -> timedelta:
    return timedelta(minutes=m)


def at(m: float) -> datetime:
    """The wall time `m` minutes after the test started."""
    return T0 + minutes(m)


# -- the server ----------------------------------------------------------------------------


class ServiceHooks:
    """Shared state of every `HookedService` a test's servers create."""

    def __init__(self) -> None:
        self.services: list[HookedService] = []
        self.latency = 0.0
        """Seconds (virtual) every call waits before it is handled."""
        self.list_latency = 0.0
        """Seconds (virtual) a list call waits, after its request arrived, to be handled."""
        self.refuse_streams = 0
        """Refuse this many of the next stream calls with ``UNAVAILABLE``."""
        self.extra_listed: list[pb.Dispatch] = []
        """Raw dispatches appended to every list reply (they need not be valid)."""
        self.stream_calls: list[datetime] = []
        """Wall time of every stream call, refused or not."""
        self.stream_ends: list[tuple[datetime, str]] = []
        """How each accepted stream ended: ``"ended"`` (by us) or ``"cancelled"``."""
        self._enders: set[asyncio.Event] = set()

    def end_streams(self) -> None:
        """End every open stream cleanly (status OK), as a server may."""
        for ender in self._enders:
            ender.set()

    def inject(self, message: pb.StreamMicrogridDispatchesResponse) -> None:
        """Send a raw message to every open stream of `MICROGRID`."""
        for service in self.services:
            for subscriber in service._subscribers.get(MICROGRID, ()):
                subscriber.queue.put_nowait(Encoded(bytes(message)))

    def open_streams(self) -> int:
        """Streams the servers are serving now."""
        return sum(len(s._subscribers.get(MICROGRID, ())) for s in self.services)


class HookedService(DispatchService):
    """The real service, plus the seams of `ServiceHooks`."""

    def __init__(self, hooks: ServiceHooks, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._hooks = hooks

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {
            path: handler._replace(func=self._delayed(path, handler.func))
            for path, handler in super().__mapping__().items()
        }

    def _delayed(self, path: str, func: Callable[[Any], Any]) -> Callable[[Any], Any]:
        async def handle(stream: grpclib.server.Stream[Any, Any]) -> None:
            latency = self._hooks.latency
            if path.endswith("/ListMicrogridDispatches"):
                latency += self._hooks.list_latency
            if latency:
                await asyncio.sleep(latency)
            await func(stream)

        return handle

    def _list(self, request: pb.ListMicrogridDispatchesRequest) -> Any:
        reply = super()._list(request)
        # The reply is pre-encoded; a repeated field may be appended anywhere.
        extra = b"".join(_field(1, bytes(d)) for d in self._hooks.extra_listed)
        return Encoded(reply.data + extra)

    async def _stream(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        hooks = self._hooks
        hooks.stream_calls.append(self._clock())
        if hooks.refuse_streams > 0:
            hooks.refuse_streams -= 1
            raise GRPCError(grpclib.const.Status.UNAVAILABLE, "refused by the test")
        ender = asyncio.Event()
        hooks._enders.add(ender)
        serving = asyncio.ensure_future(super()._stream(stream))
        ending = asyncio.ensure_future(ender.wait())
        try:
            await asyncio.wait({serving, ending}, return_when=asyncio.FIRST_COMPLETED)
            if serving.done():
                serving.result()
            hooks.stream_ends.append((self._clock(), "ended"))
        except asyncio.CancelledError:
            hooks.stream_ends.append((self._clock(), "cancelled"))
            raise
        finally:
            hooks._enders.discard(ender)
            for task in (serving, ending):
                task.cancel()
            await asyncio.gather(serving, ending, return_exceptions=True)


def install_hooks(monkeypatch: pytest.MonkeyPatch) -> ServiceHooks:
    """Make every server of this test use a `HookedService`; return their shared hooks."""
    hooks = ServiceHooks()

    def create(*args: Any, **kwargs: Any) -> HookedService:
        service = HookedService(hooks, *args, **kwargs)
        hooks.services.append(service)
        return service

    monkeypatch.setattr(_serve, "DispatchService", create)
    return hooks


class ServerControl:
    """Start and stop the embedded server; a restart reuses the port and the database."""

    def __init__(
        self,
        nursery: trio.Nursery,
        clock: WallClock,
        *,
        database: str | Path = ":memory:",
        keys: Iterable[str] = (KEY,),
    ) -> None:
        self._nursery = nursery
        self._clock = clock
        self._database = database
        self._keys = tuple(keys)
        self.port = 0
        self._scope: trio.CancelScope | None = None
        self._stopped = trio.Event()

    @property
    def url(self) -> str:
        """The dispatcher's and the clients' URL (keepalive off: see `open_env`)."""
        return f"grpc://127.0.0.1:{self.port}?ssl=false&keep_alive=false"

    async def start(self, *, keys: Iterable[str] | None = None) -> RunningServer:
        """Start a server (the first on a free port, later ones on the same port)."""
        assert self._scope is None, "already running"
        scope = trio.CancelScope()
        stopped = trio.Event()
        chosen = tuple(keys) if keys is not None else self._keys

        async def run(task_status: trio.TaskStatus[RunningServer]) -> None:
            # A task inherits its spawner's context, so a server started from inside a
            # client's ``async with`` would borrow that client's asyncio loop and die
            # with it. Each server gets a loop of its own.
            trio_asyncio.current_loop.set(None)
            try:
                with scope:
                    await serve_dispatch_api(
                        keys=chosen,
                        port=self.port,
                        database=self._database,
                        clock=self._clock,
                        task_status=task_status,
                    )
            finally:
                stopped.set()

        running: RunningServer = await self._nursery.start(run)
        self.port = running.port
        self._scope, self._stopped = scope, stopped
        return running

    async def stop(self) -> None:
        """Stop the server and wait until it has closed its connections and database."""
        assert self._scope is not None, "not running"
        self._scope.cancel()
        await self._stopped.wait()
        self._scope = None


@dataclass
class Env:
    """A server, a client of it, and the clock everything shares."""

    clock: WallClock
    servers: ServerControl
    client: DispatchClient

    def open_dispatcher(self, **options: Any) -> AbstractAsyncContextManager[Dispatcher]:
        """`open_dispatcher` with its own connection to the server, on the test clock."""
        settings: dict[str, Any] = {
            "microgrid_id": MICROGRID,
            "server_url": self.servers.url,
            "key": KEY,
            "clock": self.clock,
            **options,
        }
        return open_dispatcher(**settings)

    async def sleep_until(self, wall: datetime) -> None:
        await trio.sleep_until(self.clock.trio_time(wall))


@asynccontextmanager
async def open_env(
    *, database: str | Path = ":memory:", keys: Iterable[str] = (KEY,)
) -> AsyncIterator[Env]:
    """Start a server and a client of it on a new `WallClock` (showing `T0`).

    Keepalive is off for every connection: its pings would wake the program every
    simulated minute (grpclib's default of 60 s), which is what makes a simulated month
    slow, and the server runs in this process anyway.
    """
    clock = WallClock()
    async with trio.open_nursery() as nursery:
        servers = ServerControl(nursery, clock, database=database, keys=keys)
        await servers.start()
        async with open_client(server_url=servers.url, key=KEY, clock=clock) as client:
            yield Env(clock=clock, servers=servers, client=client)
        nursery.cancel_scope.cancel()


# -- recording -----------------------------------------------------------------------------


@dataclass
class Recorder:
    """Reads receivers in tasks and records ``(wall time, item)`` per receiver."""

    clock: WallClock
    nursery: trio.Nursery
    ended: list[str] = field(default_factory=list)

    def record(self, name: str, receiver: Receiver[Any]) -> list[Any]:
        """Read `receiver` until it ends; return the list it fills."""
        items: list[Any] = []

        async def read() -> None:
            with receiver:
                async for item in receiver:
                    items.append((self.clock(), item))
            self.ended.append(name)

        self.nursery.start_soon(read, name=f"recorder {name}")
        return items

    def record_connection(self, dispatcher: Dispatcher) -> list[tuple[datetime, ConnectionState]]:
        """Record every change of ``dispatcher.connection`` until it is CLOSED."""
        changes = [(self.clock(), dispatcher.connection.value)]
        value: trio_util.AsyncValue[ConnectionState] = dispatcher.connection

        async def watch() -> None:
            async with aclosing(value.transitions()) as transitions:
                async for new, _old in transitions:
                    changes.append((self.clock(), new))
                    if new is ConnectionState.CLOSED:
                        return

        self.nursery.start_soon(watch, name="connection recorder")
        return changes


def run_item(stamped: tuple[datetime, RunningStatus]) -> tuple[Any, ...]:
    """``(time, id, "RUNNING"/"STOPPED", until, next_run)`` of a recorded status.

    Also checks that the status was decided at the time it was received.
    """
    when, status = stamped
    assert status.decided_at == when, (status, when)
    state = "RUNNING" if status.started else "STOPPED"
    return (when, status.id, state, status.until, status.next_run)


def runs(items: list[tuple[datetime, RunningStatus]]) -> list[tuple[Any, ...]]:
    return [run_item(item) for item in items]


def life_item(stamped: tuple[datetime, LifecycleEvent]) -> tuple[Any, ...]:
    """``(time, "Created"/"Updated"/"Deleted", id)`` of a recorded lifecycle event."""
    when, event = stamped
    assert isinstance(event, Created | Updated | Deleted)
    return (when, type(event).__name__, event.dispatch.id)


def lives(items: list[tuple[datetime, LifecycleEvent]]) -> list[tuple[Any, ...]]:
    return [life_item(item) for item in items]


def drain(receiver: Receiver[Any]) -> list[Any]:
    """Everything queued in `receiver` now (it must not have ended)."""
    items = []
    while True:
        try:
            items.append(receiver.receive_nowait())
        except trio.WouldBlock:
            return items


def drain_ended(receiver: Receiver[Any]) -> list[Any]:
    """Everything queued in an ended `receiver`; asserts it then ends."""
    items = []
    while True:
        try:
            items.append(receiver.receive_nowait())
        except trio.EndOfChannel:
            return items


# -- tasks ---------------------------------------------------------------------------------


def task_names() -> list[str]:
    """The names of every trio task alive now."""
    names: list[str] = []

    def walk(task: trio.lowlevel.Task) -> None:
        names.append(task.name)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    walk(trio.lowlevel.current_root_task())  # type: ignore[arg-type]
    return names


def dispatcher_tasks() -> list[str]:
    """The tasks of dispatchers and dispatch clients alive now (should be none after).

    The library's own tasks are named after their functions, e.g.
    ``trio_dispatch._dispatcher.Dispatcher._run_stream``; the server's are not counted.
    """
    return [
        name
        for name in task_names()
        if name.startswith("trio_dispatch.") and not name.startswith("trio_dispatch.server")
    ]


async def eventually(predicate: Callable[[], bool]) -> None:
    """Wait (virtual time, in small steps, at most 5 s) until `predicate()` holds.

    For state on the far side of a socket (e.g. the server noticing a reset stream),
    which no trio event announces.
    """
    with trio.fail_after(5):
        while not predicate():  # noqa: ASYNC110 - nothing to wait on but the state itself
            await trio.sleep(0.001)
