"""Merge strategies: many dispatches, one continuous run per identity.

An actor often does not care *which* dispatch asks it to run, only *that* one does: two
overlapping peak-shaving dispatches, or a dispatch that ends at 10:00 followed by one that
starts at 10:00, should look like one run to it, not like start, stop, start. A
`MergeStrategy` says which dispatches belong together (their *identity*); a `Merger`
turns the dispatcher's per-dispatch `RunningStatus` items into one `MergedStatus` stream
per identity.

Rules (each has a test in ``tests/test_merge.py``):

1. **Identity.** ``strategy.identity(dispatch)`` is plain, comparable data built from the
   dispatch: equal in every process and independent of set iteration order (sets are
   sorted into tuples; nothing is ``hash()``-ed). A dispatch whose identity changes
   while it runs (say its ``dry_run`` flips) leaves its old identity and joins the new.
2. **Members.** An identity's members are its dispatches that are running, each with the
   last `RunningStatus` that said so.
3. **Batches.** The dispatcher hands over what it decided at one instant for one trigger
   (one deadline, one message from the server) as one batch, and `Merger.feed` decides
   per identity only at the end of a batch, by comparing the members before and after:
   none -> some is a start; some -> none is a stop; some -> some with any member joined,
   left or changed is a reconfiguration; no net change is nothing. So a member that ends
   exactly when another begins (both decided at the same deadline) is a reconfiguration,
   never a stop followed by a start.
4. **What an item shows.** ``until`` is the latest end among the members' runs (``None``
   if any of them is unbounded), and the dispatch values (``target``, ``payload``,
   ``dry_run``...) are those of the member that started or changed last (``newest``). A
   stop shows the member that left last, as it ran.
5. **Cost.** Feeding one status costs O(log m) for an identity of m members (dict
   updates and a heap for ``until``), plus an amortized O(1) share of the member
   snapshot: `Members` is built lazily from a checkpoint and a change log, and is
   materialized (sorted by dispatch id) only when someone reads it.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol, final, overload, runtime_checkable

from ._events import RunningState, RunningStatus
from ._target import Target, TargetIds

if TYPE_CHECKING:
    from ._model import Dispatch

__all__ = [
    "Members",
    "MergeByType",
    "MergeByTypeTarget",
    "MergeStrategy",
    "MergedStatus",
    "Merger",
    "canonical_target",
]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_MIN_CHECKPOINT: Final = 8  # log entries tolerated before a small group is checkpointed


# -- strategies ----------------------------------------------------------------------------


@runtime_checkable
class MergeStrategy(Protocol):
    """Which dispatches form one continuous run: those with equal identities.

    An identity must be deterministic: built from the dispatch's values as strings,
    numbers, booleans and tuples (sort any set first), so that it is the same in every
    process and whatever order a set iterates in. Never use ``hash()``: the hash of a
    string changes from one process to the next.

    Example (one run per dispatch, i.e. no merging across dispatches):
        >>> class PerDispatch:
        ...     def identity(self, dispatch: Dispatch) -> int:
        ...         return dispatch.id
    """

    def identity(self, dispatch: Dispatch) -> Hashable:
        """The identity of the run `dispatch` belongs to."""
        ...


def canonical_target(target: Target) -> tuple[str, tuple[Any, ...]]:
    """A deterministic, order-independent form of a target, for use in identities.

    Component ids become ``("ids", (1, 2))``; categories become
    ``("categories", ((3, 2), (5,)))``: the protobuf number of each category, followed
    by that of its subtype when it is narrowed to one. Both are sorted.

    Example:
        >>> canonical_target(TargetIds.of(3, 1))
        ('ids', (1, 3))
    """
    if isinstance(target, TargetIds):
        return ("ids", tuple(sorted(target.ids)))
    return (
        "categories",
        tuple(
            sorted(
                (int(c.category),) if c.type is None else (int(c.category), int(c.type))
                for c in target.categories
            )
        ),
    )


@final
@dataclass(frozen=True, slots=True)
class MergeByType:
    """Merge dispatches of the same type and ``dry_run``: identity ``(type, dry_run)``.

    Example:
        >>> MergeByType().identity(dispatch)
        ('BATTERY_PEAK_SHAVING', False)
    """

    def identity(self, dispatch: Dispatch) -> tuple[str, bool]:
        """``(type, dry_run)``."""
        return (dispatch.type, dispatch.dry_run)


@final
@dataclass(frozen=True, slots=True)
class MergeByTypeTarget:
    """Merge dispatches of the same type, ``dry_run`` and target.

    The identity is ``(type, dry_run, canonical_target(target))``: the same set of
    components gives the same identity whatever order it was written in.

    Example:
        >>> MergeByTypeTarget().identity(dispatch)
        ('BATTERY_PEAK_SHAVING', False, ('ids', (4, 5)))
    """

    def identity(self, dispatch: Dispatch) -> tuple[str, bool, tuple[Any, ...]]:
        """``(type, dry_run, canonical target)``."""
        return (dispatch.type, dispatch.dry_run, canonical_target(dispatch.target))


# -- what the merger emits -----------------------------------------------------------------

_Change = tuple[int, RunningStatus | None]  # (dispatch id, its status; None: it left)


@final
class Members(Sequence[RunningStatus]):
    """The running members of a merged run at one decision, by dispatch id.

    An immutable sequence of each member's last `RunningStatus`. It is built only when
    read (so emitting a merged item does not cost O(members)), then cached.
    """

    __slots__ = ("_base", "_ids", "_items", "_len", "_log", "_n")

    def __init__(
        self,
        base: Mapping[int, RunningStatus] | None = None,
        log: list[_Change] | None = None,
        n: int = 0,
        length: int = 0,
    ) -> None:
        self._base = base
        self._log = log
        self._n = n
        self._len = length
        self._items: tuple[RunningStatus, ...] | None = None if base is not None else ()
        self._ids: tuple[int, ...] | None = None

    def _all(self) -> tuple[RunningStatus, ...]:
        items = self._items
        if items is None:
            current = dict(self._base or {})
            for dispatch_id, status in itertools.islice(self._log or (), self._n):
                if status is None:
                    del current[dispatch_id]
                else:
                    current[dispatch_id] = status
            items = tuple(current[k] for k in sorted(current))
            self._items = items
            self._base = self._log = None  # let the group's old checkpoints go
        return items

    @property
    def ids(self) -> tuple[int, ...]:
        """The members' dispatch ids, ascending."""
        if self._ids is None:
            self._ids = tuple(s.dispatch.id for s in self._all())
        return self._ids

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> RunningStatus: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[RunningStatus, ...]: ...
    def __getitem__(self, index: int | slice) -> RunningStatus | tuple[RunningStatus, ...]:
        return self._all()[index]

    def __iter__(self) -> Iterator[RunningStatus]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Members):
            return self._len == other._len and self._all() == other._all()
        if isinstance(other, tuple | list):
            return self._all() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._all())

    def __repr__(self) -> str:
        return f"Members(ids={self.ids!r})"


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class MergedStatus:
    """A merged run started, stopped, or changed: a frozen decision, like `RunningStatus`.

    It reads like the dispatch of its `newest` member (``.id``, ``.target``,
    ``.payload``, ``.dry_run``, ``.running(type)``...), so code written for
    `RunningStatus` items works on merged items unchanged.

    Attributes:
        identity: what the strategy says these dispatches have in common.
        started: whether the identity was running at `decided_at`.
        decided_at: the wall-clock time of the decision.
        since: when this continuous run began.
        until: the latest end among the members' runs (``None`` if any is unbounded,
            or when stopped).
        members: the running members, by dispatch id (empty when stopped).
        newest: the member that started or changed last; for a stop, the member that
            left last, as it ran.
    """

    identity: Hashable
    started: bool
    decided_at: datetime
    since: datetime
    until: datetime | None
    members: Members
    newest: RunningStatus

    def running(self, type: str) -> RunningState:
        """What an actor that handles dispatches of `type` should do."""
        if self.newest.dispatch.type != type:
            return RunningState.DIFFERENT_TYPE
        return RunningState.RUNNING if self.started else RunningState.STOPPED

    @property
    def dispatch(self) -> Dispatch:
        """The newest member's dispatch."""
        return self.newest.dispatch

    @property
    def id(self) -> int:
        """The newest member's dispatch id."""
        return self.newest.dispatch.id

    @property
    def type(self) -> str:
        """The newest member's type."""
        return self.newest.dispatch.type

    @property
    def start_time(self) -> datetime:
        """The newest member's first start (see `since` for the merged run's start)."""
        return self.newest.dispatch.start_time

    @property
    def target(self) -> Target:
        """The newest member's target."""
        return self.newest.dispatch.target

    @property
    def dry_run(self) -> bool:
        """The newest member's ``dry_run``."""
        return self.newest.dispatch.dry_run

    @property
    def payload(self) -> dict[str, Any]:
        """The newest member's payload."""
        return self.newest.dispatch.payload


# -- the state machine ---------------------------------------------------------------------


def _key(t: datetime) -> int:
    """Microseconds since the epoch, negated: a max-heap key."""
    return -((t - _EPOCH) // _US)


class _Group:
    """The members of one identity, with what is needed to decide about them."""

    __slots__ = (
        "base",
        "heap",
        "last_left",
        "log",
        "members",
        "since",
        "unbounded",
        "untils",
    )

    def __init__(self) -> None:
        # Insertion order is recency: a member that changes is moved to the end.
        self.members: dict[int, RunningStatus] = {}
        self.unbounded = 0  # members whose run has no end
        self.untils: dict[datetime, int] = {}  # run end -> members ending then
        self.heap: list[tuple[int, datetime]] = []  # max-heap of run ends (lazy deletes)
        self.base: dict[int, RunningStatus] = {}  # checkpoint of `members` ...
        self.log: list[_Change] = []  # ... and the changes since
        self.since: datetime | None = None  # start of the current run; None: stopped
        self.last_left: RunningStatus | None = None

    def put(self, status: RunningStatus) -> None:
        dispatch_id = status.dispatch.id
        old = self.members.pop(dispatch_id, None)
        if old is not None:
            self._forget_until(old.until)
        self.members[dispatch_id] = status
        until = status.until
        if until is None:
            self.unbounded += 1
        else:
            count = self.untils.get(until, 0)
            self.untils[until] = count + 1
            if count == 0:
                heapq.heappush(self.heap, (_key(until), until))
        self.log.append((dispatch_id, status))

    def remove(self, dispatch_id: int) -> None:
        old = self.members.pop(dispatch_id)
        self._forget_until(old.until)
        self.last_left = old
        self.log.append((dispatch_id, None))

    def _forget_until(self, until: datetime | None) -> None:
        if until is None:
            self.unbounded -= 1
            return
        count = self.untils[until] - 1
        if count:
            self.untils[until] = count
        else:
            del self.untils[until]
            # Stale heap entries are dropped when they reach the top; rebuild if they
            # ever outnumber the live ones (a value that leaves and returns while
            # buried pushes a duplicate).
            if len(self.heap) > 2 * len(self.untils) + 16:
                self.heap = [(_key(t), t) for t in self.untils]
                heapq.heapify(self.heap)

    def until(self) -> datetime | None:
        if self.unbounded:
            return None
        heap, untils = self.heap, self.untils
        while heap and heap[0][1] not in untils:
            heapq.heappop(heap)
        return heap[0][1] if heap else None

    def snapshot(self) -> Members:
        if len(self.log) > max(len(self.members), _MIN_CHECKPOINT):
            # Copying costs O(members), once per more changes than that: amortized O(1).
            self.base = dict(self.members)
            self.log = []
        return Members(self.base, self.log, len(self.log), len(self.members))

    def decide(self, identity: Hashable, now: datetime) -> MergedStatus:
        if self.members:
            if self.since is None:
                self.since = now
            return MergedStatus(
                identity=identity,
                started=True,
                decided_at=now,
                since=self.since,
                until=self.until(),
                members=self.snapshot(),
                newest=self.members[next(reversed(self.members))],
            )
        assert self.since is not None
        assert self.last_left is not None
        since, self.since = self.since, None
        return MergedStatus(
            identity=identity,
            started=False,
            decided_at=now,
            since=since,
            until=None,
            members=Members(),
            newest=self.last_left,
        )


@final
class Merger:
    """Pure merge state: feed it running-status batches, get merged items back.

    It never sleeps, reads a clock or does I/O; times come from the items.

    Example:
        >>> merger = Merger(MergeByType())
        >>> merger.feed(scheduler.advance(now))  # one batch per decision instant
        [MergedStatus(identity=('BATTERY', False), started=True, ...)]
    """

    def __init__(self, strategy: MergeStrategy) -> None:
        if not callable(getattr(strategy, "identity", None)):
            raise TypeError(
                f"merge strategy must have an identity(dispatch) method, got {strategy!r}"
            )
        self._strategy = strategy
        self._groups: dict[Hashable, _Group] = {}
        self._identity_of: dict[int, Hashable] = {}  # running dispatch id -> identity

    @property
    def strategy(self) -> MergeStrategy:
        """The strategy this merger groups by."""
        return self._strategy

    def running(self) -> dict[Hashable, Members]:
        """The identities running now, with their members."""
        return {identity: group.snapshot() for identity, group in self._groups.items()}

    def feed(self, batch: Iterable[RunningStatus]) -> list[MergedStatus]:
        """Take the statuses decided at one instant; return the merged items they imply.

        Items come out in the order in which their identities were first touched in
        the batch, at most one per identity.
        """
        identity_of = self._identity_of
        groups = self._groups
        # identity -> {dispatch id: its member status before this batch (None: absent)}
        touched: dict[Hashable, dict[int, RunningStatus | None]] = {}
        decided: dict[Hashable, datetime] = {}
        for status in batch:
            dispatch_id = status.dispatch.id
            new = self._strategy.identity(status.dispatch) if status.started else None
            if dispatch_id in identity_of:
                old = identity_of[dispatch_id]
                if not status.started or old != new:
                    group = groups[old]
                    before = touched.setdefault(old, {})
                    if dispatch_id not in before:
                        before[dispatch_id] = group.members[dispatch_id]
                    group.remove(dispatch_id)
                    del identity_of[dispatch_id]
                    decided[old] = max(decided.get(old, status.decided_at), status.decided_at)
            if status.started:
                joined = groups.get(new)
                if joined is None:
                    joined = groups[new] = _Group()
                group = joined
                before = touched.setdefault(new, {})
                if dispatch_id not in before:
                    before[dispatch_id] = group.members.get(dispatch_id)
                group.put(status)
                identity_of[dispatch_id] = new
                decided[new] = max(decided.get(new, status.decided_at), status.decided_at)
        out: list[MergedStatus] = []
        for identity, before in touched.items():
            group = groups[identity]
            members = group.members
            if any(members.get(i) is not old for i, old in before.items()):
                out.append(group.decide(identity, decided[identity]))
            if not members:
                del groups[identity]
        return out
