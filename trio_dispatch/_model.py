"""The dispatch: what should run, where, when, and with which parameters.

`Dispatch` is a frozen value: the state of one dispatch as the server last described
it. It validates at construction (every error names the field and the value), and it
answers the scheduling questions an actor asks ("running now?", "next start?", "when
does this run end?") through the occurrence arithmetic in `_recurrence`, which costs
the same whatever the dispatch's age.

Example:
    >>> from datetime import datetime, timedelta, UTC
    >>> d = Dispatch(
    ...     id=7,
    ...     type="BATTERY_PEAK_SHAVING",
    ...     start_time=datetime(2026, 1, 1, 8, tzinfo=UTC),
    ...     duration=timedelta(hours=1),
    ...     recurrence=RecurrenceRule(frequency=Frequency.DAILY),
    ... )
    >>> d.started_at(datetime(2026, 3, 5, 8, 30, tzinfo=UTC))
    True
    >>> d.next_run_after(datetime(2026, 3, 5, 8, 30, tzinfo=UTC))
    datetime.datetime(2026, 3, 6, 8, 0, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, final

from . import _validate as v
from ._payload import check_payload
from ._recurrence import Run, Schedule
from ._rule import RecurrenceRule
from ._target import Target, TargetCategories, TargetIds

__all__ = ["Dispatch"]


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class Dispatch:
    """One dispatch, as stored by the server.

    Attributes:
        id: the server-assigned id, unique within the microgrid.
        type: what kind of work this is; actors pick their dispatches by type.
        start_time: the first start (UTC). With a recurrence rule, the rule's first
            occurrence; by-rules may move it later than this time.
        duration: how long each run lasts; `None` means "until changed"; zero means
            the dispatch marks instants and is never running.
        target: the components it applies to.
        active: an inactive dispatch never runs.
        dry_run: actors should log what they would do instead of doing it.
        payload: actor parameters (JSON-like; see `check_payload` for the rules).
        recurrence: how it repeats; `None` for a one-off.
        create_time, update_time: set by the server.
        end_time: the end of the last run as the server computed it; `None` when
            unbounded. Use `last_run_end()` for our own computation.
    """

    id: int
    type: str
    start_time: datetime
    duration: timedelta | None = None
    target: Target = field(default_factory=lambda: TargetIds(ids=frozenset()))
    active: bool = True
    dry_run: bool = False
    payload: dict[str, Any] = field(default_factory=dict, hash=False)
    recurrence: RecurrenceRule | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None
    end_time: datetime | None = None
    _schedule: Schedule = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        v.integer("id", self.id, 0, 2**64 - 1)
        if not isinstance(self.type, str):
            raise TypeError(f"type must be a str, got {self.type!r}")
        if not self.type.strip():
            raise ValueError(f"type must not be empty, got {self.type!r}")
        set_(self, "start_time", v.utc_datetime("start_time", self.start_time))
        v.whole_seconds("duration", self.duration)
        if not isinstance(self.target, TargetIds | TargetCategories):
            raise TypeError(f"target must be a TargetIds or TargetCategories, got {self.target!r}")
        for name in ("active", "dry_run"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        set_(self, "payload", check_payload(self.payload))
        rule = self.recurrence
        if rule is not None and not isinstance(rule, RecurrenceRule):
            raise TypeError(f"recurrence must be a RecurrenceRule or None, got {rule!r}")
        until = rule.end_criteria.until if rule and rule.end_criteria else None
        if until is not None and until <= self.start_time:
            raise ValueError(
                f"recurrence.end_criteria.until must be after start_time "
                f"{self.start_time.isoformat()}, got {until.isoformat()}"
            )
        for name in ("create_time", "update_time", "end_time"):
            set_(self, name, v.optional_utc_datetime(name, getattr(self, name)))
        set_(self, "_schedule", Schedule(self.start_time, self.duration, rule, active=self.active))

    def started_at(self, t: datetime) -> bool:
        """Whether a run of this dispatch covers `t` (start inclusive, end exclusive)."""
        return self._schedule.started_at(t)

    def next_run_after(self, t: datetime) -> datetime | None:
        """The first run start at or after `t`, or `None` if no run starts from then on."""
        return self._schedule.next_run_after(t)

    def run_at(self, t: datetime) -> Run | None:
        """The run covering `t`, or `None` when the dispatch is not running at `t`."""
        return self._schedule.run_at(t)

    def runs_between(self, start: datetime, end: datetime) -> Iterator[Run]:
        """Lazily yield the runs that overlap ``[start, end)``, in start order."""
        return self._schedule.runs_between(start, end)

    def last_run_end(self) -> datetime | None:
        """When the last run ends, or `None` when the dispatch runs without end."""
        return self._schedule.last_run_end()
