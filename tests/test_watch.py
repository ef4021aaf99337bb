"""The live view (`watch`) and the demo: exact text of the pure parts, the demo end to end."""

from __future__ import annotations

import functools
import io
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio
import trio.testing

from trio_dispatch import (
    BatteryType,
    ComponentCategory,
    ConnectionState,
    Created,
    Deleted,
    Dispatch,
    EndCriteria,
    Frequency,
    InverterType,
    RecurrenceRule,
    RunningStatus,
    TargetCategories,
    TargetCategory,
    TargetIds,
    Updated,
    Weekday,
)
from trio_dispatch._demo import _want_ansi, main_watch, run_demo
from trio_dispatch._watch import (
    LogEntry,
    _View,
    clip,
    describe,
    dispatch_row,
    format_duration,
    format_log_entry,
    format_payload,
    format_span,
    format_target,
    next_change,
    relative_time,
    render_frame,
    render_table,
    running_state,
    summarize_recurrence,
    watch,
)
from trio_dispatch.testing import WallClock

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)
GREEN = "\x1b[32;1m"
RESET = "\x1b[0m"


def minutely(count: int | None = None) -> RecurrenceRule:
    end = None if count is None else EndCriteria(count=count)
    return RecurrenceRule(frequency=Frequency.MINUTELY, end_criteria=end)


def peak(**overrides: object) -> Dispatch:
    fields: dict[str, object] = {
        "id": 1,
        "type": "BATTERY_PEAK_SHAVING",
        "start_time": T0 + 5 * S,
        "duration": 20 * S,
        "recurrence": minutely(5),
        "target": TargetCategories.of(ComponentCategory.BATTERY),
        "payload": {"limit_kw": 50.0},
    }
    fields.update(overrides)
    return Dispatch(**fields)  # type: ignore[arg-type]


# -- times and spans ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (42, "42s"),
        (60, "1m"),
        (200, "3m 20s"),
        (3600, "1h"),
        (3659, "1h"),
        (3660, "1h 1m"),
        (86400 + 4 * 3600 + 59, "1d 4h"),
        (3 * 86400, "3d"),
    ],
)
def test_format_span(seconds: int, text: str) -> None:
    assert format_span(seconds) == text


def test_format_span_refuses_negative() -> None:
    with pytest.raises(ValueError, match="seconds must be >= 0, got -1"):
        format_span(-1)


@pytest.mark.parametrize(
    ("offset", "text"),
    [
        (timedelta(seconds=42), "in 42s"),
        (timedelta(seconds=41, milliseconds=200), "in 42s"),  # a countdown rounds up
        (timedelta(milliseconds=1), "in 1s"),
        (timedelta(0), "now"),
        (-timedelta(milliseconds=999), "now"),
        (-timedelta(seconds=1), "1s ago"),
        (-timedelta(minutes=3), "3m ago"),
        (-timedelta(minutes=3, seconds=20, milliseconds=700), "3m 20s ago"),
        (timedelta(hours=2, minutes=5), "in 2h 5m"),
    ],
)
def test_relative_time(offset: timedelta, text: str) -> None:
    assert relative_time(T0 + offset, T0) == text


def test_format_duration() -> None:
    assert format_duration(None) == "until changed"
    assert format_duration(timedelta(0)) == "0s"
    assert format_duration(timedelta(minutes=90)) == "1h 30m"


def test_format_payload_shows_whole_floats_as_ints() -> None:
    assert format_payload({"b": 1.0, "a": [2.5, 3.0, {"c": None}]}) == (
        '{"a": [2.5, 3, {"c": null}], "b": 1}'
    )


# -- recurrence and targets -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        (None, "once"),
        (RecurrenceRule(), "once"),
        (minutely(5), "every 1 min, 5x"),
        (minutely(), "every 1 min"),
        (
            RecurrenceRule(frequency=Frequency.HOURLY, interval=3, byminutes=(30, 0)),
            "every 3 h, minutes 0,30",
        ),
        (
            RecurrenceRule(
                frequency=Frequency.DAILY,
                interval=2,
                byhours=(20, 8),
                byweekdays=(Weekday.FRIDAY, Weekday.MONDAY),
                end_criteria=EndCriteria(until=datetime(2030, 2, 1, tzinfo=UTC)),
            ),
            "every 2 days, on MON,FRI, hours 8,20, until 2030-02-01 00:00:00",
        ),
        (RecurrenceRule(frequency=Frequency.WEEKLY), "every 1 week"),
        (
            RecurrenceRule(frequency=Frequency.MONTHLY, bymonthdays=(1, -1)),
            "every 1 month, days -1,1",
        ),
        (
            RecurrenceRule(frequency=Frequency.YEARLY, interval=2, bymonths=(6, 12)),
            "every 2 years, months 6,12",
        ),
    ],
)
def test_summarize_recurrence(rule: RecurrenceRule | None, text: str) -> None:
    assert summarize_recurrence(rule) == text


def test_format_target() -> None:
    assert format_target(TargetIds(ids=frozenset())) == "-"
    assert format_target(TargetIds.of(11, 3, 10)) == "ids 3,10,11"
    assert format_target(TargetCategories(categories=frozenset())) == "-"
    categories = TargetCategories.of(
        TargetCategory(category=ComponentCategory.INVERTER, type=InverterType.PV),
        ComponentCategory.INVERTER,
        TargetCategory(category=ComponentCategory.BATTERY, type=BatteryType.LI_ION),
        ComponentCategory(99),
    )
    assert format_target(categories) == "BATTERY:LI_ION,INVERTER,INVERTER:PV,UNKNOWN_99"


# -- states and the table -------------------------------------------------------------------


def test_states_over_a_dispatch_life() -> None:
    d = peak()  # runs [05, 25) of the minutes 12:00 .. 12:04
    assert (running_state(d, T0), next_change(d, T0)) == ("stopped", "starts in 5s")
    at = T0 + 5 * S
    assert (running_state(d, at), next_change(d, at)) == ("RUNNING", "ends in 20s")
    at = T0 + 25 * S
    assert (running_state(d, at), next_change(d, at)) == ("stopped", "starts in 40s")
    at = T0 + timedelta(minutes=7)
    assert (running_state(d, at), next_change(d, at)) == ("ended", "ended 2m 35s ago")
    inactive = peak(active=False)
    assert (running_state(inactive, T0 + 6 * S), next_change(inactive, T0)) == ("inactive", "-")
    forever = peak(duration=None, recurrence=None)
    at = T0 + timedelta(days=3)
    assert (running_state(forever, at), next_change(forever, at)) == ("RUNNING", "until changed")


def test_dispatch_row() -> None:
    assert dispatch_row(peak(dry_run=True), T0) == (
        "1",
        "BATTERY_PEAK_SHAVING",
        "stopped",
        "starts in 5s",
        "20s",
        "every 1 min, 5x",
        "BATTERY",
        "yes",
    )


def table_dispatches() -> list[Dispatch]:
    return [
        Dispatch(
            id=7,
            type="EV_CHARGING",
            start_time=T0 + 35 * S,
            duration=20 * S,
            target=TargetIds.of(10, 11),
        ),
        peak(),
    ]


def test_render_table_plain() -> None:
    assert render_table(table_dispatches(), T0 + 6 * S) == [
        "ID  TYPE                  STATE    NEXT           DURATION  RECURRENCE       TARGET     DRY-RUN",
        "1   BATTERY_PEAK_SHAVING  RUNNING  ends in 19s    20s       every 1 min, 5x  BATTERY",
        "7   EV_CHARGING           stopped  starts in 29s  20s       once             ids 10,11",
    ]


def test_render_table_colours_running_green() -> None:
    lines = render_table(table_dispatches(), T0 + 6 * S, ansi=True)
    assert lines[0].startswith("\x1b[1mID  TYPE")
    assert lines[1] == (
        f"1   BATTERY_PEAK_SHAVING  {GREEN}RUNNING{RESET}  ends in 19s    20s       "
        "every 1 min, 5x  BATTERY"
    )
    assert "\x1b[" not in lines[2]


def test_render_table_of_nothing() -> None:
    assert render_table([], T0) == ["ID  TYPE  STATE  NEXT  DURATION  RECURRENCE  TARGET  DRY-RUN"]


# -- the event log --------------------------------------------------------------------------


def status(d: Dispatch, at: datetime) -> RunningStatus:
    run = d.run_at(at)
    return RunningStatus(
        dispatch=d,
        started=run is not None,
        decided_at=at,
        until=None if run is None else run.end,
        next_run=d.next_run_after(at + timedelta(microseconds=1)),
    )


def test_describe_running_statuses() -> None:
    d = peak()
    start = status(d, T0 + 5 * S)
    assert describe(start, T0 + 9 * S) == LogEntry(
        at=T0 + 5 * S, label="RUNNING", text="#1 BATTERY_PEAK_SHAVING  until 12:00:25", rank=1
    )
    retuned = status(peak(payload={"limit_kw": 40}, dry_run=True), T0 + 10 * S)
    assert describe(retuned, T0 + 10 * S, previous=start).text == (
        "#1 BATTERY_PEAK_SHAVING  until 12:00:25, dry-run, reconfigured"
    )
    stop = status(d, T0 + 25 * S)
    assert describe(stop, T0 + 25 * S, previous=start).text == (
        "#1 BATTERY_PEAK_SHAVING  next 12:01:05"
    )
    last = status(d, T0 + timedelta(minutes=4, seconds=25))
    assert describe(last, T0).text == "#1 BATTERY_PEAK_SHAVING  no further runs"
    unbounded = status(peak(duration=None, recurrence=None), T0 + 5 * S)
    assert describe(unbounded, T0).text == "#1 BATTERY_PEAK_SHAVING  until changed"
    tomorrow = status(peak(start_time=T0 + 5 * S, recurrence=None), T0)
    assert describe(tomorrow, T0 - timedelta(days=1)).text == (
        "#1 BATTERY_PEAK_SHAVING  next 12:00:05"
    )


def test_describe_lifecycle_events() -> None:
    d = peak()
    now = T0 + 2 * S
    assert describe(Created(d), now) == LogEntry(
        at=now,
        label="Created",
        text="#1 BATTERY_PEAK_SHAVING  start 12:00:05, 20s, every 1 min, 5x, BATTERY",
    )
    bare = Dispatch(id=2, type="X", start_time=T0 + timedelta(days=1), dry_run=True, active=False)
    assert describe(Created(bare), now).text == (
        "#2 X  start 2030-01-02 12:00:00, until changed, once, dry-run, inactive"
    )
    changed = peak(active=False, payload={"limit_kw": 40.0}, target=TargetIds.of(4))
    assert describe(Updated(changed, d), now).text == (
        '#1 BATTERY_PEAK_SHAVING  deactivated, target ids 4, payload {"limit_kw": 40}'
    )
    moved = peak(
        type="PEAK",
        start_time=T0 + 9 * S,
        duration=None,
        recurrence=None,
        dry_run=True,
    )
    assert describe(Updated(moved, d), now).text == (
        "#1 PEAK  type BATTERY_PEAK_SHAVING -> PEAK, start 2030-01-01 12:00:09, "
        "duration until changed, recurrence once, dry-run on"
    )
    touched = peak(update_time=T0)
    assert describe(Updated(touched, d), now).text == ("#1 BATTERY_PEAK_SHAVING  no visible change")
    assert describe(Deleted(d), now) == LogEntry(
        at=now, label="Deleted", text="#1 BATTERY_PEAK_SHAVING"
    )


def test_format_log_entry() -> None:
    entry = LogEntry(at=T0 + 5 * S, label="RUNNING", text="#1 A  until 12:00:25", rank=1)
    assert format_log_entry(entry) == "2030-01-01 12:00:05  RUNNING  #1 A  until 12:00:25"
    assert format_log_entry(entry, date=False) == "12:00:05  RUNNING  #1 A  until 12:00:25"
    assert format_log_entry(entry, date=False, ansi=True) == (
        f"12:00:05  {GREEN}RUNNING{RESET}  #1 A  until 12:00:25"
    )
    other = LogEntry(at=T0, label="LINK", text="reconnecting")
    assert format_log_entry(other, ansi=True) == "2030-01-01 12:00:00  LINK     reconnecting"


def test_clip_keeps_escape_sequences_whole() -> None:
    assert clip("abcdef", 10) == "abcdef"
    assert clip("abcdef", 3) == "abc"
    line = f"ab {GREEN}RUNNING{RESET} tail"
    assert clip(line, 5) == f"ab {GREEN}RU{RESET}{RESET}"
    assert clip(line, 2) == f"ab{GREEN}{RESET}{RESET}"


def test_render_frame() -> None:
    frame = render_frame(banner=["B"], status="S", table=["T1", "T2"], log=[], max_log=3)
    assert frame == [
        "B",
        "S",
        "",
        "T1",
        "T2",
        "",
        "Latest events (newest last, up to 3):",
        "  (none yet)",
        "",
        "Ctrl-C to quit.",
    ]
    assert render_frame(banner=[], status="S", table=[], log=["L"], max_log=1)[4] == "L"


async def test_watch_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="refresh must be > 0 seconds, got 0"):
        await watch(None, out=io.StringIO(), clock=WallClock(), refresh=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_log must be an int >= 1, got 0"):
        await watch(None, out=io.StringIO(), clock=WallClock(), max_log=0)  # type: ignore[arg-type]


# -- the demo, end to end on virtual time ----------------------------------------------------

EXPECTED_START = [
    "watching microgrid 1 at 2030-01-01 00:00:00 UTC: 6 dispatches",
    "ID  TYPE                  STATE     NEXT           DURATION  RECURRENCE       TARGET          DRY-RUN",
    "1   BATTERY_PEAK_SHAVING  stopped   starts in 5s   20s       every 1 min      BATTERY",
    "2   SOLAR_CURTAILMENT     stopped   starts in 15s  45s       once             INVERTER:PV",
    "3   FREQUENCY_RESPONSE    stopped   starts in 30s  20s       every 2 min      BATTERY:LI_ION  yes",
    "4   EV_CHARGING           stopped   starts in 35s  20s       every 1 min      ids 10,11",
    "5   DEMAND_RESPONSE       stopped   starts in 40s  10s       every 1 min, 3x  ids 20",
    "6   GRID_MAINTENANCE      inactive  -              10m       once             ids 1",
    "",
    "2030-01-01 00:00:05  RUNNING  #1 BATTERY_PEAK_SHAVING  until 00:00:25",
    "2030-01-01 00:00:15  RUNNING  #2 SOLAR_CURTAILMENT  until 00:01:00",
    '2030-01-01 00:00:22  Updated  #1 BATTERY_PEAK_SHAVING  payload {"limit_kw": 40}',
    "2030-01-01 00:00:22  RUNNING  #1 BATTERY_PEAK_SHAVING  until 00:00:25, reconfigured",
    "2030-01-01 00:00:25  STOPPED  #1 BATTERY_PEAK_SHAVING  next 00:01:05",
    "2030-01-01 00:00:30  RUNNING  #3 FREQUENCY_RESPONSE  until 00:00:50, dry-run",
    "2030-01-01 00:00:35  RUNNING  #4 EV_CHARGING  until 00:00:55",
    "2030-01-01 00:00:40  RUNNING  #5 DEMAND_RESPONSE  until 00:00:50",
    "2030-01-01 00:00:42  Updated  #4 EV_CHARGING  deactivated",
    "2030-01-01 00:00:42  STOPPED  #4 EV_CHARGING  no further runs",
    "2030-01-01 00:00:50  STOPPED  #3 FREQUENCY_RESPONSE  next 00:02:30, dry-run",
    "2030-01-01 00:00:50  STOPPED  #5 DEMAND_RESPONSE  next 00:01:40",
    "2030-01-01 00:01:00  STOPPED  #2 SOLAR_CURTAILMENT  no further runs",
    "2030-01-01 00:01:02  Created  #7 HEAT_PUMP_BOOST  start 00:01:07, 30s, once, ids 30",
    "2030-01-01 00:01:05  RUNNING  #1 BATTERY_PEAK_SHAVING  until 00:01:25",
    "2030-01-01 00:01:07  RUNNING  #7 HEAT_PUMP_BOOST  until 00:01:37",
    "2030-01-01 00:01:22  Deleted  #7 HEAT_PUMP_BOOST",
    "2030-01-01 00:01:22  STOPPED  #7 HEAT_PUMP_BOOST  no further runs",
]


async def test_demo_plain_output(autojump_clock: trio.testing.MockClock) -> None:
    out = io.StringIO()
    clock = WallClock()
    started = time.perf_counter()
    with trio.fail_after(181):
        await run_demo(out=out, ansi=False, duration=180, clock=clock)
    assert clock() == datetime(2030, 1, 1, 0, 3, tzinfo=UTC)  # it stopped when asked
    assert time.perf_counter() - started < 5.0
    lines = out.getvalue().splitlines()
    url = re.fullmatch(
        r"trio-dispatch demo: embedded server at (grpc://127\.0\.0\.1:\d+\?ssl=false) "
        r'\(API key "demo", microgrid 1\)',
        lines[0],
    )
    assert url is not None
    assert lines[1] == (
        "Inspect it from another terminal: "
        f"trio-dispatch list --url '{url.group(1)}' --key demo -m 1"
    )
    assert lines[2 : 2 + len(EXPECTED_START)] == EXPECTED_START
    events = lines[2 + len(EXPECTED_START) :]
    # The rest follows the same pattern: the operator's changes every 20 s, runs to the end.
    assert events[-1] == "2030-01-01 00:02:55  STOPPED  #4 EV_CHARGING  next 00:03:35"
    assert "2030-01-01 00:02:02  Updated  #4 EV_CHARGING  activated" in events
    assert "2030-01-01 00:02:50  STOPPED  #5 DEMAND_RESPONSE  no further runs" in events
    assert all(line.startswith("2030-01-01 00:0") for line in events)


async def test_demo_ansi_redraws_in_place(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("LINES", "50")
    out = io.StringIO()
    with trio.fail_after(30):
        await run_demo(out=out, ansi=True, duration=12, clock=WallClock())
    text = out.getvalue()
    assert text.startswith("\x1b[?25l\x1b[2J\x1b[H")  # hide the cursor, clear, home
    assert text.endswith("\x1b[J\x1b[?25h\n")  # and give the cursor back
    frames = text.split("\x1b[H")[1:]
    # One frame a second, on the second (the event at 00:00:05 lands on one too).
    clocks = [re.search(r"00:00:(\d\d) UTC", frame) for frame in frames]
    assert [int(m.group(1)) for m in clocks if m] == list(range(12))
    countdowns = [re.search(r"SOLAR_CURTAILMENT +stopped +starts in (\d+)s", f) for f in frames]
    assert [int(m.group(1)) for m in countdowns if m] == list(range(15, 3, -1))
    last = frames[-1].replace("\x1b[K", "").replace("\x1b[J\x1b[?25h", "").splitlines()
    assert last[2:6] == [
        "\x1b[1mmicrogrid 1  |  connected  |  2030-01-01 00:00:11 UTC  |  6 dispatches\x1b[0m",
        "",
        "\x1b[1mID  TYPE                  STATE     NEXT           DURATION  RECURRENCE       "
        "TARGET          DRY-RUN\x1b[0m",
        f"1   BATTERY_PEAK_SHAVING  {GREEN}RUNNING {RESET}  ends in 14s    20s       "
        "every 1 min      BATTERY",
    ]
    assert last[-5:] == [
        "Latest events (newest last, up to 15):",
        f"00:00:05  {GREEN}RUNNING{RESET}  #1 BATTERY_PEAK_SHAVING  until 00:00:25",
        "",
        "Ctrl-C to quit.",
        "",
    ]


async def test_ansi_frame_fits_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("LINES", "12")
    dispatcher = SimpleNamespace(
        microgrid_id=1,
        connection=SimpleNamespace(value=ConnectionState.CONNECTED),
        dispatches={d.id: d for d in table_dispatches()},
    )
    out = io.StringIO()
    view = _View(
        dispatcher,  # type: ignore[arg-type]
        out=out,
        clock=lambda: T0,
        ansi=True,
        max_log=15,
        banner=(),
    )
    view.log.extend(LogEntry(at=T0, label="Created", text=f"#{i}") for i in range(10))
    view.paint()
    lines = out.getvalue().removeprefix("\x1b[H").removesuffix("\x1b[J").split("\x1b[K\n")
    assert lines[-1] == ""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in lines[:-1]]
    assert len(lines) == 11  # the last row stays free, so nothing scrolls
    assert max(len(line) for line in lines) == 40
    assert lines[-5:] == [
        "Latest events (newest last, up to 15):",
        "12:00:00  Created  #8",
        "12:00:00  Created  #9",
        "",
        "Ctrl-C to quit.",
    ]


# -- the entry points ----------------------------------------------------------------------


def test_want_ansi() -> None:
    assert _want_ansi(io.StringIO(), None) is False
    assert _want_ansi(io.StringIO(), True) is True
    closed = io.StringIO()
    closed.close()
    assert _want_ansi(closed, None) is False


def test_main_watch_reports_a_bad_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_watch("http://nowhere", "k", 1, None, False) == 1
    err = capsys.readouterr().err
    assert err.startswith("trio-dispatch: error: ")
    assert "Traceback" not in err


async def test_demo_process_stops_cleanly_on_ctrl_c() -> None:
    code = "from trio_dispatch._demo import main_demo; raise SystemExit(main_demo(duration=None, ansi=False))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    output = b""
    errors = b""
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            functools.partial(
                trio.run_process,
                [sys.executable, "-c", code],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=ROOT,
                env=env,
                check=False,
            )
        )
        assert process.stdout is not None
        assert process.stderr is not None

        async def drain_stderr(stream: trio.abc.ReceiveStream) -> None:
            nonlocal errors
            async for chunk in stream:
                errors += chunk

        nursery.start_soon(drain_stderr, process.stderr)
        # The demo's first start is at most 5 s after it created its dispatches.
        with trio.fail_after(12):
            while b"  RUNNING  #1 BATTERY_PEAK_SHAVING" not in output:
                chunk = await process.stdout.receive_some()
                assert chunk, f"the demo ended early: {output!r} {errors!r}"
                output += chunk
        process.send_signal(signal.SIGINT)
        with trio.fail_after(5):
            async for chunk in process.stdout:
                output += chunk
            returncode = await process.wait()
    assert returncode == 0, errors.decode()
    assert b"Traceback" not in errors, errors.decode()
    assert output.startswith(b"trio-dispatch demo: embedded server at grpc://127.0.0.1:")
