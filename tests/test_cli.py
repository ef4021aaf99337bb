"""The ``trio-dispatch`` command: input parsing, output, argument errors, and real runs.

The end-to-end tests start ``trio-dispatch serve`` as a subprocess on a free port and
drive it with the client commands, in-process through click's `CliRunner` (each command
makes its own `trio.run`, so these tests are sync) and as ``python -m trio_dispatch``.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import click
import pytest
from click.testing import CliRunner, Result

from trio_dispatch import (
    BatteryType,
    ComponentCategory,
    Dispatch,
    EndCriteria,
    EvChargerType,
    Frequency,
    InverterType,
    RecurrenceRule,
    TargetCategories,
    TargetCategory,
    TargetIds,
    Weekday,
)
from trio_dispatch._cli import cli
from trio_dispatch._cli_input import (
    default_database_path,
    parse_duration,
    parse_ids,
    parse_int_list,
    parse_months,
    parse_payload,
    parse_target,
    parse_time,
    parse_weekdays,
)
from trio_dispatch._cli_output import (
    describe_recurrence,
    dispatch_to_json,
    format_duration,
    format_record,
    format_table,
    format_target,
)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
TIMEOUT = 10.0  # seconds any subprocess step may take before the test fails
ISO_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


# -- parsing --------------------------------------------------------------------------


def raises_exactly(message: str) -> pytest.RaisesExc[ValueError]:
    """Expect a `ValueError` with exactly this message."""
    return pytest.raises(ValueError, match=f"^{re.escape(message)}$")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        (" NOW ", NOW),
        ("in 10m", NOW + timedelta(minutes=10)),
        ("in 1h30m", NOW + timedelta(hours=1, minutes=30)),
        ("IN 2d", NOW + timedelta(days=2)),
        ("in 1h 30m", NOW + timedelta(hours=1, minutes=30)),
        ("2h ago", NOW - timedelta(hours=2)),
        ("2030-06-01T08:00", datetime(2030, 6, 1, 8, tzinfo=UTC)),  # naive is UTC
        ("2030-06-01T08:00Z", datetime(2030, 6, 1, 8, tzinfo=UTC)),
        ("2030-06-01T10:00+02:00", datetime(2030, 6, 1, 8, tzinfo=UTC)),
        ("2030-06-01", datetime(2030, 6, 1, tzinfo=UTC)),
        ("2030-06-01 08:00:30.5", datetime(2030, 6, 1, 8, 0, 30, 500000, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    parsed = parse_time(text, now=NOW)
    assert parsed == expected
    assert parsed.tzinfo is UTC


def test_parse_time_relative_to_an_offset_now_is_utc() -> None:
    now = datetime.fromisoformat("2030-01-01T14:00+02:00")
    assert parse_time("in 1h", now=now) == datetime(2030, 1, 1, 13, tzinfo=UTC)
    assert parse_time("in 1h", now=now).tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "tomorrow",
            "'tomorrow' is not a time: use 'now', 'in 1h30m', '2h ago' or ISO 8601 like "
            "2030-01-01T08:00 (UTC unless it has an offset)",
        ),
        (
            "in 10",
            "'in 10' is not a time: '10' is not a duration; use a number with a unit, "
            "like 90s, 15m, 1h30m or 2d",
        ),
        (
            "in none",
            "'in none' is not a time: 'none' is not a duration; use a number with a unit, "
            "like 90s, 15m, 1h30m or 2d",
        ),
        (
            "",
            "'' is not a time: use 'now', 'in 1h30m', '2h ago' or ISO 8601 like "
            "2030-01-01T08:00 (UTC unless it has an offset)",
        ),
        ("in 99999999999d", "'in 99999999999d' is too far from now"),
    ],
)
def test_parse_time_errors(text: str, message: str) -> None:
    with raises_exactly(message):
        parse_time(text, now=NOW)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("1w2d", timedelta(days=9)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("1H 30M", timedelta(hours=1, minutes=30)),
        ("0s", timedelta(0)),
        ("none", None),
        ("None", None),
    ],
)
def test_parse_duration(text: str, expected: timedelta | None) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "10", "1.5h", "30m1h", "1h1h", "h", "-5m", "5 minutes"])
def test_parse_duration_errors(text: str) -> None:
    with raises_exactly(
        f"{text!r} is not a duration: use a number with a unit, like 90s, 15m, 1h30m or 2d, "
        "or 'none'"
    ):
        parse_duration(text)


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (None, "none"),
        (timedelta(0), "0s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(days=14, seconds=5), "14d5s"),
    ],
)
def test_format_duration_round_trips(duration: timedelta | None, text: str) -> None:
    assert format_duration(duration) == text
    assert parse_duration(text) == duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,2,3", TargetIds.of(1, 2, 3)),
        ("7", TargetIds.of(7)),
        (" 1 , 2 ", TargetIds.of(1, 2)),
        ("none", TargetIds.of()),
        ("battery", TargetCategories.of(ComponentCategory.BATTERY)),
        (
            "battery:li_ion",
            TargetCategories.of(
                TargetCategory(category=ComponentCategory.BATTERY, type=BatteryType.LI_ION)
            ),
        ),
        (
            "Inverter:PV,meter",
            TargetCategories.of(
                TargetCategory(category=ComponentCategory.INVERTER, type=InverterType.PV),
                ComponentCategory.METER,
            ),
        ),
        (
            "ev-charger:dc,EV_CHARGER",
            TargetCategories.of(
                TargetCategory(category=ComponentCategory.EV_CHARGER, type=EvChargerType.DC),
                ComponentCategory.EV_CHARGER,
            ),
        ),
    ],
)
def test_parse_target(text: str, expected: Any) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "1,battery",
            "'1,battery' mixes component ids and categories; a target is one or the other",
        ),
        ("1,,2", "'1,,2' has an empty item; separate items with single commas"),
        (
            "batery",
            "'batery' is not a component category; use one of grid_connection_point, meter, "
            "inverter, converter, battery, ev_charger, breaker, precharger, chp, electrolyzer, "
            "power_transformer, hvac, plc, crypto_miner, static_transfer_switch, "
            "uninterruptible_power_supply, capacitor_bank, wind_turbine, steam_boiler",
        ),
        (
            "unspecified",
            "'unspecified' is not a component category; use one of grid_connection_point, meter, inverter, converter, battery, ev_charger, breaker, precharger, chp, electrolyzer, power_transformer, hvac, plc, crypto_miner, static_transfer_switch, uninterruptible_power_supply, capacitor_bank, wind_turbine, steam_boiler",
        ),
        ("meter:smart", "category 'meter' has no subtypes"),
        ("battery:lion", "'lion' is not a battery type; use one of li_ion, na_ion"),
        ("inverter:", "'' is not a inverter type; use one of battery, pv, hybrid"),
        ("18446744073709551616", "'18446744073709551616': component ids are at most 2**64-1"),
    ],
)
def test_parse_target_errors(text: str, message: str) -> None:
    with raises_exactly(message):
        parse_target(text)


def test_format_target_is_what_parse_target_reads() -> None:
    for text in ["1,2,3", "none", "battery:li_ion,inverter:pv,meter", "ev_charger"]:
        assert format_target(parse_target(text)) == text
    assert format_target(parse_target("meter,BATTERY")) == "battery,meter"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mon", (Weekday.MONDAY,)),
        ("Monday,FRI", (Weekday.MONDAY, Weekday.FRIDAY)),
        ("fri,mon,fri", (Weekday.MONDAY, Weekday.FRIDAY)),
        ("mon-wed", (Weekday.MONDAY, Weekday.TUESDAY, Weekday.WEDNESDAY)),
        ("sat-mon", (Weekday.MONDAY, Weekday.SATURDAY, Weekday.SUNDAY)),  # wraps
        ("none", ()),
    ],
)
def test_parse_weekdays(text: str, expected: tuple[Weekday, ...]) -> None:
    assert parse_weekdays(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("funday", "'funday' is not a weekday; use mon, tue, ... sun"),
        ("mon-", "'' is not a weekday; use mon, tue, ... sun"),
        ("mon,", "'mon,' has an empty item; separate items with single commas"),
    ],
)
def test_parse_weekdays_errors(text: str, message: str) -> None:
    with raises_exactly(message):
        parse_weekdays(text)


def test_parse_int_list() -> None:
    hours = range(24)
    assert parse_int_list("8,20", allowed=hours, what="0..23") == (8, 20)
    assert parse_int_list("20,8,8", allowed=hours, what="0..23") == (8, 20)
    assert parse_int_list("9-11,0", allowed=hours, what="0..23") == (0, 9, 10, 11)
    assert parse_int_list("none", allowed=hours, what="0..23") == ()
    monthdays = frozenset([*range(-31, 0), *range(1, 32)])
    assert parse_int_list("1,-1", allowed=monthdays, what="m") == (-1, 1)
    assert parse_int_list("-3--1", allowed=monthdays, what="m") == (-3, -2, -1)
    assert parse_int_list("-1-1", allowed=monthdays, what="m") == (-1, 1)  # 0 is skipped
    assert parse_months("jan,Jul,12") == (1, 7, 12)
    assert parse_months("jun-aug") == (6, 7, 8)
    assert parse_months("september") == (9,)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("24", "24 is not in 0..23"),
        ("x", "'x' is not a number in 0..23"),
        ("5-3", "range '5-3' ends before it starts"),
        ("1.5", "'1.5' is not a number or range in 0..23"),
        ("1,,2", "'1,,2' has an empty item; separate items with single commas"),
    ],
)
def test_parse_int_list_errors(text: str, message: str) -> None:
    with raises_exactly(message):
        parse_int_list(text, allowed=range(24), what="0..23")


def test_parse_months_error() -> None:
    with pytest.raises(ValueError, match=r"^13 is not in 1\.\.12 or jan\.\.dec$"):
        parse_months("13")


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["3"], (3,)),
        (["3-7"], (3, 4, 5, 6, 7)),
        (["1,4", "2-3"], (1, 4, 2, 3)),
        (["7", "1-3", "2", "7"], (7, 1, 2, 3)),
        (["5 - 6"], (5, 6)),
        (["0"], (0,)),
    ],
)
def test_parse_ids(texts: list[str], expected: tuple[int, ...]) -> None:
    assert parse_ids(texts) == expected


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["7-3"], "range '7-3' ends before it starts"),
        (["abc"], "'abc' is not a dispatch id or a range like 3-7"),
        (["-1"], "'-1' is not a dispatch id or a range like 3-7"),
        (["1-100000"], "too many ids: at most 10000 at once"),
        (["18446744073709551616"], "'18446744073709551616': dispatch ids are at most 2**64-1"),
        (["1,"], "'1,' has an empty item; separate items with single commas"),
    ],
)
def test_parse_ids_errors(texts: list[str], message: str) -> None:
    with raises_exactly(message):
        parse_ids(texts)


def test_parse_payload() -> None:
    assert parse_payload('{"a": 1, "b": [true, null, "x"]}') == {"a": 1, "b": [True, None, "x"]}
    assert parse_payload("{}") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "{",
            "not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        ("[1]", """must be a JSON object like '{"power": 1000}', got list"""),
        (
            '{"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}',
            "payload.a.b.c.d.e nests deeper than 5 levels",
        ),
        ('{"a": 1e400}', "payload.a is inf; payload numbers must be finite"),
    ],
)
def test_parse_payload_errors(text: str, message: str) -> None:
    with raises_exactly(message):
        parse_payload(text)


def test_default_database_path() -> None:
    home = Path("/home/ada")
    expected = Path("/data/trio-dispatch/dispatches.sqlite3")
    assert default_database_path({"XDG_DATA_HOME": "/data"}, home) == expected
    fallback = home / ".local/share/trio-dispatch/dispatches.sqlite3"
    assert default_database_path({}, home) == fallback
    assert default_database_path({"XDG_DATA_HOME": ""}, home) == fallback
    assert default_database_path({"XDG_DATA_HOME": "relative"}, home) == fallback


# -- output ---------------------------------------------------------------------------

SAMPLE = Dispatch(
    id=42,
    type="DEMO",
    start_time=datetime(2030, 1, 1, 8, tzinfo=UTC),
    duration=timedelta(minutes=15),
    target=TargetCategories.of(
        TargetCategory(category=ComponentCategory.INVERTER, type=InverterType.PV),
        ComponentCategory.BATTERY,
    ),
    dry_run=True,
    payload={"power": 1000.0, "ratio": 0.5, "nested": [2.0]},
    recurrence=RecurrenceRule(
        frequency=Frequency.DAILY,
        byhours=(8, 20),
        byweekdays=(Weekday.MONDAY, Weekday.TUESDAY, Weekday.WEDNESDAY, Weekday.FRIDAY),
        end_criteria=EndCriteria(count=10),
    ),
    create_time=datetime(2029, 12, 1, 9, 30, 0, 123456, tzinfo=UTC),
    update_time=datetime(2029, 12, 1, 9, 30, 0, 123456, tzinfo=UTC),
    end_time=datetime(2030, 1, 7, 20, 15, tzinfo=UTC),
)


def test_dispatch_to_json() -> None:
    assert dispatch_to_json(SAMPLE) == {
        "id": 42,
        "type": "DEMO",
        "start_time": "2030-01-01T08:00:00Z",
        "duration": 900,
        "target": {
            "categories": [
                {"category": "BATTERY", "type": None},
                {"category": "INVERTER", "type": "PV"},
            ]
        },
        "active": True,
        "dry_run": True,
        "payload": {"power": 1000, "ratio": 0.5, "nested": [2]},
        "recurrence": {
            "frequency": "DAILY",
            "interval": 1,
            "end_criteria": {"count": 10, "until": None},
            "byminutes": [],
            "byhours": [8, 20],
            "byweekdays": ["MONDAY", "TUESDAY", "WEDNESDAY", "FRIDAY"],
            "bymonthdays": [],
            "bymonths": [],
        },
        "create_time": "2029-12-01T09:30:00.123456Z",
        "update_time": "2029-12-01T09:30:00.123456Z",
        "end_time": "2030-01-07T20:15:00Z",
    }
    minimal = Dispatch(id=1, type="X", start_time=datetime(2030, 1, 1, tzinfo=UTC))
    assert dispatch_to_json(minimal)["target"] == {"ids": []}
    assert dispatch_to_json(minimal)["duration"] is None
    assert dispatch_to_json(minimal)["recurrence"] is None


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        (None, "once"),
        (RecurrenceRule(), "once"),
        (RecurrenceRule(frequency=Frequency.MINUTELY), "every minute"),
        (RecurrenceRule(frequency=Frequency.HOURLY, interval=3), "every 3 hours"),
        (
            RecurrenceRule(
                frequency=Frequency.MONTHLY,
                bymonths=(1, 6, 7, 8),
                bymonthdays=(-1, 1),
                end_criteria=EndCriteria(count=1),
            ),
            "monthly, months jan,jun-aug, monthdays -1,1, 1 time",
        ),
        (
            RecurrenceRule(
                frequency=Frequency.WEEKLY,
                interval=2,
                byweekdays=tuple(Weekday(d) for d in range(1, 6)),
                byhours=(9, 10, 11, 17),
                byminutes=(0, 30),
                end_criteria=EndCriteria(until=datetime(2031, 1, 1, tzinfo=UTC)),
            ),
            "every 2 weeks, on mon-fri, hours 9-11,17, minutes 0,30, until 2031-01-01T00:00:00Z",
        ),
    ],
)
def test_describe_recurrence(rule: RecurrenceRule | None, text: str) -> None:
    assert describe_recurrence(rule) == text


def test_format_table_and_record() -> None:
    other = Dispatch(id=7, type="LONGER_TYPE", start_time=datetime(2030, 2, 1, tzinfo=UTC))
    assert format_table([SAMPLE, other]).splitlines() == [
        "ID  TYPE         START                 DURATION  TARGET               ACTIVE  DRY-RUN"
        "  RECURRENCE                                   END",
        "42  DEMO         2030-01-01T08:00:00Z  15m       battery,inverter:pv  yes     yes    "
        "  daily, on mon-wed,fri, hours 8,20, 10 times  2030-01-07T20:15:00Z",
        "7   LONGER_TYPE  2030-02-01T00:00:00Z  none      none                 yes     no     "
        "  once                                         never",
    ]
    assert format_record(SAMPLE).splitlines() == [
        "id          42",
        "type        DEMO",
        "start       2030-01-01T08:00:00Z",
        "duration    15m",
        "target      battery,inverter:pv",
        "active      yes",
        "dry-run     yes",
        "recurrence  daily, on mon-wed,fri, hours 8,20, 10 times",
        "end         2030-01-07T20:15:00Z",
        'payload     {"power": 1000, "ratio": 0.5, "nested": [2]}',
        "created     2029-12-01T09:30:00Z",
        "updated     2029-12-01T09:30:00Z",
    ]


# -- argument errors (CliRunner, nothing listens) ----------------------------------------

CLEAN_ENV: dict[str, str | None] = {
    "DISPATCH_API_URL": None,
    "DISPATCH_API_KEY": None,
    "DISPATCH_API_SIGN_SECRET": None,
}


def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
    runner = CliRunner()
    return runner.invoke(
        cli, list(args), env={**CLEAN_ENV, **(env or {})}, prog_name="trio-dispatch"
    )


def usage_error(result: Result) -> str:
    """The 'Error: ...' line of a click usage error (exit 2)."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert result.stdout == ""
    return result.stderr.strip().splitlines()[-1]


def test_help_lists_the_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for name in ["serve", "list", "get", "create", "update", "delete", "stream"]:
        assert f"\n  {name} " in result.stdout


def test_group_can_be_extended() -> None:
    assert isinstance(cli, click.Group)
    assert {"serve", "list", "get", "create", "update", "delete", "stream"} <= set(cli.commands)


CLIENT = ("-m", "1", "--key", "k")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("serve",),
            "Error: give at least one --key or a --keys-file with keys: without keys the server refuses every call",
        ),
        (("serve", "--key", ""), "Error: Invalid value for '--key': must not be empty"),
        (
            ("serve", "--port", "70000", "--key", "k"),
            "Error: Invalid value for '--port': 70000 is not in the range 0<=x<=65535.",
        ),
        (("get", "1", "--key", "k"), "Error: Missing option '-m' / '--microgrid'."),
        (("get", "1", "-m", "1"), "Error: Missing option '--key' (env var: 'DISPATCH_API_KEY')."),
        (
            ("get", "1", "-m", "x", "--key", "k"),
            "Error: Invalid value for '-m' / '--microgrid': 'x' is not an id (a whole number >= 0)",
        ),
        (
            ("get", "1", *CLIENT, "--key", ""),
            "Error: Invalid value for '--key' (env var: 'DISPATCH_API_KEY'): must not be empty",
        ),
        (
            ("get", "1", *CLIENT, "--url", "http://x"),
            "Error: Invalid value for '--url' (env var: 'DISPATCH_API_URL'): server_url scheme must be 'grpc', got 'http' in 'http://x'",
        ),
        (("create", *CLIENT, "--duration", "1m"), "Error: Missing option '-t' / '--type'."),
        (("create", *CLIENT, "-t", "X"), "Error: Missing option '--duration'."),
        (
            ("create", *CLIENT, "-t", "X", "--duration", "1x"),
            "Error: Invalid value for '--duration': '1x' is not a duration: use a number with a unit, like 90s, 15m, 1h30m or 2d, or 'none'",
        ),
        (
            ("create", *CLIENT, "-t", "X", "--duration", "1m", "--start", "soon"),
            "Error: Invalid value for '--start': 'soon' is not a time: use 'now', 'in 1h30m', '2h ago' or ISO 8601 like 2030-01-01T08:00 (UTC unless it has an offset)",
        ),
        (
            ("create", *CLIENT, "-t", "X", "--duration", "1m", "--target", "battery:pv"),
            "Error: Invalid value for '--target': 'pv' is not a battery type; use one of li_ion, na_ion",
        ),
        (
            ("create", *CLIENT, "-t", "X", "--duration", "1m", "--payload", "[]"),
            """Error: Invalid value for '--payload': must be a JSON object like '{"power": 1000}', got list""",
        ),
        (
            ("create", *CLIENT, "-t", "X", "--duration", "1m", "--interval", "2", "--by-hour", "8"),
            "Error: --interval, --by-hour needs --frequency",
        ),
        (
            (
                "create",
                *CLIENT,
                "-t",
                "X",
                "--duration",
                "1m",
                "--frequency",
                "daily",
                "--count",
                "3",
                "--until",
                "in 3d",
            ),
            "Error: --count and --until cannot be used together",
        ),
        (
            ("create", *CLIENT, "-t", "X", "--duration", "1m", "--frequency", "fortnightly"),
            "Error: Invalid value for '--frequency': 'fortnightly' is not one of 'minutely', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'.",
        ),
        (
            (
                "create",
                *CLIENT,
                "-t",
                "X",
                "--duration",
                "1m",
                "--frequency",
                "daily",
                "--by-minute",
                "60",
            ),
            "Error: Invalid value for '--by-minute': 60 is not in 0..59",
        ),
        (
            (
                "create",
                *CLIENT,
                "-t",
                "X",
                "--duration",
                "1m",
                "--frequency",
                "daily",
                "--by-monthday",
                "0",
            ),
            "Error: Invalid value for '--by-monthday': 0 is not in 1..31 or -31..-1",
        ),
        (
            (
                "create",
                *CLIENT,
                "-t",
                "X",
                "--duration",
                "1m",
                "--frequency",
                "daily",
                "--by-weekday",
                "mon,xyz",
            ),
            "Error: Invalid value for '--by-weekday': 'xyz' is not a weekday; use mon, tue, ... sun",
        ),
        (
            ("create", *CLIENT, "-t", "X", "--duration", "1m", "--start", "2020-01-01"),
            "Error: start_time must not be in the past, got 2020-01-01T00:00:00+00:00 (now is ",
        ),
        (("update", "1", *CLIENT), "Error: nothing to update: give at least one field to change"),
        (
            ("update", "1", *CLIENT, "--no-recurrence", "--frequency", "daily", "--no-end"),
            "Error: --no-recurrence cannot be used with --frequency, --no-end",
        ),
        (
            ("update", "1", *CLIENT, "--no-end", "--count", "3"),
            "Error: --no-end cannot be used with --count or --until",
        ),
        (
            ("update", "1", *CLIENT, "--start", "now"),
            "Error: Invalid value for '--start': an update cannot start a dispatch 'now': the time would be past when the server checks it; give a time ahead, like 'in 1m'",
        ),
        (
            ("update", "1", *CLIENT, "--dry-run"),
            "Error: Invalid value for '--dry-run': the dispatch API cannot change this after creation; delete the dispatch and create it again",
        ),
        (
            ("update", "1", *CLIENT, "-t", "Y"),
            "Error: Invalid value for '-t' / '--type': the dispatch API cannot change this after creation; delete the dispatch and create it again",
        ),
        (("delete", *CLIENT), "Error: Missing argument 'ID...'."),
        (
            ("delete", *CLIENT, "5-3"),
            "Error: Invalid value for 'ID...': range '5-3' ends before it starts",
        ),
        (
            ("list", *CLIENT, "--page-size", "0"),
            "Error: Invalid value for '--page-size': 0 is not in the range 1<=x<=1000.",
        ),
        (
            ("list", *CLIENT, "--update-from", "yesterday"),
            "Error: Invalid value for '--update-from': 'yesterday' is not a time: use 'now', 'in 1h30m', '2h ago' or ISO 8601 like 2030-01-01T08:00 (UTC unless it has an offset)",
        ),
        (
            ("list", *CLIENT, "--start-from", "in 1h", "--start-to", "now"),
            "Error: start_to must not be before start_from, got ",
        ),
    ],
)
def test_argument_errors(args: tuple[str, ...], line: str) -> None:
    assert usage_error(invoke(*args)).startswith(line)


def test_serve_argument_errors_with_files(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    assert usage_error(invoke("serve", "--key", "k", "--tls-cert", str(cert))) == (
        "Error: --tls-cert and --tls-key must be given together"
    )
    bad = tmp_path / "keys.toml"
    bad.write_text("[[keys]]\nkey = 'a'\nmicrogrids = [-1]\n")
    assert usage_error(invoke("serve", "--keys-file", str(bad))) == (
        f"Error: Invalid value for '--keys-file': {bad}: keys[0]: microgrids must be ids >= 0, got -1"
    )
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert "give at least one --key" in usage_error(invoke("serve", "--keys-file", str(empty)))
    missing = tmp_path / "missing.toml"
    assert usage_error(invoke("serve", "--keys-file", str(missing))) == (
        f"Error: Invalid value for '--keys-file': File '{missing}' does not exist."
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_unreachable_server_is_exit_2_with_one_line() -> None:
    url = f"grpc://127.0.0.1:{free_port()}?ssl=false"
    result = invoke("list", "-m", "1", "--key", "k", "--url", url)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(
        "error: connection to the dispatch server failed: ListMicrogridDispatches: "
        "ConnectionRefusedError: "
    )
    assert result.stderr.count("\n") == 1


def test_connection_options_come_from_the_environment() -> None:
    url = f"grpc://127.0.0.1:{free_port()}?ssl=false"
    result = invoke("get", "1", "-m", "1", env={"DISPATCH_API_URL": url, "DISPATCH_API_KEY": "k"})
    assert result.exit_code == 2
    assert result.stderr.startswith("error: connection to the dispatch server failed: ")


# -- end to end: `serve` as a subprocess ------------------------------------------------


class Lines:
    """The lines a subprocess writes to one pipe, read by a thread so waits can time out."""

    def __init__(self, pipe: IO[str]) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(pipe,), daemon=True)
        self._thread.start()

    def _pump(self, pipe: IO[str]) -> None:
        for line in pipe:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, predicate: Callable[[str], bool]) -> str:
        """The next line that satisfies `predicate`; fails after TIMEOUT or at EOF."""
        while True:
            line = self._queue.get(timeout=TIMEOUT)
            assert line is not None, f"EOF while waiting; got {self.seen}"
            self.seen.append(line)
            if predicate(line):
                return line

    def rest(self) -> str:
        """Everything, once the process has exited and the pipe is closed."""
        self._thread.join(TIMEOUT)
        while (line := self._queue.get_nowait()) is not None:
            self.seen.append(line)
        return "".join(self.seen)


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCH_API_")}
    return {**env, **extra}


def spawn(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "trio_dispatch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


class Server:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        assert process.stderr is not None
        self.stderr = Lines(process.stderr)
        line = self.stderr.wait_for(lambda line: "listening on" in line)
        self.url = line.rsplit(" ", 1)[-1].strip()

    def stop(self, signum: signal.Signals) -> tuple[int, str]:
        self.process.send_signal(signum)
        code = self.process.wait(TIMEOUT)
        return code, self.stderr.rest()


@contextmanager
def running_server(*args: str, env: dict[str, str]) -> Iterator[Server]:
    process = spawn("serve", "--port", "0", "--key", "k", *args, env=env)
    try:
        yield Server(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pipe in (process.stdout, process.stderr):
            assert pipe is not None
            pipe.close()


def run(*args: str, url: str) -> Result:
    return invoke(*args, "-m", "7", "--url", url, "--key", "k")


def run_json(*args: str, url: str) -> Any:
    result = run(*args, "--json", url=url)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return json.loads(result.stdout)


def create_both(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create dispatch 1 (recurring, categories) and 2 (one-off, ids); check the output."""
    first = run_json(
        "create",
        "-t",
        "DEMO",
        "--start",
        "2030-01-01T08:00",
        "--duration",
        "15m",
        "--target",
        "inverter:pv,battery:li_ion",
        "--payload",
        '{"power": 1000, "mode": "peak"}',
        "--frequency",
        "daily",
        "--by-hour",
        "8,20",
        "--count",
        "10",
        url=url,
    )
    created_at = first["create_time"]
    assert ISO_Z.fullmatch(created_at)
    assert first == {
        "id": 1,
        "type": "DEMO",
        "start_time": "2030-01-01T08:00:00Z",
        "duration": 900,
        "target": {
            "categories": [
                {"category": "BATTERY", "type": "LI_ION"},
                {"category": "INVERTER", "type": "PV"},
            ]
        },
        "active": True,
        "dry_run": False,
        "payload": {"power": 1000, "mode": "peak"},
        "recurrence": {
            "frequency": "DAILY",
            "interval": 1,
            "end_criteria": {"count": 10, "until": None},
            "byminutes": [],
            "byhours": [8, 20],
            "byweekdays": [],
            "bymonthdays": [],
            "bymonths": [],
        },
        "create_time": created_at,
        "update_time": created_at,
        "end_time": "2030-01-05T20:15:00Z",
    }

    before = datetime.now(UTC)
    second = run_json(
        "create",
        "-t",
        "other",
        "--start",
        "in 1h",
        "--duration",
        "none",
        "--target",
        "3,1,2",
        "--inactive",
        "--dry-run",
        url=url,
    )
    start = datetime.fromisoformat(second["start_time"])
    assert before + timedelta(hours=1) <= start <= datetime.now(UTC) + timedelta(hours=1)
    assert second == {
        **second,
        "id": 2,
        "type": "other",
        "duration": None,
        "target": {"ids": [1, 2, 3]},
        "active": False,
        "dry_run": True,
        "payload": {},
        "recurrence": None,
        "end_time": None,
    }
    return first, second


def check_list_and_get(url: str, first: dict[str, Any], second: dict[str, Any]) -> None:
    assert run_json("list", url=url) == [second, first]  # newest first
    assert run_json("list", "--sort", "start", "--order", "asc", url=url) == [second, first]
    assert run_json("list", "demo", url=url) == [first]
    assert run_json("list", "--query", "#2", url=url) == [second]
    assert run_json("list", "--target", "battery", url=url) == [first]
    assert run_json("list", "--target", "2,9", "--inactive", "--dry-run", url=url) == [second]
    assert run_json("list", "--recurring", url=url) == [first]
    assert run_json("list", "--one-off", "--active", url=url) == []
    assert run_json("list", "--id", "1-2", "--start-from", "2030-01-01", url=url) == [first]
    assert run_json("list", "--end-to", "2031-01-01", "--page-size", "1", url=url) == [first]
    assert run_json("list", "--update-from", "1h ago", "--update-to", "in 1h", url=url) == [
        second,
        first,
    ]
    assert run_json("get", "1", url=url) == first

    table = run("list", url=url)
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "ID", "TYPE", "START", "DURATION", "TARGET", "ACTIVE", "DRY-RUN", "RECURRENCE", "END"
    ]  # fmt: skip
    assert lines[2].split()[:5] == [
        "1",
        "DEMO",
        "2030-01-01T08:00:00Z",
        "15m",
        "battery:li_ion,inverter:pv",
    ]

    # the same through `python -m trio_dispatch`, as people run it
    shown = subprocess.run(
        [sys.executable, "-m", "trio_dispatch", "get", "2", "-m", "7"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=child_env(DISPATCH_API_URL=url, DISPATCH_API_KEY="k"),
        check=False,
    )
    assert (shown.returncode, shown.stderr) == (0, "")
    start = datetime.fromisoformat(second["start_time"])
    assert shown.stdout.splitlines()[:9] == [
        "id          2",
        "type        other",
        f"start       {start.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        "duration    none",
        "target      1,2,3",
        "active      no",
        "dry-run     yes",
        "recurrence  once",
        "end         never",
    ]


def check_update(url: str, first: dict[str, Any]) -> None:
    updated = run_json(
        "update",
        "1",
        "--duration",
        "30m",
        "--no-end",
        "--by-weekday",
        "mon-fri",
        "--target",
        "4,5",
        "--inactive",
        url=url,
    )
    assert updated["update_time"] >= first["update_time"]
    assert updated == {
        **first,
        "duration": 1800,
        "target": {"ids": [4, 5]},
        "active": False,
        "recurrence": {
            **first["recurrence"],
            "end_criteria": None,
            "byweekdays": ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY"],
        },
        "update_time": updated["update_time"],
        "end_time": None,
    }
    cleared = run_json("update", "1", "--no-recurrence", "--duration", "none", url=url)
    assert (cleared["recurrence"], cleared["duration"]) == (None, None)


def check_errors_and_delete(url: str) -> None:
    wrong_key = invoke("get", "1", "-m", "7", "--url", url, "--key", "nope")
    assert (wrong_key.exit_code, wrong_key.stdout) == (1, "")
    assert wrong_key.stderr == "error: UNAUTHENTICATED: the API key is not valid\n"

    deleted = run("delete", "1-2", url=url)
    assert (deleted.exit_code, deleted.stdout, deleted.stderr) == (0, "deleted 1\ndeleted 2\n", "")

    gone = run("get", "1", url=url)
    assert (gone.exit_code, gone.stdout) == (1, "")
    assert gone.stderr == "error: NOT_FOUND: dispatch 1 not found in microgrid 7\n"
    assert run_json("list", url=url) == []
    empty = run("list", url=url)
    assert (empty.exit_code, empty.stdout, empty.stderr) == (0, "", "no dispatches match\n")

    again = run("delete", "2-3", "--json", url=url)
    assert again.exit_code == 1
    assert json.loads(again.stdout) == {"deleted": [], "not_found": [2, 3]}
    assert again.stderr == "error: NOT_FOUND: no dispatch 2, 3 in microgrid 7\n"


def test_end_to_end_then_sigterm(tmp_path: Path) -> None:
    env = child_env(XDG_DATA_HOME=str(tmp_path / "xdg"))
    with running_server("--database", str(tmp_path / "d.sqlite3"), env=env) as server:
        assert re.fullmatch(r"grpc://127\.0\.0\.1:\d+\?ssl=false", server.url)
        first, second = create_both(server.url)
        check_list_and_get(server.url, first, second)
        check_update(server.url, first)
        check_errors_and_delete(server.url)
        code, log = server.stop(signal.SIGTERM)
    assert code == 0, log
    assert "Traceback" not in log
    assert "received SIGTERM, stopping" in log
    assert (tmp_path / "d.sqlite3").exists()
    assert not (tmp_path / "xdg").exists()


def test_stream_then_sigint_with_default_database(tmp_path: Path) -> None:
    data_home = tmp_path / "xdg"  # does not exist yet: serve creates it
    env = child_env(XDG_DATA_HOME=str(data_home))
    with running_server(env=env) as server:
        assert (data_home / "trio-dispatch" / "dispatches.sqlite3").exists()
        url = server.url
        watcher = spawn(
            "stream", "-m", "7", "--json", env=child_env(DISPATCH_API_URL=url, DISPATCH_API_KEY="k")
        )
        try:
            assert watcher.stdout is not None
            assert watcher.stderr is not None
            out, err = Lines(watcher.stdout), Lines(watcher.stderr)
            err.wait_for(lambda line: line.startswith("following microgrid 7"))

            created = run_json(
                "create", "-t", "S", "--start", "2030-01-01", "--duration", "1m", url=url
            )
            assert run("delete", "1", url=url).exit_code == 0
            assert (
                invoke(
                    "create", "-m", "8", "-t", "S", "--url", url, "--key", "k", "--duration", "1m"
                ).exit_code
                == 0
            )

            events = [json.loads(out.wait_for(lambda _: True)) for _ in range(2)]
            assert events == [
                {"event": "created", "dispatch": created},
                {"event": "deleted", "dispatch": created},
            ]
            seen = "".join(out.seen)
            watcher.send_signal(signal.SIGINT)
            assert watcher.wait(TIMEOUT) == 0
            assert out.rest() == seen  # nothing else: microgrid 8 is not ours
            assert "Traceback" not in err.rest()
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait()
            for pipe in (watcher.stdout, watcher.stderr):
                assert pipe is not None
                pipe.close()

        code, log = server.stop(signal.SIGINT)
    assert code == 0, log
    assert "Traceback" not in log
    assert "received SIGINT, stopping" in log


def test_second_server_on_the_same_database_fails_cleanly(tmp_path: Path) -> None:
    database = str(tmp_path / "d.sqlite3")
    env = child_env()
    with running_server("--database", database, env=env) as server:
        clash = subprocess.run(
            [
                sys.executable,
                "-m",
                "trio_dispatch",
                "serve",
                "--port",
                "0",
                "--key",
                "k",
                "--database",
                database,
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=env,
            check=False,
        )
        assert clash.returncode == 1
        assert clash.stderr.splitlines()[-1].startswith("error: cannot use the database: ")
        assert "Traceback" not in clash.stderr
        assert server.stop(signal.SIGTERM)[0] == 0


def test_keys_file_with_signing_and_key_together(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text('[[keys]]\nkey = "site"\nmicrogrids = [7]\nsign_secret = "s3cret"\n')
    with running_server(
        "--database", ":memory:", "--keys-file", str(keys), env=child_env()
    ) as server:
        url = server.url

        def as_site(*args: str) -> Result:
            return invoke("list", "--url", url, "--key", "site", *args)

        assert as_site("-m", "7", "--sign-secret", "s3cret", "--json").stdout == "[]\n"
        unsigned = as_site("-m", "7")
        assert (unsigned.exit_code, unsigned.stderr) == (
            1,
            "error: UNAUTHENTICATED: this key requires signed requests (ts, nonce, sig)\n",
        )
        elsewhere = as_site("-m", "8", "--sign-secret", "s3cret")
        assert (elsewhere.exit_code, elsewhere.stderr) == (
            1,
            "error: PERMISSION_DENIED: the API key does not grant access to microgrid 8\n",
        )
        signed_by_env = invoke(
            "list",
            "-m",
            "7",
            "--json",
            env={
                "DISPATCH_API_URL": url,
                "DISPATCH_API_KEY": "site",
                "DISPATCH_API_SIGN_SECRET": "s3cret",
            },
        )
        assert (signed_by_env.exit_code, signed_by_env.stdout) == (0, "[]\n")
        # --key k (from running_server) grants every microgrid alongside the file's keys
        assert run_json("list", url=url) == []
        assert server.stop(signal.SIGTERM)[0] == 0


def test_demo_runs_for_the_given_duration_and_exits_cleanly() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trio_dispatch", "demo", "--plain", "--duration", "7"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("trio-dispatch demo: embedded server at grpc://127.0.0.1:")
    assert any(" RUNNING  #1 BATTERY_PEAK_SHAVING  until " in line for line in lines)
    assert "Traceback" not in result.stderr


def test_watch_reports_a_bad_url_in_one_line() -> None:
    result = CliRunner().invoke(cli, ["watch", "--url", "http://x", "--key", "k", "-m", "1"])
    assert result.exit_code == 2
    assert "server_url scheme must be 'grpc', got 'http'" in result.output
