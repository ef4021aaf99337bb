"""Our embedded server, driven by the official asyncio client (frequenz-client-dispatch 1.1.1).

The upstream client runs in its own venv (`tools/upstream_env.py`), in a subprocess that
runs `upstream_client_script.py` against a server started here in-process. The script
reports what the upstream client saw as JSON; the test asserts it exactly, then checks
the server's state through our own client.

Real clock on purpose: the subprocess lives in real time (and the upstream client
refuses start times in the past), so no autojump here.
"""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_dispatch import Dispatch, Frequency, TargetIds
from trio_dispatch._client import open_client
from trio_dispatch.server._keys import ApiKey, KeyRing
from trio_dispatch.server._serve import RunningServer, open_dispatch_server

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "upstream_client_script.py"

MICROGRID = 7
STREAM_MICROGRID = 8
FORBIDDEN_MICROGRID = 99
PLAIN_KEY = "plain-key-for-interop"
SIGNED_KEY = "signed-key-for-interop"
SIGN_SECRET = "s3cret-sign-for-interop"
H = timedelta(hours=1)


def _load_upstream_env() -> Any:
    spec = importlib.util.spec_from_file_location(
        "_upstream_env", ROOT / "tools" / "upstream_env.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def upstream_python() -> Path:
    """The interpreter of .venv-upstream; created on first use (pip, ~15 s)."""
    env = _load_upstream_env()
    try:
        return Path(env.ensure_upstream_python())
    except env.UpstreamEnvError as exc:
        pytest.fail(f"cannot create the upstream venv for the interop tests:\n{exc}")


def _key_ring() -> KeyRing:
    grids = frozenset({MICROGRID, STREAM_MICROGRID})
    return KeyRing(
        [
            ApiKey(key=PLAIN_KEY, microgrids=grids),
            ApiKey(key=SIGNED_KEY, microgrids=grids, sign_secret=SIGN_SECRET),
        ]
    )


def _future_monday(now: datetime) -> datetime:
    """Midnight (UTC) of the first Monday at least two days after `now`.

    A fixed weekday makes the weekday-dependent rules of the script give the same
    occurrences every day the test runs.
    """
    day = (now + timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(days=(7 - day.weekday()) % 7)


class Within:
    """Equal to an ISO datetime string in ``[lo, hi]``; for server-chosen times."""

    def __init__(self, lo: datetime, hi: datetime) -> None:
        self.lo, self.hi = lo, hi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.lo <= datetime.fromisoformat(other) <= self.hi

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"Within({self.lo.isoformat()}, {self.hi.isoformat()})"


def iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def rule(
    freq: str = "UNSPECIFIED",
    interval: int = 0,
    *,
    count: int | None = None,
    until: datetime | None = None,
    byminutes: list[int] | None = None,
    byhours: list[int] | None = None,
    byweekdays: list[str] | None = None,
) -> dict[str, Any]:
    """A recurrence as the script reports it (upstream shows "no rule" as interval 0)."""
    return {
        "freq": freq,
        "interval": interval,
        "count": count,
        "until": iso(until),
        "byminutes": byminutes or [],
        "byhours": byhours or [],
        "byweekdays": byweekdays or [],
        "bymonthdays": [],
        "bymonths": [],
    }


def as_reported(d: Dispatch) -> dict[str, Any]:
    """Our model dispatch in the script's JSON form, to compare the two clients' views."""
    r = d.recurrence
    end = r.end_criteria if r is not None else None
    if isinstance(d.target, TargetIds):
        target: dict[str, Any] = {"ids": sorted(d.target.ids)}
    else:
        target = {
            "categories": sorted(
                [c.category.name, None if c.type is None else c.type.name]
                for c in d.target.categories
            )
        }
    return {
        "id": d.id,
        "type": d.type,
        "start_time": iso(d.start_time),
        "duration": None if d.duration is None else d.duration.total_seconds(),
        "target": target,
        "active": d.active,
        "dry_run": d.dry_run,
        "payload": d.payload,
        "recurrence": rule()
        if r is None
        else {
            "freq": r.frequency.name,
            "interval": r.interval,
            "count": None if end is None else end.count,
            "until": None if end is None else iso(end.until),
            "byminutes": list(r.byminutes),
            "byhours": list(r.byhours),
            "byweekdays": [w.name for w in r.byweekdays],
            "bymonthdays": list(r.bymonthdays),
            "bymonths": list(r.bymonths),
        },
        "create_time": iso(d.create_time),
        "update_time": iso(d.update_time),
        "end_time": iso(d.end_time),
    }


def dispatch_json(
    dispatch_id: int,
    type: str,
    start: datetime | Within,
    duration_s: float | None,
    target: dict[str, Any],
    *,
    created: Within,
    updated: Within | None = None,
    end: datetime | Within | None,
    active: bool = True,
    dry_run: bool = False,
    payload: dict[str, Any] | None = None,
    recurrence: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": dispatch_id,
        "type": type,
        "start_time": start if isinstance(start, Within) else start.isoformat(),
        "duration": duration_s,
        "target": target,
        "active": active,
        "dry_run": dry_run,
        "payload": {} if payload is None else payload,
        "recurrence": rule() if recurrence is None else recurrence,
        "create_time": created,
        "update_time": created if updated is None else updated,
        "end_time": end if end is None or isinstance(end, Within) else end.isoformat(),
    }


async def run_script(python: Path, config: dict[str, Any]) -> dict[str, Any]:
    done = await trio.run_process(
        [str(python), str(SCRIPT), json.dumps(config)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    stdout = done.stdout.decode(errors="replace")
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, f"upstream script failed ({done.returncode}):\n{stderr}"
    lines = stdout.strip().splitlines()
    assert lines, f"upstream script printed no result; stderr:\n{stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@pytest.mark.parametrize(
    ("key", "sign_secret"), [(PLAIN_KEY, None), (SIGNED_KEY, SIGN_SECRET)], ids=["plain", "signed"]
)
async def test_upstream_client_against_our_server(
    upstream_python: Path, key: str, sign_secret: str | None
) -> None:
    with trio.fail_after(120):
        async with open_dispatch_server(keys=_key_ring()) as server:
            t0 = datetime.now(UTC)
            base = _future_monday(t0)
            result = await run_script(
                upstream_python,
                {
                    "server_url": server.url,
                    "key": key,
                    "sign_secret": sign_secret,
                    "microgrid_id": MICROGRID,
                    "stream_microgrid_id": STREAM_MICROGRID,
                    "forbidden_microgrid_id": FORBIDDEN_MICROGRID,
                    "base": base.isoformat(),
                },
            )
            t1 = datetime.now(UTC)
            check_crud(result["crud"], base, Within(t0, t1))
            check_stream(result["stream"])
            denied = {"unknown_key": "UNAUTHENTICATED"}
            if sign_secret is not None:
                denied |= {
                    "signed_key_unsigned_call": "UNAUTHENTICATED",
                    "signed_key_wrong_secret": "UNAUTHENTICATED",
                }
            assert {k: v for k, v in result.items() if k not in ("crud", "stream")} == denied
            await check_server_state(server, key, sign_secret, result)


def check_crud(crud: dict[str, Any], base: datetime, now: Within) -> None:
    created = crud["created"]
    assert [d["id"] for d in created] == [1, 2, 3, 4, 5, 6]
    times = [datetime.fromisoformat(d["create_time"]) for d in created]
    assert times == sorted(times), "create times must increase"
    # "NOW": the server's clock picks the start; the end follows from it.
    start_now = datetime.fromisoformat(created[2]["start_time"])
    assert created[2]["start_time"] == created[2]["create_time"] == now
    assert created[2]["end_time"] == iso(start_now + H)

    ids = {"ids": [1, 2]}
    cats_2 = {"categories": [["BATTERY", None], ["INVERTER", "PV"]]}
    cats_4 = {"categories": [["BATTERY", "LI_ION"], ["EV_CHARGER", "DC"]]}
    payload_1 = {"power_w": 1500.0, "tags": ["a", "b"], "nested": {"x": True}}
    rule_1 = rule("DAILY", 1, count=3)  # upstream sent interval 0: the default, 1
    rule_2 = rule(
        "WEEKLY",
        2,
        until=base + timedelta(days=30),
        byhours=[8],
        byweekdays=["MONDAY", "FRIDAY"],
    )
    rule_4 = rule("HOURLY", 6, count=10, byminutes=[0, 30])
    expected_created = [
        dispatch_json(
            1,
            "PEAK_SHAVING",
            base + H,
            900.0,
            ids,
            created=now,
            end=base + 2 * 24 * H + H + timedelta(minutes=15),
            payload=payload_1,
            recurrence=rule_1,
        ),
        dispatch_json(
            2,
            "EV_CHARGING",
            base + 2 * H,
            None,
            cats_2,
            created=now,
            end=None,
            dry_run=True,
            recurrence=rule_2,
        ),
        dispatch_json(
            3,
            "PEAK_SHAVING",
            now,
            3600.0,
            {"ids": [3]},
            created=now,
            end=start_now + H,
            active=False,
        ),
        dispatch_json(
            4,
            "SOLAR_CURTAILMENT",
            base + 3 * H,
            3600.0,
            cats_4,
            created=now,
            # 10 starts: 03:00 03:30 09:00 ... 21:30, then 03:00 and 03:30 next day.
            end=base + 24 * H + 4.5 * H,
            payload={"limit": 0.5},
            recurrence=rule_4,
        ),
        dispatch_json(
            5,
            "EV_CHARGING",
            base + 4 * H,
            1800.0,
            {"ids": [5]},
            created=now,
            end=base + 4.5 * H,
            active=False,
        ),
        dispatch_json(
            6,
            "demo",
            base + 5 * H,
            600.0,
            {"ids": [6, 7]},
            created=now,
            end=base + 5 * H + timedelta(minutes=10),
        ),
    ]
    assert created == expected_created

    assert crud["lists"] == {
        "all": [[6, 5], [4, 3], [2, 1]],  # newest first, pages of 2
        "inactive": [[5, 3]],
        "dry_run": [[2]],
        "ids_1_5": [[5, 1]],
        "battery": [[4, 2]],  # a bare category matches any subtype
        "pv_inverter": [[2]],
        "query_ev": [[5, 2]],
        "query_id_or_peak": [[4, 3], [1]],
        "start_window": [[4, 2]],
        "end_before": [[5, 3]],
        "dispatch_ids": [[6, 4], [1]],
        "active_peak": [[1]],
    }
    assert crud["get"] == expected_created[3]

    updated = crud["updated"]
    for u in updated:
        assert u["update_time"] == now
        assert datetime.fromisoformat(u["update_time"]) > datetime.fromisoformat(u["create_time"])
    assert updated == [
        dispatch_json(
            1,
            "PEAK_SHAVING",
            base + 6 * H,
            2700.0,
            {"ids": [8, 9]},
            created=created[0]["create_time"],
            updated=updated[0]["update_time"],
            end=base + 2 * 24 * H + 6.75 * H,
            active=False,
            payload={"power_w": 2000.0},
            recurrence=rule_1,
        ),
        dispatch_json(
            4,
            "SOLAR_CURTAILMENT",
            base + 3 * H,
            3600.0,
            cats_4,
            created=created[3]["create_time"],
            updated=updated[1]["update_time"],
            # Every 3rd day from Monday, Saturdays only: day 12 (a Saturday), at
            # 06:00 06:30 18:00 18:30; the last run ends at 19:30.
            end=base + 12 * 24 * H + 19.5 * H,
            payload={"limit": 0.5},
            recurrence=rule(
                "DAILY",
                3,
                until=base + timedelta(days=20),
                byminutes=[0, 30],
                byhours=[6, 18],
                byweekdays=["SATURDAY"],
            ),
        ),
        dispatch_json(
            6,
            "demo",
            base + 5 * H,
            None,
            {"ids": [6, 7]},
            created=created[5]["create_time"],
            updated=updated[2]["update_time"],
            end=None,
            recurrence=rule("MINUTELY", 15, count=4),
        ),
    ]
    assert crud["get_after_update"] == updated[0]
    assert crud["delete"] == {
        "first": "OK",
        "get_after": "NOT_FOUND",
        "again": "NOT_FOUND",
        "update_after": "NOT_FOUND",
        "list_after": [[6, 4], [3, 2], [1]],
    }
    assert crud["forbidden_microgrid"] == "PERMISSION_DENIED"


def check_stream(stream: dict[str, Any]) -> None:
    assert stream["anchor_id"] == 7
    assert stream["created_ids"] == [8, 9]
    assert stream["events"] == [
        ["CREATED", 8, "STREAM_A", None, "UNSPECIFIED", 0],
        ["CREATED", 9, "STREAM_B", 300.0, "UNSPECIFIED", 0],
        ["UPDATED", 8, "STREAM_A", 1200.0, "UNSPECIFIED", 0],
        ["DELETED", 9, "STREAM_B", 300.0, "UNSPECIFIED", 0],
        ["UPDATED", 8, "STREAM_A", 1200.0, "DAILY", 2],
        ["DELETED", 8, "STREAM_A", 1200.0, "DAILY", 2],
    ]


async def check_server_state(
    server: RunningServer, key: str, sign_secret: str | None, result: dict[str, Any]
) -> None:
    """What our client reads equals what the upstream client last saw of each dispatch."""
    crud = result["crud"]
    last_seen = {d["id"]: d for d in crud["created"]}
    last_seen |= {d["id"]: d for d in crud["updated"]}
    del last_seen[5]
    async with open_client(server_url=server.url, key=key, sign_secret=sign_secret) as client:
        ours = [d async for d in client.list(MICROGRID)]
        assert [d.id for d in ours] == [6, 4, 3, 2, 1]
        assert {d.id: as_reported(d) for d in ours} == last_seen
        recurring = [d.id async for d in client.list(MICROGRID, recurring=True)]
        assert recurring == [6, 4, 2, 1]
        four = await client.get(MICROGRID, 4)
        assert four.recurrence is not None
        assert four.recurrence.frequency is Frequency.DAILY
        stream_grid = [d async for d in client.list(STREAM_MICROGRID)]
        assert [(d.id, d.type) for d in stream_grid] == [(7, "ANCHOR")]
        assert set(stream_grid[0].payload) == {"probe"}
