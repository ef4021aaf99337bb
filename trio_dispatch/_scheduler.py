"""The dispatcher's brain: a pure state machine over dispatches and time.

It never sleeps, awaits, logs or reads a clock: callers hand it changes and the current
time, and it hands back the events that follow, in order. The trio task around it
(`_dispatcher`) is a few lines: apply what the server says, `advance` to now, sleep
until `next_deadline`.

Rules (each has a test that asserts the exact event sequence):

* **Lifecycle.** A dispatch not seen before is `Created`; a different version of a known
  one is `Updated` (an equal one is nothing); a removal is `Deleted`. A stream message
  whose ``update_time`` is older than what we hold is stale (it was overtaken by a list)
  and ignored. `reconcile` diffs a full listing against the local copy: a dispatch that
  merely ended is still in the listing, so it is never reported deleted.
* **Running status.** For every dispatch we remember the last `RunningStatus` we
  emitted. After each change and at each deadline we decide afresh at `now` and emit
  when the decision differs in a way a consumer must see:
    - stopped -> running: a start (also for a dispatch created while running);
    - running -> stopped: a stop (run ended, deactivated, moved, deleted);
    - running -> running with a new run (the next recurrence, or an overlapping run
      that outlasts the current one): a start carrying the new run's end;
    - running -> running with changed type, target, payload, dry_run or run end: a
      reconfiguration (a start with the new values). A type change is emitted as a
      stop of the old dispatch followed by a start of the new one, so that actors
      filtering by type see their dispatch stop.
  A change that leaves a running dispatch's consumer-visible state as it was emits
  nothing, and a run is never started twice.
* **Boundaries.** Runs are half-open ``[start, end)``. At an instant where one run ends
  and the next begins (back-to-back), the dispatch is running, so a single start with
  the new run's end is emitted and no stop. An update that lands exactly on a run's end
  sees the run as over.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Final, final

from ._events import Created, Deleted, LifecycleEvent, RunningStatus, Updated
from ._model import Dispatch
from ._recurrence import Run

__all__ = ["Scheduler", "Transition"]

_TICK: Final = timedelta(microseconds=1)

Transition = LifecycleEvent | RunningStatus


@dataclass(slots=True)
class _Entry:
    dispatch: Dispatch
    status: RunningStatus | None  # the last one emitted; None if never started
    run: Run | None  # the run we last reported as running
    generation: int  # invalidates heap entries of older decisions


@final
class Scheduler:
    """Pure schedule state. Callers supply `now`; nothing here sleeps.

    Example:
        >>> scheduler = Scheduler()
        >>> events = scheduler.upsert(dispatch, now)     # Created, maybe a start
        >>> events += scheduler.advance(later)            # starts/stops due by `later`
        >>> scheduler.next_deadline()                     # when to call advance() next
    """

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}
        self._current: dict[int, Dispatch] = {}
        self._deadlines: list[tuple[datetime, int, int]] = []  # (when, id, generation)
        self._generation = 0

    # -- reading -------------------------------------------------------------------------

    @property
    def dispatches(self) -> Mapping[int, Dispatch]:
        """The current dispatches by id: a live, read-only view."""
        return MappingProxyType(self._current)

    def running_statuses(self) -> list[RunningStatus]:
        """The last decision of every dispatch that is running, by id."""
        return [
            e.status
            for _, e in sorted(self._entries.items())
            if e.status is not None and e.status.started
        ]

    def next_deadline(self) -> datetime | None:
        """The earliest time at which `advance` has something to decide."""
        while self._deadlines:
            when, dispatch_id, generation = self._deadlines[0]
            entry = self._entries.get(dispatch_id)
            if entry is not None and entry.generation == generation:
                return when
            heapq.heappop(self._deadlines)
        return None

    def __len__(self) -> int:
        return len(self._entries)

    # -- changes -------------------------------------------------------------------------

    def upsert(
        self, dispatch: Dispatch, now: datetime, *, authoritative: bool = False
    ) -> list[Transition]:
        """A dispatch was created or updated on the server.

        A stream message older than the held version is ignored, unless `authoritative`
        (it comes from a listing, which always wins).
        """
        entry = self._entries.get(dispatch.id)
        if entry is None:
            entry = _Entry(dispatch, None, None, 0)
            self._entries[dispatch.id] = entry
            self._current[dispatch.id] = dispatch
            out: list[Transition] = [Created(dispatch)]
            out += self._decide(entry, now, previous=None)
            return out
        old = entry.dispatch
        if old == dispatch or (not authoritative and _is_stale(dispatch, old)):
            return []
        entry.dispatch = dispatch
        self._current[dispatch.id] = dispatch
        out = [Updated(dispatch, old)]
        out += self._decide(entry, now, previous=old)
        return out

    def remove(self, dispatch_id: int, now: datetime) -> list[Transition]:
        """A dispatch was deleted on the server; unknown ids are ignored."""
        entry = self._entries.pop(dispatch_id, None)
        if entry is None:
            return []
        del self._current[dispatch_id]
        out: list[Transition] = [Deleted(entry.dispatch)]
        if entry.status is not None and entry.status.started:
            out.append(_gone(entry.dispatch, now))
        return out

    def reconcile(self, dispatches: Iterable[Dispatch], now: datetime) -> list[Transition]:
        """Make the local copy equal to a full listing from the server."""
        fresh = {d.id: d for d in dispatches}
        out: list[Transition] = []
        for dispatch_id in sorted(self._entries.keys() - fresh.keys()):
            out += self.remove(dispatch_id, now)
        for dispatch_id in sorted(fresh):
            entry = self._entries.get(dispatch_id)
            if entry is not None and entry.dispatch == fresh[dispatch_id]:
                continue
            out += self.upsert(fresh[dispatch_id], now, authoritative=True)
        return out

    # -- time ----------------------------------------------------------------------------

    def advance(self, now: datetime) -> list[RunningStatus]:
        """Every running-status change due at or before `now`, in time order."""
        out: list[RunningStatus] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, dispatch_id, generation = heapq.heappop(self._deadlines)
            entry = self._entries.get(dispatch_id)
            if entry is None or entry.generation != generation:
                continue
            out += self._decide(entry, now, previous=entry.dispatch)
        return out

    def _decide(
        self, entry: _Entry, now: datetime, *, previous: Dispatch | None
    ) -> list[RunningStatus]:
        dispatch = entry.dispatch
        run = dispatch.run_at(now)
        # The next start after this decision: the status reports it, the deadline uses it.
        next_run = dispatch.next_run_after(now if run is None else run.start + _TICK)
        was = entry.status.started if entry.status is not None else False
        out: list[RunningStatus] = []
        if was and previous is not None and previous.type != dispatch.type:
            out.append(_gone(previous, now))
            was = False
        if run is None:
            if was:
                out.append(_status(dispatch, None, now, next_run))
        elif (
            not was
            or run != entry.run
            or (previous is not None and _reconfigured(previous, dispatch))
        ):
            out.append(_status(dispatch, run, now, next_run))
        if out:
            entry.status = out[-1]
        entry.run = run
        self._schedule(entry, now, run, next_run)
        return out

    def _schedule(
        self, entry: _Entry, now: datetime, run: Run | None, next_run: datetime | None
    ) -> None:
        self._generation += 1
        entry.generation = self._generation
        dispatch = entry.dispatch
        if dispatch.duration == timedelta(0):
            when = None  # never runs, so nothing ever changes with time
        elif run is None:
            when = next_run
        else:
            ends = [t for t in (run.end, next_run) if t is not None]
            when = min(ends) if ends else None
        if when is not None:
            heapq.heappush(self._deadlines, (max(when, now), dispatch.id, entry.generation))


def _status(
    dispatch: Dispatch, run: Run | None, now: datetime, next_run: datetime | None
) -> RunningStatus:
    return RunningStatus(
        dispatch=dispatch,
        started=run is not None,
        decided_at=now,
        until=None if run is None else run.end,
        next_run=next_run,
    )


def _gone(dispatch: Dispatch, now: datetime) -> RunningStatus:
    # A stop after which this version never runs again (deleted, or now of another
    # type): no next run, whatever its schedule says.
    return RunningStatus(
        dispatch=dispatch, started=False, decided_at=now, until=None, next_run=None
    )


def _reconfigured(old: Dispatch, new: Dispatch) -> bool:
    return (
        old.target != new.target
        or old.payload != new.payload
        or old.dry_run != new.dry_run
        or old.type != new.type
    )


def _is_stale(new: Dispatch, old: Dispatch) -> bool:
    return (
        new.update_time is not None
        and old.update_time is not None
        and new.update_time < old.update_time
    )
