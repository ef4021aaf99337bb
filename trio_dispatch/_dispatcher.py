"""`open_dispatcher`: a live, reconciled view of a microgrid's dispatches, as events.

Theory of operation. The dispatcher owns a nursery with two tasks around one pure
`Scheduler`:

* The **stream task** subscribes to the server's stream, then lists every dispatch and
  reconciles the local copy with it (so nothing written between the two is lost), then
  applies each streamed change. When the stream fails or ends, it retries with
  exponential backoff and jitter (reset after each successful sync) and reconciles
  again: changes made while it was away come out as the `Created` / `Updated` /
  `Deleted` and running-status events they imply. There is no stream deadline; dead
  peers are found by HTTP/2 keepalive (see the server URL options).
* The **scheduler task** asks the scheduler for what is due at the wall clock's `now`,
  publishes it, and sleeps until the next deadline or until a change wakes it. Sleeps are
  capped at `MAX_SLEEP` so a step of the system clock is noticed.

Publishing never blocks: each receiver has its own coalescing queue (`_broadcast`).
A merged receiver also has its own `Merger` (`_merge`), fed the running statuses of each
trigger (a deadline, a server message) as one batch; `manage` (`_managed`) runs tasks
off such a receiver.
Leaving the ``async with`` in any way cancels both tasks, ends every receiver with
`trio.EndOfChannel` (after what is queued) and closes the connection. An error from a
background task propagates out of the ``async with`` as itself, not wrapped in an
exception group of one.
"""

from __future__ import annotations

import enum
import logging
import math
import random
from collections.abc import AsyncIterator, Callable, Hashable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, final, overload

import trio
import trio_util

from ._broadcast import Broadcast, Receiver, ReceiverStatistics
from ._client import DispatchClient, StreamEvent, StreamItem, open_client, system_clock
from ._events import Created, Deleted, LifecycleEvent, RunningStatus, Updated
from ._exceptions import DispatchApiError, DispatchConnectionError, InvalidDispatchError
from ._managed import ManagedRun, ManagedStatistics, manage
from ._merge import MergeByType, MergedStatus, Merger, MergeStrategy
from ._model import Dispatch
from ._scheduler import Scheduler, Transition

__all__ = [
    "ConnectionState",
    "Dispatcher",
    "DispatcherStatistics",
    "LifecycleEvents",
    "RunningStatusChanges",
    "open_dispatcher",
]

_log = logging.getLogger("trio_dispatch")

MAX_SLEEP: Final = 60.0
"""Longest the scheduler sleeps (seconds) before it looks at the wall clock again.

Not applied to a clock with a true ``follows_trio_clock`` attribute (like
`trio_dispatch.testing.WallClock`): such a clock cannot step behind trio's back, and
waking every minute would make a simulated month cost 43,200 wake-ups.
"""

SPIN: Final = 0.005
"""Seconds before a deadline at which the scheduler stops sleeping and yields instead."""

DEFAULT_BUFFER_SIZE: Final = 1024
"""Items a receiver may queue before its queue is coalesced per dispatch.

With more distinct dispatches queued than this, a coalesced queue may grow to twice
their number before it is coalesced again (so coalescing is not paid on every event).
"""

DEFAULT_STARTUP_TIMEOUT: Final = timedelta(seconds=30)

# Refusals that retrying cannot fix: they are raised, not retried.
_FATAL_STATUSES: Final = frozenset(
    {"UNAUTHENTICATED", "PERMISSION_DENIED", "INVALID_ARGUMENT", "UNIMPLEMENTED"}
)


class ConnectionState(enum.Enum):
    """Where the dispatcher's link to the server stands."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class DispatcherStatistics:
    """Counters of a dispatcher's life so far."""

    dispatches: int
    lifecycle_events: int
    running_status_events: int
    reconnects: int
    """Successful re-syncs after a lost stream (not attempts)."""
    invalid_dispatches: int
    receivers: tuple[ReceiverStatistics, ...]
    managed: tuple[ManagedStatistics, ...] = ()
    """One record per running `Dispatcher.manage` call, by type."""


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class Backoff:
    """How long to wait between reconnect attempts.

    Attempt n waits ``min(cap, base * 2**n)`` seconds, scaled by a random factor in
    ``[1 - jitter, 1]`` so that many clients do not retry in lockstep.
    """

    base: float = 0.5
    cap: float = 30.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry number `attempt` (0-based)."""
        full = min(self.cap, self.base * 2.0 ** min(attempt, 62))
        return full * (1.0 - self.jitter * rng.random())


DEFAULT_RESTART_BACKOFF: Final = Backoff(base=1.0, cap=60.0, jitter=0.0)
"""How `Dispatcher.manage` spaces restarts of a failing task: 1 s, 2 s, 4 s ... 60 s."""

_BY_TYPE: Final = MergeByType()


def _dispatch_id(item: LifecycleEvent | RunningStatus) -> int:
    return item.dispatch.id


def _dispatch_id_and_type(status: RunningStatus) -> tuple[int, str]:
    # A type change is a stop of the old type and a start of the new one: coalescing
    # must keep both, or an actor of the old type would never see its stop.
    return status.dispatch.id, status.dispatch.type


def _merged_identity(status: MergedStatus) -> Hashable:
    return status.identity


def _accept_all(status: MergedStatus) -> bool:
    return True


@dataclass(slots=True)
class _MergedFeed:
    """One merged receiver: its filter, its own merger, and the queue it fills."""

    accept: Callable[[RunningStatus], bool]
    merger: Merger
    out: Broadcast[MergedStatus]


@final
class LifecycleEvents:
    """Subscribe to `Created` / `Updated` / `Deleted` events."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    def new_receiver(
        self, *, type: str | None = None, replay: bool = False
    ) -> Receiver[LifecycleEvent]:
        """A receiver of lifecycle events, optionally only of dispatches of `type`.

        With `replay`, it first gets a `Created` for every current dispatch, so that
        nothing that existed before the subscription is missed.
        An `Updated` that changes the type is delivered to receivers of either type.
        """

        def accept(event: LifecycleEvent) -> bool:
            if type is None or event.dispatch.type == type:
                return True
            return isinstance(event, Updated) and event.previous.type == type

        d = self._dispatcher
        initial = (
            [Created(x) for _, x in sorted(d.dispatches.items()) if accept(Created(x))]
            if replay
            else []
        )
        return d._lifecycle.subscribe(accept, initial)


@final
class RunningStatusChanges:
    """Subscribe to `RunningStatus` items: starts, stops and reconfigurations."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    @overload
    def new_receiver(
        self, *, type: str | None = None, merge: None = None
    ) -> Receiver[RunningStatus]: ...
    @overload
    def new_receiver(
        self, *, type: str | None = None, merge: MergeStrategy
    ) -> Receiver[MergedStatus]: ...
    def new_receiver(
        self, *, type: str | None = None, merge: MergeStrategy | None = None
    ) -> Receiver[RunningStatus] | Receiver[MergedStatus]:
        """A receiver of running-status changes, optionally only of dispatches of `type`.

        It first gets the dispatches running right now (as last decided), and only this
        receiver gets them.

        With a `merge` strategy (`MergeByType`, `MergeByTypeTarget` or your own), it
        gets `MergedStatus` items instead: one start when the first dispatch of an
        identity starts, a reconfiguration whenever a member joins, leaves or changes
        while others run, and one stop when the last member stops. It first gets a
        start for each identity running right now. See ``docs/managed.md``.

        Example:
            >>> with dispatcher.running_status_change.new_receiver(
            ...     type="BATTERY", merge=MergeByType()
            ... ) as runs:
            ...     async for run in runs:
            ...         print(run.identity, run.started, run.until, run.members.ids)
        """

        def accept(status: RunningStatus) -> bool:
            return type is None or status.dispatch.type == type

        d = self._dispatcher
        initial = [s for s in d._scheduler.running_statuses() if accept(s)]
        if merge is None:
            return d._running.subscribe(accept, initial)
        merger = Merger(merge)
        out: Broadcast[MergedStatus] = Broadcast(_merged_identity, d._buffer_size)
        receiver = out.subscribe(_accept_all, merger.feed(initial))
        if d._closed:
            out.end()
        else:
            d._merged.append(_MergedFeed(accept, merger, out))
        return receiver


@final
class Dispatcher:
    """A live view of one microgrid's dispatches. Get one from `open_dispatcher`."""

    def __init__(
        self,
        client: DispatchClient,
        microgrid_id: int,
        *,
        clock: Callable[[], datetime],
        buffer_size: int,
        backoff: Backoff,
    ) -> None:
        self._client = client
        self._microgrid_id = microgrid_id
        self._clock = clock
        self._backoff = backoff
        self._rng = random.Random()
        self._scheduler = Scheduler()
        self._buffer_size = buffer_size
        self._merged: list[_MergedFeed] = []
        self._managers: dict[str, Callable[[], ManagedStatistics]] = {}
        self._closed = False
        self._lifecycle: Broadcast[LifecycleEvent] = Broadcast(_dispatch_id, buffer_size)
        self._running: Broadcast[RunningStatus] = Broadcast(_dispatch_id_and_type, buffer_size)
        self._wakeup = trio.Event()
        follows_trio = getattr(clock, "follows_trio_clock", False)
        self._max_sleep = math.inf if follows_trio else MAX_SLEEP
        self._spin = 0.0 if follows_trio else SPIN
        self._reconnects = 0
        self.last_error: BaseException | None = None
        self.connection: trio_util.AsyncValue[ConnectionState] = trio_util.AsyncValue(
            ConnectionState.CONNECTING
        )
        """The state of the link to the server; ``await dispatcher.connection.wait_value(...)``."""
        self.lifecycle_events = LifecycleEvents(self)
        self.running_status_change = RunningStatusChanges(self)

    @property
    def microgrid_id(self) -> int:
        """The microgrid whose dispatches this is."""
        return self._microgrid_id

    @property
    def dispatches(self) -> Mapping[int, Dispatch]:
        """The current dispatches by id (a live, read-only view)."""
        return self._scheduler.dispatches

    def statistics(self) -> DispatcherStatistics:
        """Counters: events emitted, reconnects, invalid dispatches, receiver queues."""
        stats = [r.statistics() for r in self._lifecycle.receivers]
        stats += [r.statistics() for r in self._running.receivers]
        stats += [r.statistics() for f in self._merged for r in f.out.receivers]
        return DispatcherStatistics(
            dispatches=len(self._scheduler),
            lifecycle_events=self._lifecycle.published,
            running_status_events=self._running.published,
            reconnects=self._reconnects,
            invalid_dispatches=self._client.invalid_dispatches,
            receivers=tuple(stats),
            managed=tuple(self._managers[t]() for t in sorted(self._managers)),
        )

    # -- managed tasks -------------------------------------------------------------------

    async def manage(
        self,
        type: str,
        run: ManagedRun,
        *,
        merge: MergeStrategy = _BY_TYPE,
        grace: timedelta | None = None,
        restart_backoff: Backoff = DEFAULT_RESTART_BACKOFF,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run ``run(info, updates)`` exactly while dispatches of `type` run.

        Actors should not hand-write start/stop/reconfigure loops: this runs one task
        per running identity (per `merge` strategy: by default all dispatches of `type`
        with the same ``dry_run`` form one run), in a nursery of its own, until
        cancelled or until the dispatcher closes. Start it in your nursery.

        * `info` (`ManagedInfo`): target, payload, dry_run, until and the dispatch ids
          of the run. `updates` delivers a newer `ManagedInfo` when the running
          identity is reconfigured (latest value only); the task is not restarted.
        * When the identity stops, the task is cancelled. With `grace`, `updates` ends
          first (``async for`` leaves its loop) and the task has `grace` to return
          before it is cancelled. A stop is complete before the same identity starts
          again.
        * A task that raises is logged (logger ``trio_dispatch``) and restarted, after
          `restart_backoff` delays, while its identity still runs. It never takes the
          dispatcher or this call down.
        * Identities running when this is called get their tasks at once; with
          ``await nursery.start(dispatcher.manage, ...)`` they are started when it
          returns. Counters are in ``dispatcher.statistics().managed``.

        Args:
            type: the dispatch type to run tasks for.
            run: ``async def run(info, updates)``.
            merge: which dispatches form one run (`MergeByType`, `MergeByTypeTarget`,
                or any `MergeStrategy`).
            grace: how long a stopping task may take to finish by itself.
            restart_backoff: delays between restarts of a failing task (jitter 0 by
                default: restarts happen at predictable times).
            task_status: for ``nursery.start``.

        Raises:
            RuntimeError: `type` is already managed on this dispatcher.
            ValueError: bad `type` or `grace`.
            TypeError: `run`, `merge` or `restart_backoff` of the wrong kind.

        Example:
            >>> async def run_battery(info, updates):
            ...     actor = start_actor(info.target, info.payload)
            ...     async for info in updates:
            ...         actor.reconfigure(info.target, info.payload)
            >>> async with trio.open_nursery() as nursery:
            ...     nursery.start_soon(dispatcher.manage, "BATTERY", run_battery)
        """
        await manage(
            self,
            type,
            run,
            merge=merge,
            grace=grace,
            restart_backoff=restart_backoff,
            task_status=task_status,
        )

    # -- publishing ----------------------------------------------------------------------

    def _publish(self, transitions: list[Transition]) -> None:
        statuses: list[RunningStatus] = []
        for item in transitions:
            if isinstance(item, RunningStatus):
                self._running.publish(item)
                statuses.append(item)
            else:
                self._lifecycle.publish(item)
        if statuses and self._merged:
            self._publish_merged(statuses)
        self._wakeup.set()

    def _publish_merged(self, batch: list[RunningStatus]) -> None:
        # One batch per trigger (a deadline, a server message): see `_merge`, rule 3.
        live: list[_MergedFeed] = []
        for feed in self._merged:
            if not feed.out.receivers:
                continue  # its receiver was closed: drop the merger too
            live.append(feed)
            mine = [s for s in batch if feed.accept(s)]
            if mine:
                for merged in feed.merger.feed(mine):
                    feed.out.publish(merged)
        self._merged = live

    def _apply(self, item: StreamItem) -> None:
        now = self._clock()
        if item.event is StreamEvent.DELETED:
            self._publish(self._scheduler.remove(item.dispatch.id, now))
        else:
            self._publish(self._scheduler.upsert(item.dispatch, now))

    def _close(self) -> None:
        self._closed = True
        self._lifecycle.end()
        self._running.end()
        for feed in self._merged:
            feed.out.end()
        self.connection.value = ConnectionState.CLOSED

    # -- tasks ---------------------------------------------------------------------------

    async def _run_stream(self, task_status: trio.TaskStatus[None]) -> None:
        attempt = 0
        started = False
        while True:
            try:
                async with self._client.stream(self._microgrid_id) as events:
                    listing = [d async for d in self._client.list(self._microgrid_id)]
                    reconciled = self._scheduler.reconcile(listing, self._clock())
                    self._publish(reconciled)
                    # The stream still delivers what changed between subscribing and
                    # listing. For a dispatch the listing no longer has, that is stale
                    # (nothing follows a delete); applied, it would be created again.
                    gone = {t.dispatch.id for t in reconciled if isinstance(t, Deleted)}
                    attempt = 0
                    self.connection.value = ConnectionState.CONNECTED
                    if started:
                        self._reconnects += 1
                    else:
                        started = True
                        task_status.started()
                    async for item in events:
                        if item.dispatch.id in gone:
                            if item.event is StreamEvent.DELETED:
                                gone.discard(item.dispatch.id)
                            continue
                        self._apply(item)
                _log.warning("dispatch stream ended by the server; reconnecting")
            except DispatchApiError as exc:
                if exc.status in _FATAL_STATUSES:
                    raise
                self.last_error = exc
                _log.warning("dispatch stream failed (%s); reconnecting", exc)
            except DispatchConnectionError as exc:
                self.last_error = exc
                _log.warning("dispatch stream failed (%s); reconnecting", exc)
            self.connection.value = ConnectionState.RECONNECTING
            await trio.sleep(self._backoff.delay(attempt, self._rng))
            attempt += 1

    async def _run_scheduler(self) -> None:
        while True:
            self._wakeup = trio.Event()
            self._publish_due()
            deadline = self._scheduler.next_deadline()
            delay = self._max_sleep
            if deadline is not None:
                delay = min(delay, max(0.0, (deadline - self._clock()).total_seconds()))
            if delay > self._spin:
                with trio.move_on_after(delay - self._spin):
                    await self._wakeup.wait()
            elif deadline is not None:
                # The operating system wakes sleepers up to a millisecond or two late;
                # the last stretch before a deadline is spent yielding instead, so a
                # start is published within microseconds of its time.
                while self._clock() < deadline and not self._wakeup.is_set():
                    await trio.lowlevel.checkpoint()

    def _publish_due(self) -> None:
        statuses = self._scheduler.advance(self._clock())
        for status in statuses:
            self._running.publish(status)
        if statuses and self._merged:
            self._publish_merged(statuses)


def _single_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one real error in `group` (ignoring `trio.Cancelled`), if there is exactly one."""
    real: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            inner = _single_error(exc)
            if inner is None:
                return None
            real.append(inner)
        elif not isinstance(exc, trio.Cancelled):
            real.append(exc)
    return real[0] if len(real) == 1 else None


@asynccontextmanager
async def open_dispatcher(
    *,
    microgrid_id: int,
    server_url: str | None = None,
    key: str | None = None,
    sign_secret: str | None = None,
    client: DispatchClient | None = None,
    clock: Callable[[], datetime] = system_clock,
    startup_timeout: timedelta = DEFAULT_STARTUP_TIMEOUT,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    backoff: Backoff = Backoff(),
) -> AsyncIterator[Dispatcher]:
    """Keep a live copy of a microgrid's dispatches for the duration of the block.

    Returns once the initial listing is loaded, so ``dispatcher.dispatches`` is complete
    from the first line of the body. Give either `server_url` and `key` (and optionally
    `sign_secret`), or an open `client`.

    Args:
        microgrid_id: whose dispatches.
        server_url: ``grpc://host:port?...`` (see `open_client`).
        key: the API key.
        sign_secret: sign every call with this secret.
        client: use this open client instead of opening one.
        clock: the wall clock (UTC); tests pass `trio_dispatch.testing.WallClock`.
        startup_timeout: how long to keep retrying the initial sync before raising
            `DispatchConnectionError`.
        buffer_size: per-receiver queue length before it is coalesced per dispatch.
        backoff: the reconnect policy.

    Raises:
        DispatchConnectionError: the initial sync did not succeed in time.
        DispatchApiError: the server refused us (e.g. ``UNAUTHENTICATED``).

    Example:
        >>> async with open_dispatcher(microgrid_id=1, server_url=url, key=key) as d:
        ...     with d.running_status_change.new_receiver(type="DEMO") as statuses:
        ...         async for status in statuses:
        ...             print(status.id, status.running("DEMO"))
    """
    if (client is None) == (server_url is None):
        raise ValueError("give either server_url (with key) or client, not both or neither")
    if client is None and not key:
        raise ValueError("key is required with server_url")
    if not isinstance(startup_timeout, timedelta) or startup_timeout <= timedelta(0):
        raise ValueError(f"startup_timeout must be a positive timedelta, got {startup_timeout!r}")
    if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
        raise ValueError(f"buffer_size must be an int >= 1, got {buffer_size!r}")
    connect: AbstractAsyncContextManager[DispatchClient] = (
        nullcontext(client)
        if client is not None
        else open_client(
            server_url=server_url,  # type: ignore[arg-type]
            key=key,  # type: ignore[arg-type]
            sign_secret=sign_secret,
            clock=clock,
            on_invalid=_warn_invalid,
        )
    )
    try:
        async with connect as connected, trio.open_nursery() as nursery:
            dispatcher = Dispatcher(
                connected, microgrid_id, clock=clock, buffer_size=buffer_size, backoff=backoff
            )
            try:
                with trio.move_on_after(startup_timeout.total_seconds()) as startup:
                    await nursery.start(dispatcher._run_stream)
                if startup.cancelled_caught:
                    raise DispatchConnectionError(
                        f"could not load the dispatches of microgrid {microgrid_id} within "
                        f"{startup_timeout.total_seconds():g} s: {dispatcher.last_error}"
                    ) from dispatcher.last_error
                nursery.start_soon(dispatcher._run_scheduler)
                yield dispatcher
            finally:
                dispatcher._close()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        single = _single_error(group)
        if single is None:
            raise
        # Keep the error's own cause (the network error behind a DispatchConnectionError,
        # the gRPC error behind a DispatchApiError); only the group is dropped.
        raise single from single.__cause__


def _warn_invalid(error: InvalidDispatchError) -> None:
    _log.warning("skipping %s", error)
