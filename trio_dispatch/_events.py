"""What the dispatcher tells its subscribers: lifecycle events and running statuses.

Both kinds are frozen values. A `RunningStatus` carries the decision made when it was
emitted (started or not, until when, next start), so reading it late never turns a
start into a stop; it also reads like the dispatch it is about (``status.id``,
``status.target``, ``status.payload`` ...), so actor code stays short.

Example:
    >>> match status.running("BATTERY_PEAK_SHAVING"):
    ...     case RunningState.RUNNING:
    ...         actor.start(status.target, until=status.until)
    ...     case RunningState.STOPPED:
    ...         actor.stop()
    ...     case RunningState.DIFFERENT_TYPE:
    ...         pass
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeAlias, final

from ._model import Dispatch
from ._rule import RecurrenceRule
from ._target import Target

__all__ = ["Created", "Deleted", "LifecycleEvent", "RunningState", "RunningStatus", "Updated"]


@final
@dataclass(frozen=True, slots=True)
class Created:
    """A dispatch appeared (created on the server, or present when a receiver replays)."""

    dispatch: Dispatch


@final
@dataclass(frozen=True, slots=True)
class Updated:
    """A dispatch changed on the server; `previous` is the state before the change."""

    dispatch: Dispatch
    previous: Dispatch


@final
@dataclass(frozen=True, slots=True)
class Deleted:
    """A dispatch was deleted on the server (a dispatch that merely ended is not)."""

    dispatch: Dispatch


LifecycleEvent: TypeAlias = Created | Updated | Deleted


class RunningState(enum.Enum):
    """What an actor of one type should do with a `RunningStatus`."""

    RUNNING = "running"
    """Start, or reconfigure if already running for this dispatch."""
    STOPPED = "stopped"
    """Stop."""
    DIFFERENT_TYPE = "different_type"
    """The dispatch is for another type of actor: ignore it."""


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class RunningStatus:
    """A dispatch started, stopped, or changed while running: a frozen decision.

    Attributes:
        dispatch: the dispatch as it was when the decision was made.
        started: whether it was running at `decided_at`.
        decided_at: the wall-clock time of the decision.
        until: when the current run ends (`None` if unbounded, or when stopped).
        next_run: the next run start after this decision (`None` if there is none).
    """

    dispatch: Dispatch
    started: bool
    decided_at: datetime
    until: datetime | None
    next_run: datetime | None

    def running(self, type: str) -> RunningState:
        """What an actor that handles dispatches of `type` should do."""
        if self.dispatch.type != type:
            return RunningState.DIFFERENT_TYPE
        return RunningState.RUNNING if self.started else RunningState.STOPPED

    @property
    def id(self) -> int:
        """The dispatch id."""
        return self.dispatch.id

    @property
    def type(self) -> str:
        """The dispatch type."""
        return self.dispatch.type

    @property
    def start_time(self) -> datetime:
        """The dispatch's first start."""
        return self.dispatch.start_time

    @property
    def duration(self) -> timedelta | None:
        """The length of each run (`None`: until changed)."""
        return self.dispatch.duration

    @property
    def target(self) -> Target:
        """The components the dispatch applies to."""
        return self.dispatch.target

    @property
    def active(self) -> bool:
        """Whether the dispatch is active."""
        return self.dispatch.active

    @property
    def dry_run(self) -> bool:
        """Whether actors should only pretend."""
        return self.dispatch.dry_run

    @property
    def payload(self) -> dict[str, Any]:
        """The actor parameters."""
        return self.dispatch.payload

    @property
    def recurrence(self) -> RecurrenceRule | None:
        """How the dispatch repeats."""
        return self.dispatch.recurrence
