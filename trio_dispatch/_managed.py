"""Managed tasks: run work exactly while a (merged) dispatch runs.

`Dispatcher.manage` is the structured replacement for a hand-written
start/stop/reconfigure loop. It reads a merged running-status receiver for one type and
keeps one *slot* per running identity; each slot is a task in `manage`'s own nursery
that calls the user's ``run(info, updates)``.

Rules (each has a test in ``tests/test_managed.py``):

1. **Start.** When an identity starts, its slot calls ``run(info, updates)``. Identities
   already running when `manage` begins are started at once (before
   ``task_status.started()``).
2. **Reconfigure.** While it runs, each reconfiguration replaces the value waiting in
   `updates` (a receive channel of capacity one that keeps only the newest
   `ManagedInfo`); the task is not restarted.
3. **Stop.** Without a grace period the task is cancelled. With ``grace``, `updates`
   ends first (a task in ``async for info in updates`` leaves its loop and can clean
   up), and the task is cancelled if it has not returned after ``grace``. This is the
   trio shape of "ask, then insist": closing is the stop signal, a cancel-scope
   deadline the bound. A stop that finds no task running (it failed and waits for its
   restart) cancels at once.
4. **One at a time.** A slot does not call ``run`` before the previous slot of the same
   identity has finished stopping, so a stop is complete before the next start.
5. **Failure.** An ``Exception`` from ``run`` is logged with its traceback (logger
   ``trio_dispatch``) and counted. While the identity still runs, ``run`` is called
   again with the newest info and a fresh `updates`, after
   ``restart_backoff.delay(n)`` seconds for the n-th consecutive failure (n starts
   over after a task lived for ``restart_backoff.cap`` seconds). Errors never reach the
   caller of `manage` or the dispatcher. ``KeyboardInterrupt`` and other
   non-``Exception`` errors do propagate.
6. **Done early.** A task that returns while its identity runs is finished; it is not
   restarted before the identity's next start.
7. **Exclusive.** One `manage` per type per dispatcher: a second raises `RuntimeError`.
8. **End.** When the dispatcher closes, `manage` stops every task as in rule 3 and
   returns. Cancelling `manage` cancels its tasks at once (trio cancellation is not
   delayed by the grace period).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, final

import trio

from ._broadcast import receive_parked
from ._merge import Members, MergedStatus, MergeStrategy
from ._target import Target

if TYPE_CHECKING:
    from ._dispatcher import Backoff, Dispatcher

__all__ = ["ManagedInfo", "ManagedRun", "ManagedStatistics", "manage"]

_log = logging.getLogger("trio_dispatch")


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class ManagedInfo:
    """What a managed task needs to know about the run it serves.

    Attributes:
        identity: the merge identity (e.g. ``("BATTERY", False)`` for `MergeByType`).
        type: the dispatch type.
        target: the newest member's target.
        dry_run: whether to only pretend.
        payload: the newest member's payload.
        until: when the run ends as far as known now (``None``: no end in sight).
        members: the running dispatches behind it (their last statuses, by id).
    """

    identity: Hashable
    type: str
    target: Target
    dry_run: bool
    payload: dict[str, Any] = field(hash=False)
    until: datetime | None
    members: Members

    @property
    def dispatch_ids(self) -> tuple[int, ...]:
        """The ids of the running dispatches behind this run, ascending."""
        return self.members.ids

    @classmethod
    def _of(cls, status: MergedStatus) -> ManagedInfo:
        return cls(
            identity=status.identity,
            type=status.type,
            target=status.target,
            dry_run=status.dry_run,
            payload=status.payload,
            until=status.until,
            members=status.members,
        )


ManagedRun = Callable[[ManagedInfo, trio.abc.ReceiveChannel[ManagedInfo]], Awaitable[object]]
"""``async def run(info, updates)``: what `Dispatcher.manage` runs per identity."""


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class ManagedStatistics:
    """Counters of one `Dispatcher.manage` call.

    ``started + restarted == stopped + failed + tasks`` holds at every checkpoint.
    """

    type: str
    running: int
    """Identities running now (with a task, or waiting to restart one)."""
    tasks: int
    """Calls of ``run`` in progress now."""
    started: int
    """Calls of ``run`` for a start of their identity."""
    restarted: int
    """Calls of ``run`` after a failure."""
    stopped: int
    """Calls of ``run`` that ended without an error (stopped, or returned)."""
    failed: int
    """Calls of ``run`` that raised."""


@final
class _Updates(trio.abc.ReceiveChannel[ManagedInfo]):
    """A receive channel that holds at most one value: the newest."""

    def __init__(self) -> None:
        self._value: ManagedInfo | None = None
        self._ended = False
        self._closed = False
        self._lot = trio.lowlevel.ParkingLot()

    def _send(self, info: ManagedInfo) -> None:
        if not (self._ended or self._closed):
            self._value = info
            self._lot.unpark_all()

    def _end(self) -> None:
        self._ended = True
        self._lot.unpark_all()

    def receive_nowait(self) -> ManagedInfo:
        """Return the waiting value, or raise `trio.WouldBlock` / `trio.EndOfChannel`."""
        if self._closed:
            raise trio.ClosedResourceError("this updates channel was closed")
        value = self._value
        if value is not None:
            self._value = None
            return value
        if self._ended:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def receive(self) -> ManagedInfo:
        """Wait for a newer `ManagedInfo`; `trio.EndOfChannel` when the run stops."""
        return await receive_parked(self.receive_nowait, self._lot)

    def close(self) -> None:
        """Stop listening; further receives raise `trio.ClosedResourceError`."""
        self._closed = True
        self._value = None
        self._lot.unpark_all()

    async def aclose(self) -> None:
        """Stop listening (see `close`)."""
        self.close()
        await trio.lowlevel.checkpoint()

    def __enter__(self) -> _Updates:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class _Slot:
    """One running identity and the task that serves it."""

    __slots__ = ("done", "identity", "info", "scope", "stopping", "updates")

    def __init__(self, identity: Hashable, info: ManagedInfo) -> None:
        self.identity = identity
        self.info = info
        self.updates: _Updates | None = None  # the current call's channel
        self.scope = trio.CancelScope()
        self.done = trio.Event()
        self.stopping = False


class _Manager:
    def __init__(
        self,
        type: str,
        run: ManagedRun,
        *,
        grace: float | None,
        backoff: Backoff,
    ) -> None:
        self._type = type
        self._run = run
        self._grace = grace
        self._backoff = backoff
        self._rng = random.Random()
        self.nursery: trio.Nursery | None = None  # manage's, set once it is open
        self._active: dict[Hashable, _Slot] = {}  # running identities
        self._latest: dict[Hashable, _Slot] = {}  # newest slot per identity, until done
        self._tasks = self._started = self._restarted = self._stopped = self._failed = 0

    def statistics(self) -> ManagedStatistics:
        return ManagedStatistics(
            type=self._type,
            running=len(self._active),
            tasks=self._tasks,
            started=self._started,
            restarted=self._restarted,
            stopped=self._stopped,
            failed=self._failed,
        )

    def handle(self, status: MergedStatus) -> None:
        identity = status.identity
        slot = self._active.get(identity)
        if status.started:
            info = ManagedInfo._of(status)
            if slot is not None:
                slot.info = info
                if slot.updates is not None:
                    slot.updates._send(info)
                return
            slot = _Slot(identity, info)
            previous = self._latest.get(identity)
            self._active[identity] = self._latest[identity] = slot
            assert self.nursery is not None
            self.nursery.start_soon(
                self._supervise, slot, previous, name=f"trio_dispatch.manage {identity!r}"
            )
        elif slot is not None:
            del self._active[identity]
            self._stop(slot)

    def stop_all(self) -> None:
        for slot in self._active.values():
            self._stop(slot)
        self._active.clear()

    def _stop(self, slot: _Slot) -> None:
        slot.stopping = True
        updates = slot.updates
        if updates is None or self._grace is None:
            slot.scope.cancel()
        else:
            updates._end()
            slot.scope.deadline = min(slot.scope.deadline, trio.current_time() + self._grace)

    async def _supervise(self, slot: _Slot, previous: _Slot | None) -> None:
        try:
            if previous is not None:
                # Outside the slot's scope: a stop of this slot must still wait here,
                # or a third start could overtake the first slot's stop.
                await previous.done.wait()
            with slot.scope:
                failures = 0
                restart = False
                while not slot.stopping:
                    updates = _Updates()
                    slot.updates = updates
                    if restart:
                        self._restarted += 1
                    else:
                        self._started += 1
                    began = trio.current_time()
                    try:
                        error = await self._call(slot.info, updates)
                    finally:
                        slot.updates = None
                        updates._end()
                    if error is None:
                        return
                    if slot.stopping or trio.current_effective_deadline() == -math.inf:
                        _log.error(
                            "managed task for %s %r failed while stopping",
                            self._type,
                            slot.identity,
                            exc_info=error,
                        )
                        return
                    if trio.current_time() - began >= self._backoff.cap:
                        failures = 0
                    delay = self._backoff.delay(failures, self._rng)
                    failures += 1
                    _log.error(
                        "managed task for %s %r failed; restarting in %g s",
                        self._type,
                        slot.identity,
                        delay,
                        exc_info=error,
                    )
                    await trio.sleep(delay)
                    restart = True
        finally:
            slot.done.set()
            if self._latest.get(slot.identity) is slot:
                del self._latest[slot.identity]

    async def _call(self, info: ManagedInfo, updates: _Updates) -> Exception | None:
        """Run the user's task once; return its error, if it failed."""
        self._tasks += 1
        try:
            await self._run(info, updates)
        except Exception as exc:
            self._failed += 1
            return exc
        except BaseExceptionGroup as group:
            # Errors raised while being cancelled come wrapped with the Cancelled: count
            # and report the errors, and let the cancellation go on to its scope.
            cancelled, rest = group.split(trio.Cancelled)
            if cancelled is None or not isinstance(rest, Exception):
                if rest is None:
                    self._stopped += 1
                raise
            self._failed += 1
            _log.error("managed task for %s failed while cancelled", self._type, exc_info=rest)
            raise cancelled from None
        except trio.Cancelled:
            self._stopped += 1
            raise
        else:
            self._stopped += 1
            return None
        finally:
            self._tasks -= 1


async def manage(
    dispatcher: Dispatcher,
    type: str,
    run: ManagedRun,
    *,
    merge: MergeStrategy,
    grace: timedelta | None,
    restart_backoff: Backoff,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The body of `Dispatcher.manage` (documented there)."""
    if not isinstance(type, str) or not type.strip():
        raise ValueError(f"type must be a non-empty str, got {type!r}")
    if not callable(run):
        raise TypeError(f"run must be an async function, got {run!r}")
    if grace is not None and (not isinstance(grace, timedelta) or grace < timedelta(0)):
        raise ValueError(f"grace must be None or a timedelta >= 0, got {grace!r}")
    if not callable(getattr(restart_backoff, "delay", None)):
        raise TypeError(f"restart_backoff must be a Backoff, got {restart_backoff!r}")
    if type in dispatcher._managers:
        raise RuntimeError(f"dispatches of type {type!r} are already managed on this dispatcher")
    manager = _Manager(
        type,
        run,
        grace=None if grace is None else grace.total_seconds(),
        backoff=restart_backoff,
    )
    dispatcher._managers[type] = manager.statistics
    try:
        with dispatcher.running_status_change.new_receiver(type=type, merge=merge) as receiver:
            async with trio.open_nursery() as nursery:
                manager.nursery = nursery
                try:
                    while True:  # what runs now is queued already: start it before started()
                        manager.handle(receiver.receive_nowait())
                except trio.WouldBlock:
                    task_status.started()
                    async for status in receiver:
                        manager.handle(status)
                except trio.EndOfChannel:
                    task_status.started()
                manager.stop_all()
    finally:
        del dispatcher._managers[type]
