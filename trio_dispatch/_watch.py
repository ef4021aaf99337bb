"""`watch`: a live terminal view of a microgrid's dispatches and of what happens to them.

Why: the fastest way to understand a schedule is to watch it run. `watch` shows the
table of dispatches (state, countdown to the next change, duration, recurrence, target)
above a log of the latest events, and redraws on every event and at least every
`refresh` seconds so that countdowns tick. Without a terminal (a pipe, a file, a test)
it prints one plain line per event instead, append-only, easy to grep and to assert.

Theory of operation. Everything that turns data into text is a pure function of its
arguments and of an explicit ``now`` (`relative_time`, `summarize_recurrence`,
`dispatch_row`, `render_table`, `describe`, `format_log_entry`, `render_frame`), so it
is tested with exact strings. The async part is small: one task per subscription copies
events into a shared list and wakes the painter, which sorts what arrived (by time;
at one instant a lifecycle event before the running status it caused) and paints it.
The screen is never redrawn from inside a receiving task, so a burst of events costs
one redraw, and a slow terminal never stalls the dispatcher (its queues coalesce).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TextIO, final

import trio

from ._broadcast import Receiver
from ._dispatcher import ConnectionState, Dispatcher
from ._events import Created, Deleted, LifecycleEvent, RunningStatus, Updated
from ._model import Dispatch
from ._rule import Frequency, RecurrenceRule
from ._target import Target, TargetCategories, TargetIds

__all__ = [
    "COLUMNS",
    "LogEntry",
    "clip",
    "describe",
    "dispatch_row",
    "format_duration",
    "format_log_entry",
    "format_payload",
    "format_span",
    "format_target",
    "format_time",
    "next_change",
    "relative_time",
    "render_frame",
    "render_table",
    "running_state",
    "summarize_recurrence",
    "watch",
]

COLUMNS: Final = ("ID", "TYPE", "STATE", "NEXT", "DURATION", "RECURRENCE", "TARGET", "DRY-RUN")
"""The table's column headings, in order."""

# ANSI escape sequences (SGR colours and cursor control).
_GREEN: Final = "\x1b[32;1m"
_YELLOW: Final = "\x1b[33m"
_RED: Final = "\x1b[31m"
_DIM: Final = "\x1b[2m"
_BOLD: Final = "\x1b[1m"
_RESET: Final = "\x1b[0m"
_HOME: Final = "\x1b[H"
_CLEAR_SCREEN: Final = "\x1b[2J"
_CLEAR_LINE: Final = "\x1b[K"
_CLEAR_BELOW: Final = "\x1b[J"
_HIDE_CURSOR: Final = "\x1b[?25l"
_SHOW_CURSOR: Final = "\x1b[?25h"
_EPSILON: Final = 0.001  # seconds past a redraw boundary, so the clock is surely past it
_ESCAPE: Final = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

_STATE_COLOR: Final = {
    "RUNNING": _GREEN,
    "STOPPED": _YELLOW,
    "Deleted": _RED,
    "ended": _DIM,
    "inactive": _DIM,
}

_UNITS: Final = {
    Frequency.MINUTELY: ("min", "min"),
    Frequency.HOURLY: ("h", "h"),
    Frequency.DAILY: ("day", "days"),
    Frequency.WEEKLY: ("week", "weeks"),
    Frequency.MONTHLY: ("month", "months"),
    Frequency.YEARLY: ("year", "years"),
}

# -- pure formatting -----------------------------------------------------------------------


def format_span(seconds: int) -> str:
    """A length of time in at most two units: ``42s``, ``3m``, ``3m 20s``, ``2h 5m``, ``1d``.

    Example:
        >>> format_span(200), format_span(3600 + 59)
        ('3m 20s', '1h')
    """
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds!r}")
    parts: list[tuple[int, str]] = []
    rest = seconds
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        parts.append((rest // size, unit))
        rest %= size
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    (big, big_unit), *smaller = parts
    text = f"{big}{big_unit}"
    if smaller and smaller[0][0]:
        text += f" {smaller[0][0]}{smaller[0][1]}"
    return text


def relative_time(when: datetime, now: datetime) -> str:
    """`when` as seen from `now`: ``in 42s``, ``now``, ``3m ago``.

    A countdown rounds up (it shows ``in 1s`` until the moment itself, then ``now``
    for the first second after it), so it never claims that something already happened.

    Example:
        >>> t = datetime(2030, 1, 1, tzinfo=UTC)
        >>> relative_time(t + timedelta(seconds=42), t), relative_time(t, t + timedelta(minutes=3))
        ('in 42s', '3m ago')
    """
    delta = (when - now).total_seconds()
    if delta > 0:
        return f"in {format_span(math.ceil(delta))}"
    past = math.floor(-delta)
    return "now" if past == 0 else f"{format_span(past)} ago"


def format_duration(duration: timedelta | None) -> str:
    """The length of each run: ``20s``, ``1h 30m``; ``until changed`` for `None`."""
    if duration is None:
        return "until changed"
    return format_span(math.floor(duration.total_seconds()))


def format_time(t: datetime, now: datetime) -> str:
    """A wall-clock time in UTC: ``HH:MM:SS``, with the date if it is not `now`'s day."""
    t = t.astimezone(UTC)
    if t.date() == now.astimezone(UTC).date():
        return t.strftime("%H:%M:%S")
    return t.strftime("%Y-%m-%d %H:%M:%S")


def summarize_recurrence(rule: RecurrenceRule | None) -> str:
    """A rule in a few words: ``once``, ``every 1 min, 5x``, ``every 2 days, hours 8,20``.

    Example:
        >>> from trio_dispatch import EndCriteria
        >>> summarize_recurrence(
        ...     RecurrenceRule(frequency=Frequency.MINUTELY, end_criteria=EndCriteria(count=5))
        ... )
        'every 1 min, 5x'
    """
    if rule is None or not rule.is_recurring:
        return "once"
    one, many = _UNITS[rule.frequency]
    parts = [f"every {rule.interval} {one if rule.interval == 1 else many}"]
    for label, values in (
        ("months", rule.bymonths),
        ("days", rule.bymonthdays),
        ("on", tuple(day.name[:3] for day in rule.byweekdays)),
        ("hours", rule.byhours),
        ("minutes", rule.byminutes),
    ):
        if values:
            parts.append(f"{label} {','.join(str(v) for v in values)}")
    end = rule.end_criteria
    if end is not None and end.count is not None:
        parts.append(f"{end.count}x")
    elif end is not None and end.until is not None:
        parts.append(f"until {end.until.astimezone(UTC):%Y-%m-%d %H:%M:%S}")
    return ", ".join(parts)


def format_target(target: Target) -> str:
    """The components, compactly: ``ids 4,5``, ``BATTERY,INVERTER:PV``; ``-`` for none."""
    if isinstance(target, TargetIds):
        return f"ids {','.join(str(i) for i in sorted(target.ids))}" if target.ids else "-"
    assert isinstance(target, TargetCategories)
    names = sorted(
        c.category.name if c.type is None else f"{c.category.name}:{c.type.name}"
        for c in target.categories
    )
    return ",".join(names) or "-"


def format_payload(payload: dict[str, Any]) -> str:
    """The payload as compact JSON, with whole-number floats shown as ints (``50``)."""

    def tidy(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
            return int(value)
        if isinstance(value, dict):
            return {k: tidy(v) for k, v in value.items()}
        if isinstance(value, list):
            return [tidy(v) for v in value]
        return value

    return json.dumps(tidy(payload), sort_keys=True)


def running_state(dispatch: Dispatch, now: datetime) -> str:
    """``RUNNING``, ``stopped`` (a run is still to come), ``ended`` or ``inactive``."""
    if not dispatch.active:
        return "inactive"
    if dispatch.run_at(now) is not None:
        return "RUNNING"
    if dispatch.next_run_after(now) is None:
        return "ended"
    return "stopped"


def next_change(dispatch: Dispatch, now: datetime) -> str:
    """What changes next: ``ends in 15s``, ``starts in 42s``, ``ended 3m ago`` or ``-``."""
    if not dispatch.active:
        return "-"
    run = dispatch.run_at(now)
    if run is not None:
        return "until changed" if run.end is None else f"ends {relative_time(run.end, now)}"
    start = dispatch.next_run_after(now)
    if start is not None:
        return f"starts {relative_time(start, now)}"
    end = dispatch.last_run_end()
    if end is None or end > now:
        return "-"
    return f"ended {relative_time(end, now)}"


def dispatch_row(dispatch: Dispatch, now: datetime) -> tuple[str, ...]:
    """One table row, in the order of `COLUMNS`."""
    return (
        str(dispatch.id),
        dispatch.type,
        running_state(dispatch, now),
        next_change(dispatch, now),
        format_duration(dispatch.duration),
        summarize_recurrence(dispatch.recurrence),
        format_target(dispatch.target),
        "yes" if dispatch.dry_run else "",
    )


def _paint(text: str, color: str | None, ansi: bool) -> str:
    return f"{color}{text}{_RESET}" if ansi and color else text


def render_table(dispatches: Iterable[Dispatch], now: datetime, *, ansi: bool = False) -> list[str]:
    """The dispatches as aligned text lines, by id, with a heading line.

    With `ansi`, the heading is bold and the state is coloured (``RUNNING`` green).
    Trailing blanks are stripped.
    """
    rows = [dispatch_row(d, now) for d in sorted(dispatches, key=lambda d: d.id)]
    widths = [max(len(cell) for cell in column) for column in zip(COLUMNS, *rows, strict=True)]
    state = COLUMNS.index("STATE")

    def line(cells: Sequence[str], heading: bool) -> str:
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=True)]
        if heading:
            return _paint("  ".join(padded).rstrip(), _BOLD, ansi)
        padded[state] = _paint(padded[state], _STATE_COLOR.get(cells[state]), ansi)
        return "  ".join(padded).rstrip()

    return [line(COLUMNS, True), *(line(row, False) for row in rows)]


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class LogEntry:
    """One line of the event log: what happened (`label`), to which dispatch, when."""

    at: datetime
    label: str
    """``Created``, ``Updated``, ``Deleted``, ``RUNNING``, ``STOPPED`` or ``LINK``."""
    text: str
    rank: int = 0
    """Orders entries of one instant: lifecycle (0) before the running status (1)."""


def _changes(new: Dispatch, old: Dispatch) -> list[str]:
    changes: list[str] = []
    if new.type != old.type:
        changes.append(f"type {old.type} -> {new.type}")
    if new.active != old.active:
        changes.append("activated" if new.active else "deactivated")
    if new.start_time != old.start_time:
        changes.append(f"start {new.start_time.astimezone(UTC):%Y-%m-%d %H:%M:%S}")
    if new.duration != old.duration:
        changes.append(f"duration {format_duration(new.duration)}")
    if new.recurrence != old.recurrence:
        changes.append(f"recurrence {summarize_recurrence(new.recurrence)}")
    if new.target != old.target:
        changes.append(f"target {format_target(new.target)}")
    if new.dry_run != old.dry_run:
        changes.append("dry-run on" if new.dry_run else "dry-run off")
    if new.payload != old.payload:
        changes.append(f"payload {format_payload(new.payload)}")
    return changes or ["no visible change"]


def describe(
    event: LifecycleEvent | RunningStatus,
    now: datetime,
    *,
    previous: RunningStatus | None = None,
) -> LogEntry:
    """The log entry of an event received at `now`.

    A running status is dated by its decision (`RunningStatus.decided_at`); a lifecycle
    event, which carries no time of its own, by `now`. Given the `previous` status of
    the same dispatch, a start that only changes a running dispatch's parameters is
    marked ``reconfigured``.
    """
    if isinstance(event, RunningStatus):
        d = event.dispatch
        at = event.decided_at
        if event.started:
            detail = (
                "until changed" if event.until is None else f"until {format_time(event.until, at)}"
            )
        elif event.next_run is not None:
            detail = f"next {format_time(event.next_run, at)}"
        else:
            detail = "no further runs"
        if d.dry_run:
            detail += ", dry-run"
        if (
            event.started
            and previous is not None
            and previous.started
            and previous.until == event.until
            and previous.dispatch.type == d.type
        ):
            detail += ", reconfigured"
        label = "RUNNING" if event.started else "STOPPED"
        return LogEntry(at=at, label=label, text=f"#{d.id} {d.type}  {detail}", rank=1)
    d = event.dispatch
    if isinstance(event, Created):
        facts = [
            f"start {format_time(d.start_time, now)}",
            format_duration(d.duration),
            summarize_recurrence(d.recurrence),
        ]
        if d.target != TargetIds(ids=frozenset()):
            facts.append(format_target(d.target))
        if d.dry_run:
            facts.append("dry-run")
        if not d.active:
            facts.append("inactive")
        return LogEntry(at=now, label="Created", text=f"#{d.id} {d.type}  {', '.join(facts)}")
    if isinstance(event, Updated):
        changed = ", ".join(_changes(d, event.previous))
        return LogEntry(at=now, label="Updated", text=f"#{d.id} {d.type}  {changed}")
    assert isinstance(event, Deleted)
    return LogEntry(at=now, label="Deleted", text=f"#{d.id} {d.type}")


def format_log_entry(entry: LogEntry, *, date: bool = True, ansi: bool = False) -> str:
    """``2030-01-01 00:00:05  RUNNING  #1 BATTERY_PEAK_SHAVING  until 00:00:25``.

    Without `date`, the time alone (``00:00:05  RUNNING ...``), for the screen's log.
    """
    at = entry.at.astimezone(UTC)
    when = at.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")
    label = _paint(entry.label.ljust(7), _STATE_COLOR.get(entry.label), ansi)
    return f"{when}  {label}  {entry.text}"


def _visible_len(text: str) -> int:
    return len(_ESCAPE.sub("", text))


def clip(line: str, width: int) -> str:
    """Cut `line` to `width` visible characters, keeping its escape sequences whole."""
    if _visible_len(line) <= width:
        return line
    out: list[str] = []
    shown = 0
    position = 0
    for match in _ESCAPE.finditer(line):
        chunk = line[position : match.start()][: max(0, width - shown)]
        out.append(chunk)
        shown += len(chunk)
        out.append(match.group())
        position = match.end()
    out.append(line[position:][: max(0, width - shown)])
    return "".join(out) + (_RESET if "\x1b[" in line else "")


def render_frame(
    *,
    banner: Sequence[str],
    status: str,
    table: Sequence[str],
    log: Sequence[str],
    max_log: int,
) -> list[str]:
    """The whole screen, as lines: banner, status line, table, latest events, hint."""
    lines = [*banner, status, "", *table, "", f"Latest events (newest last, up to {max_log}):"]
    lines += log if log else ["  (none yet)"]
    lines += ["", "Ctrl-C to quit."]
    return lines


# -- the live view ---------------------------------------------------------------------------


@final
class _View:
    """The state of one `watch`: events waiting to be shown, the log, the output."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        out: TextIO,
        clock: Callable[[], datetime],
        ansi: bool,
        max_log: int,
        banner: Sequence[str],
    ) -> None:
        self.dispatcher = dispatcher
        self.out = out
        self.clock = clock
        self.ansi = ansi
        self.max_log = max_log
        self.banner = tuple(banner)
        self.log: deque[LogEntry] = deque(maxlen=max_log)
        self.pending: list[tuple[LogEntry, int]] = []
        self.changed = trio.Event()
        self.sequence = 0
        self.ended = 0

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def add(self, entry: LogEntry) -> None:
        self.sequence += 1
        self.pending.append((entry, self.sequence))
        self.changed.set()

    def take(self) -> list[LogEntry]:
        """What arrived since last time, by time (and, at one instant, cause first)."""
        batch = sorted(self.pending, key=lambda item: (item[0].at, item[0].rank, item[1]))
        self.pending.clear()
        return [entry for entry, _ in batch]

    def start(self) -> None:
        """The first output: clear the screen, or print the banner and the table."""
        if self.ansi:
            self.write(_HIDE_CURSOR + _CLEAR_SCREEN)
            return
        d = self.dispatcher
        now = self.clock()
        lines = [
            *self.banner,
            f"watching microgrid {d.microgrid_id} at {now.astimezone(UTC):%Y-%m-%d %H:%M:%S} "
            f"UTC: {len(d.dispatches)} dispatches",
            *render_table(d.dispatches.values(), now),
            "",
        ]
        self.write("".join(line + "\n" for line in lines))

    def show(self, batch: list[LogEntry]) -> None:
        """Print new events (plain), or remember them for the next frame (ANSI)."""
        if self.ansi:
            self.log.extend(batch)
        elif batch:
            self.write("".join(format_log_entry(entry) + "\n" for entry in batch))

    def paint(self) -> None:
        """Redraw the whole screen in place."""
        d = self.dispatcher
        now = self.clock()
        status = (
            f"microgrid {d.microgrid_id}  |  {d.connection.value.value}  |  "
            f"{now.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC  |  {len(d.dispatches)} dispatches"
        )
        table = render_table(d.dispatches.values(), now, ansi=True)

        def frame(log: Sequence[str]) -> list[str]:
            return render_frame(
                banner=self.banner,
                status=_paint(status, _BOLD, True),
                table=table,
                log=log,
                max_log=self.max_log,
            )

        width, height = shutil.get_terminal_size()
        # A frame taller than the terminal would scroll and break the redraw in place:
        # show fewer (the newest) events, and cut what still does not fit.
        room = max(1, height - len(frame(["-"])))
        shown = list(self.log)[-room:]
        lines = frame([format_log_entry(e, date=False, ansi=True) for e in shown])
        lines = lines[: max(1, height - 1)]
        body = "".join(clip(line, width) + _CLEAR_LINE + "\n" for line in lines)
        self.write(_HOME + body + _CLEAR_BELOW)

    def finish(self) -> None:
        if self.ansi:
            self.write(_SHOW_CURSOR + "\n")

    async def copy(self, receiver: Receiver[LifecycleEvent] | Receiver[RunningStatus]) -> None:
        last: dict[int, RunningStatus] = {}
        with receiver:
            async for event in receiver:
                previous = None
                if isinstance(event, RunningStatus):
                    previous = last.get(event.id)
                    last[event.id] = event
                self.add(describe(event, self.clock(), previous=previous))
        self.ended += 1
        self.changed.set()

    async def follow_connection(self) -> None:
        async for value, _ in self.dispatcher.connection.transitions():
            if value is not ConnectionState.CLOSED:
                self.add(LogEntry(at=self.clock(), label="LINK", text=value.value))

    async def run(self, refresh: float) -> None:
        """Paint until both subscriptions end (the dispatcher closed) or cancelled."""
        while self.ended < 2:
            if self.ansi:
                self.paint()
                # Wake on the clock's period boundaries, so that countdowns tick evenly.
                phase = self.clock().timestamp() % refresh
                with trio.move_on_after(refresh - phase + _EPSILON):
                    await self.changed.wait()
            else:
                await self.changed.wait()
            # Let the other receiving task add what the same step published, so that a
            # lifecycle event and the status it caused are sorted together.
            await trio.lowlevel.checkpoint()
            self.changed = trio.Event()
            self.show(self.take())


async def watch(
    dispatcher: Dispatcher,
    *,
    out: TextIO,
    clock: Callable[[], datetime],
    refresh: float = 1.0,
    ansi: bool = True,
    max_log: int = 15,
    banner: Sequence[str] = (),
) -> None:
    """Show the dispatcher's dispatches and its events on `out` until cancelled.

    With `ansi`, the screen is redrawn in place (cursor home, clear) on every event and
    at least every `refresh` seconds, with the newest `max_log` events under the table;
    running dispatches are green. Without it, the table is printed once and then one
    line per event, append-only: good for pipes, files and tests. Returns when the
    dispatcher closes; a cancellation leaves the terminal as it found it.

    Args:
        dispatcher: an open dispatcher (see `open_dispatcher`).
        out: where to write, e.g. ``sys.stdout``.
        clock: the wall clock (UTC), the dispatcher's.
        refresh: the longest time (seconds) between redraws in ANSI mode.
        ansi: redraw in place with colours, or print plain lines.
        max_log: how many of the latest events the screen shows.
        banner: lines shown above everything else (once, in plain mode).

    Example:
        >>> async with open_dispatcher(microgrid_id=1, server_url=url, key=key) as d:
        ...     await watch(d, out=sys.stdout, clock=system_clock)
    """
    if not refresh > 0:
        raise ValueError(f"refresh must be > 0 seconds, got {refresh!r}")
    if isinstance(max_log, bool) or not isinstance(max_log, int) or max_log < 1:
        raise ValueError(f"max_log must be an int >= 1, got {max_log!r}")
    view = _View(dispatcher, out=out, clock=clock, ansi=ansi, max_log=max_log, banner=banner)
    # Subscribe before the first output, so that nothing happens unseen in between.
    lifecycle = dispatcher.lifecycle_events.new_receiver()
    running = dispatcher.running_status_change.new_receiver()
    try:
        view.start()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(view.copy, lifecycle)
            nursery.start_soon(view.copy, running)
            nursery.start_soon(view.follow_connection)
            await view.run(refresh)
            nursery.cancel_scope.cancel()
    finally:
        lifecycle.close()
        running.close()
        view.finish()
