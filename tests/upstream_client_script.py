"""Drive a dispatch server with the upstream asyncio client (frequenz-client-dispatch 1.1.1).

Run by `test_upstream_interop.py` under ``.venv-upstream/bin/python`` (this file does not
import trio_dispatch and does not run under our venv). Its one argument is a JSON object:

    {"server_url": "grpc://127.0.0.1:PORT?ssl=false", "key": "...", "sign_secret": null,
     "microgrid_id": 7, "stream_microgrid_id": 8, "forbidden_microgrid_id": 99,
     "base": "2031-01-02T03:00:00+00:00"}

``base`` is a future instant; every explicit start time is ``base`` plus an offset. The
script creates, lists (page size 2), gets, updates, deletes and streams, and prints one
JSON object as the last line of stdout (everything else it or the upstream libraries
print goes to stderr). Errors of single calls are reported as the gRPC status name.

Streaming: the upstream client subscribes in a background task and offers no way to
know when the server has accepted the subscription. So the script first creates an
anchor dispatch, then updates it until the stream delivers one of those updates; after
that, every change is seen. Anchor events are left out of the reported sequence.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from datetime import datetime, timedelta
from typing import Any

import grpc
from frequenz.client.common.microgrid import MicrogridId
from frequenz.client.common.microgrid.electrical_components import ElectricalComponentCategory
from frequenz.client.dispatch import DispatchApiClient
from frequenz.client.dispatch.recurrence import EndCriteria, Frequency, RecurrenceRule, Weekday
from frequenz.client.dispatch.types import (
    BatteryType,
    Dispatch,
    DispatchId,
    EvChargerType,
    InverterType,
    TargetCategories,
    TargetIds,
)

PAGE_SIZE = 2
EVENT_TIMEOUT_S = 10.0
PROBE_WAIT_S = 0.25
PROBE_TRIES = 80


def iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def dump_target(target: Any) -> dict[str, Any]:
    if isinstance(target, TargetIds):
        return {"ids": sorted(int(i) for i in target)}
    return {
        "categories": sorted(
            [c.category2.name, None if c.type is None else c.type.name] for c in target
        )
    }


def dump_rule(rule: RecurrenceRule) -> dict[str, Any]:
    end = rule.end_criteria
    return {
        "freq": rule.frequency.name,
        "interval": rule.interval,
        "count": None if end is None else end.count,
        "until": None if end is None else iso(end.until),
        "byminutes": list(rule.byminutes),
        "byhours": list(rule.byhours),
        "byweekdays": [Weekday(d).name for d in rule.byweekdays],
        "bymonthdays": list(rule.bymonthdays),
        "bymonths": list(rule.bymonths),
    }


def dump(d: Dispatch) -> dict[str, Any]:
    return {
        "id": int(d.id),
        "type": d.type,
        "start_time": iso(d.start_time),
        "duration": None if d.duration is None else d.duration.total_seconds(),
        "target": dump_target(d.target),
        "active": d.active,
        "dry_run": d.dry_run,
        "payload": d.payload,
        "recurrence": dump_rule(d.recurrence),
        "create_time": iso(d.create_time),
        "update_time": iso(d.update_time),
        "end_time": iso(d.end_time),
    }


async def pages(client: DispatchApiClient, microgrid: MicrogridId, **filters: Any) -> Any:
    """The ids of each page of a listing."""
    return [
        [int(d.id) for d in page]
        async for page in client.list(microgrid, page_size=PAGE_SIZE, **filters)
    ]


async def status_of(call: Any) -> str:
    """Await `call`; return "OK" or the gRPC status name it failed with."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return str(exc.code().name)
    return "OK"


async def crud(client: DispatchApiClient, cfg: dict[str, Any]) -> dict[str, Any]:
    mg = MicrogridId(cfg["microgrid_id"])
    base = datetime.fromisoformat(cfg["base"])
    h = timedelta(hours=1)
    out: dict[str, Any] = {}

    created = [
        await client.create(
            mg,
            "PEAK_SHAVING",
            base + h,
            timedelta(minutes=15),
            TargetIds(1, 2),
            payload={"power_w": 1500.0, "tags": ["a", "b"], "nested": {"x": True}},
            recurrence=RecurrenceRule(frequency=Frequency.DAILY, end_criteria=EndCriteria(count=3)),
        ),
        await client.create(
            mg,
            "EV_CHARGING",
            base + 2 * h,
            None,
            TargetCategories(ElectricalComponentCategory.BATTERY, InverterType.PV),
            dry_run=True,
            recurrence=RecurrenceRule(
                frequency=Frequency.WEEKLY,
                interval=2,
                end_criteria=EndCriteria(until=base + timedelta(days=30)),
                byhours=[8],
                byweekdays=[Weekday.MONDAY, Weekday.FRIDAY],
            ),
        ),
        await client.create(mg, "PEAK_SHAVING", "NOW", h, TargetIds(3), active=False),
        await client.create(
            mg,
            "SOLAR_CURTAILMENT",
            base + 3 * h,
            h,
            TargetCategories(BatteryType.LI_ION, EvChargerType.DC),
            payload={"limit": 0.5},
            recurrence=RecurrenceRule(
                frequency=Frequency.HOURLY,
                interval=6,
                end_criteria=EndCriteria(count=10),
                byminutes=[0, 30],
            ),
        ),
        await client.create(
            mg, "EV_CHARGING", base + 4 * h, timedelta(minutes=30), TargetIds(5), active=False
        ),
        await client.create(mg, "demo", base + 5 * h, timedelta(minutes=10), TargetIds(6, 7)),
    ]
    out["created"] = [dump(d) for d in created]
    ids = [int(d.id) for d in created]

    out["lists"] = {
        "all": await pages(client, mg),
        "inactive": await pages(client, mg, active=False),
        "dry_run": await pages(client, mg, dry_run=True),
        "ids_1_5": await pages(client, mg, target_components=[TargetIds(1, 5)]),
        "battery": await pages(
            client, mg, target_components=[TargetCategories(ElectricalComponentCategory.BATTERY)]
        ),
        "pv_inverter": await pages(
            client, mg, target_components=[TargetCategories(InverterType.PV)]
        ),
        "query_ev": await pages(client, mg, filter_queries=["ev"]),
        "query_id_or_peak": await pages(client, mg, filter_queries=[f"#{ids[3]}", "peak"]),
        "start_window": await pages(client, mg, start_from=base + 1.5 * h, start_to=base + 3.5 * h),
        "end_before": await pages(client, mg, end_to=base + 5 * h),
        "dispatch_ids": await pages(
            client, mg, dispatch_ids=[DispatchId(ids[0]), DispatchId(ids[3]), DispatchId(ids[5])]
        ),
        "active_peak": await pages(client, mg, active=True, filter_queries=["peak"]),
    }

    out["get"] = dump(await client.get(microgrid_id=mg, dispatch_id=DispatchId(ids[3])))

    out["updated"] = [
        dump(
            await client.update(
                microgrid_id=mg,
                dispatch_id=DispatchId(ids[0]),
                new_fields={
                    "start_time": base + 6 * h,
                    "duration": timedelta(minutes=45),
                    "target": TargetIds(8, 9),
                    "payload": {"power_w": 2000.0},
                    "active": False,
                },
            )
        ),
        dump(
            await client.update(
                microgrid_id=mg,
                dispatch_id=DispatchId(ids[3]),
                new_fields={
                    "recurrence.frequency": Frequency.DAILY,
                    "recurrence.interval": 3,
                    "recurrence.end_criteria": EndCriteria(until=base + timedelta(days=20)),
                    "recurrence.byhours": [6, 18],
                    "recurrence.byweekdays": [Weekday.SATURDAY],
                },
            )
        ),
        dump(
            await client.update(
                microgrid_id=mg,
                dispatch_id=DispatchId(ids[5]),
                new_fields={
                    "duration": None,
                    "recurrence.freq": Frequency.MINUTELY,
                    "recurrence.interval": 15,
                    "recurrence.end_criteria": EndCriteria(count=4),
                },
            )
        ),
    ]
    out["get_after_update"] = dump(
        await client.get(microgrid_id=mg, dispatch_id=DispatchId(ids[0]))
    )

    gone = DispatchId(ids[4])
    out["delete"] = {
        "first": await status_of(client.delete(microgrid_id=mg, dispatch_id=gone)),
        "get_after": await status_of(client.get(microgrid_id=mg, dispatch_id=gone)),
        "again": await status_of(client.delete(microgrid_id=mg, dispatch_id=gone)),
        "update_after": await status_of(
            client.update(microgrid_id=mg, dispatch_id=gone, new_fields={"active": True})
        ),
        "list_after": await pages(client, mg),
    }
    out["forbidden_microgrid"] = await status_of(
        pages(client, MicrogridId(cfg["forbidden_microgrid_id"]))
    )
    return out


async def next_event(receiver: Any) -> Any:
    async with asyncio.timeout(EVENT_TIMEOUT_S):
        return await receiver.receive()


async def stream(client: DispatchApiClient, cfg: dict[str, Any]) -> dict[str, Any]:
    mg = MicrogridId(cfg["stream_microgrid_id"])
    base = datetime.fromisoformat(cfg["base"])
    anchor = await client.create(mg, "ANCHOR", base, timedelta(minutes=1), TargetIds(1))
    receiver = client.stream(mg)

    probes = 0
    while True:  # update the anchor until the stream shows one of the updates
        probes += 1
        if probes > PROBE_TRIES:
            raise RuntimeError("the stream delivered none of the anchor's updates")
        await client.update(
            microgrid_id=mg, dispatch_id=anchor.id, new_fields={"payload": {"probe": probes}}
        )
        try:
            async with asyncio.timeout(PROBE_WAIT_S):
                event = await receiver.receive()
        except TimeoutError:
            continue
        if int(event.dispatch.id) == int(anchor.id):
            break

    a = await client.create(mg, "STREAM_A", base + timedelta(hours=1), None, TargetIds(1))
    b = await client.create(
        mg, "STREAM_B", base + timedelta(hours=2), timedelta(minutes=5), TargetIds(2)
    )
    await client.update(
        microgrid_id=mg, dispatch_id=a.id, new_fields={"duration": timedelta(minutes=20)}
    )
    await client.delete(microgrid_id=mg, dispatch_id=b.id)
    await client.update(
        microgrid_id=mg,
        dispatch_id=a.id,
        new_fields={"recurrence.freq": Frequency.DAILY, "recurrence.interval": 2},
    )
    await client.delete(microgrid_id=mg, dispatch_id=a.id)

    events = []
    while len(events) < 6:
        event = await next_event(receiver)
        d = event.dispatch
        if int(d.id) == int(anchor.id):
            continue  # a late echo of a probe
        events.append(
            [
                event.event.name,
                int(d.id),
                d.type,
                None if d.duration is None else d.duration.total_seconds(),
                d.recurrence.frequency.name,
                d.recurrence.interval,
            ]
        )
    await client._streams[mg].stop()  # no public way to end the shared stream
    return {
        "anchor_id": int(anchor.id),
        "created_ids": [int(a.id), int(b.id)],
        "events": events,
    }


async def main(cfg: dict[str, Any]) -> dict[str, Any]:
    secret = cfg["sign_secret"]
    out: dict[str, Any] = {}
    async with DispatchApiClient(
        server_url=cfg["server_url"], auth_key=cfg["key"], sign_secret=secret
    ) as client:
        out["crud"] = await crud(client, cfg)
        out["stream"] = await stream(client, cfg)
    mg = MicrogridId(cfg["microgrid_id"])
    async with DispatchApiClient(server_url=cfg["server_url"], auth_key="not-a-key") as bad:
        out["unknown_key"] = await status_of(pages(bad, mg))
    if secret is not None:
        async with DispatchApiClient(server_url=cfg["server_url"], auth_key=cfg["key"]) as bad:
            out["signed_key_unsigned_call"] = await status_of(pages(bad, mg))
        async with DispatchApiClient(
            server_url=cfg["server_url"], auth_key=cfg["key"], sign_secret="wrong-secret"
        ) as bad:
            out["signed_key_wrong_secret"] = await status_of(pages(bad, mg))
    return out


if __name__ == "__main__":
    stdout, sys.stdout = sys.stdout, sys.stderr  # keep stdout for the result alone
    try:
        result = asyncio.run(main(json.loads(sys.argv[1])))
    except Exception:
        traceback.print_exc()
        sys.exit(1)
    stdout.write(json.dumps(result) + "\n")
    stdout.flush()
