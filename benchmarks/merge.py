"""Merge benchmark (issue 5): per-event cost with many running dispatches of one type.

    .venv/bin/python benchmarks/merge.py [--quick]

Workload, for N = 100, 1,000 and 10,000: N dispatches of type ``BATTERY`` run all the
time (the *background*), and P *probe* dispatches of the same type start and stop one
after the other (probe k runs 5 s, from 1 h + 10 k s), so every probe start and every
probe stop happens while N + 1 dispatches of the identity run. Under `MergeByType` each
of them is one merged reconfiguration (a member joins, a member leaves).

Measured, per start and per stop event:

1. **dispatcher**: the real `open_dispatcher` under trio's fake clock
   (``MockClock(autojump_threshold=0)`` and `WallClock`), fed by a stub client (so no
   network), with one merged receiver (``type="BATTERY", merge=MergeByType()``) read by a
   task. The cost of an event is the real time between the reader getting the previous
   item and getting this one: the scheduler waking up at the deadline, `advance`,
   publishing, merging, and the reader waking up.
2. **merger**: `Merger.feed` alone, fed the scheduler's batches (pure, no trio).
3. **upstream**: frequenz-dispatch 1.0.4's ``MergeByType().filter(dispatches, dispatch)``,
   the check its running-state receiver runs for every event, on the same workload (N
   dispatches running now by the real clock, plus the probe), in ``.venv-upstream`` as a
   subprocess (created by ``tools/upstream_env.py`` when missing). A start returns at
   once; a stop re-checks every dispatch of the microgrid.

Objects alive after the setup are frozen out of the garbage collector's scans
(`gc.freeze`) on both sides, so that what grows with N is the algorithm, not the
collector walking a bigger heap.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import statistics
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIZES = (100, 1_000, 10_000)
TYPE = "BATTERY"
PROBE_EVERY = timedelta(seconds=10)
PROBE_LENGTH = timedelta(seconds=5)
PROBES_AT = timedelta(hours=1)  # after the start, so that startup is not measured


# == ours ======================================================================================


def workload(n: int, probes: int, t0: datetime) -> list[Any]:
    from trio_dispatch import Dispatch, TargetIds

    background = [
        Dispatch(
            id=i + 1,
            type=TYPE,
            start_time=t0 - timedelta(minutes=1),
            duration=timedelta(days=2),
            target=TargetIds.of(i % 100),
            payload={"power_w": float(i)},
        )
        for i in range(n)
    ]
    probe = [
        Dispatch(
            id=n + k + 1,
            type=TYPE,
            start_time=t0 + PROBES_AT + k * PROBE_EVERY,
            duration=PROBE_LENGTH,
            target=TargetIds.of(k % 100),
            payload={"power_w": -1.0},
        )
        for k in range(probes)
    ]
    return background + probe


class StubClient:
    """What `open_dispatcher` needs of a client: a listing and a stream that stays quiet."""

    invalid_dispatches = 0

    def __init__(self, dispatches: list[Any]) -> None:
        self._dispatches = dispatches

    async def list(self, microgrid_id: int) -> Any:
        for d in self._dispatches:
            yield d

    @asynccontextmanager
    async def stream(self, microgrid_id: int) -> Any:
        yield Quiet()


class Quiet:
    def __aiter__(self) -> Quiet:
        return self

    async def __anext__(self) -> Any:
        import trio

        await trio.sleep_forever()


def bench_dispatcher(n: int, probes: int) -> dict[str, float]:
    import trio
    import trio.testing

    from trio_dispatch import MergeByType, open_dispatcher
    from trio_dispatch.testing import DEFAULT_EPOCH, WallClock

    dispatches = workload(n, probes, DEFAULT_EPOCH)
    arrivals: list[tuple[float, int]] = []

    async def main() -> None:
        clock = WallClock()
        async with open_dispatcher(
            microgrid_id=1,
            client=StubClient(dispatches),
            clock=clock,  # type: ignore[arg-type]
        ) as dispatcher:
            receiver = dispatcher.running_status_change.new_receiver(type=TYPE, merge=MergeByType())
            first = receiver.receive_nowait()
            assert first.started
            assert len(first.members) == n
            gc.collect()
            gc.freeze()
            async for item in receiver:
                arrivals.append((time.perf_counter(), len(item.members)))
                if len(arrivals) == 2 * probes:
                    break

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    gc.unfreeze()
    starts, stops = [], []
    for (before, _), (after, members) in itertools.pairwise(arrivals):
        assert members in (n, n + 1)
        (starts if members == n + 1 else stops).append(after - before)
    return {"start_us": 1e6 * statistics.fmean(starts), "stop_us": 1e6 * statistics.fmean(stops)}


def bench_merger(n: int, probes: int) -> dict[str, float]:
    from trio_dispatch import MergeByType, RunningStatus
    from trio_dispatch._merge import Merger
    from trio_dispatch._scheduler import Scheduler

    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    scheduler, merger = Scheduler(), Merger(MergeByType())
    transitions = scheduler.reconcile(workload(n, probes, t0), t0)
    merger.feed([s for s in transitions if isinstance(s, RunningStatus)])
    batches = []
    while (deadline := scheduler.next_deadline()) is not None and len(batches) < 2 * probes:
        batches.append(scheduler.advance(deadline))
    gc.collect()
    gc.freeze()
    costs: dict[bool, list[float]] = {True: [], False: []}
    for batch in batches:
        began = time.perf_counter()
        (item,) = merger.feed(batch)
        costs[batch[0].started].append(time.perf_counter() - began)
        assert len(item.members) == n + batch[0].started
    gc.unfreeze()
    return {
        "start_us": 1e6 * statistics.fmean(costs[True]),
        "stop_us": 1e6 * statistics.fmean(costs[False]),
    }


# == upstream (runs under .venv-upstream) ======================================================


def upstream(n: int, events: int) -> dict[str, float]:
    from frequenz.client.dispatch.recurrence import RecurrenceRule
    from frequenz.client.dispatch.types import Dispatch as BaseDispatch
    from frequenz.client.dispatch.types import DispatchId, TargetIds
    from frequenz.dispatch import MergeByType
    from frequenz.dispatch._dispatch import Dispatch

    now = datetime.now(UTC)

    def make(i: int, start: datetime, duration: timedelta) -> Any:
        return Dispatch(
            BaseDispatch(
                id=DispatchId(i),
                type=TYPE,
                start_time=start,
                duration=duration,
                target=TargetIds(i % 100),
                active=True,
                dry_run=False,
                payload={"power_w": float(i)},
                recurrence=RecurrenceRule(),
                create_time=now,
                update_time=now,
            )
        )

    dispatches = {
        DispatchId(i + 1): make(i + 1, now - timedelta(minutes=1), timedelta(days=2))
        for i in range(n)
    }
    started = make(n + 1, now - timedelta(seconds=1), timedelta(hours=1))  # a probe that runs
    ended = make(n + 1, now - timedelta(hours=2), timedelta(hours=1))  # the same, stopped
    strategy = MergeByType()
    gc.collect()
    gc.freeze()
    out: dict[str, float] = {}
    for name, probe, expected in (("start", started, True), ("stop", ended, False)):
        dispatches[probe.id] = probe
        costs = []
        budget = time.perf_counter() + 1.5
        while len(costs) < events and (len(costs) < 5 or time.perf_counter() < budget):
            began = time.perf_counter()
            kept = strategy.filter(dispatches, probe)
            costs.append(time.perf_counter() - began)
            assert kept is expected  # a start passes; a stop is held back (others run)
        out[f"{name}_us"] = 1e6 * statistics.fmean(costs)
        out[f"{name}_samples"] = len(costs)
    return out


def run_upstream(n: int, events: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    from tools.upstream_env import ensure_upstream_python

    python = ensure_upstream_python()
    done = subprocess.run(
        [str(python), __file__, "upstream", "--running", str(n), "--events", str(events)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# == report ====================================================================================


def fmt(us: float) -> str:
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.1f} µs"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="role")
    up = sub.add_parser("upstream")
    up.add_argument("--running", type=int, required=True)
    up.add_argument("--events", type=int, required=True)
    parser.add_argument("--quick", action="store_true", help="fewer probes")
    args = parser.parse_args()
    if args.role == "upstream":
        print(json.dumps(upstream(args.running, args.events)))
        return 0

    # 6,000 probes make 12,000 changes: more than 10,000, so the member snapshot of the
    # largest identity is checkpointed (an O(N) copy) inside the measured window too.
    probes = 300 if args.quick else 6000
    began = time.perf_counter()
    rows = []
    for n in SIZES:
        ours = bench_dispatcher(n, probes)
        merger = bench_merger(n, probes)
        theirs = run_upstream(n, probes)
        rows.append((n, ours, merger, theirs))
        print(f"N={n}: done ({time.perf_counter() - began:.0f} s)", file=sys.stderr)

    print(
        f"Per-event cost, mean of {probes} starts and {probes} stops (upstream: up to "
        "1.5 s of samples each), one identity under MergeByType. Ratios > 1: we are faster.\n"
    )
    print(
        "| running | event | ours: dispatcher (fake clock) | ours: Merger.feed | "
        "upstream: MergeByType.filter | upstream / ours, merge step | "
        "upstream filter / our whole dispatcher |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n, ours, merger, theirs in rows:
        for event in ("start", "stop"):
            key = f"{event}_us"
            print(
                f"| {n:,} | {event} | {fmt(ours[key])} | {fmt(merger[key])} | "
                f"{fmt(theirs[key])} | {theirs[key] / merger[key]:,.2f}x | "
                f"{theirs[key] / ours[key]:,.2f}x |"
            )
    print()
    for label, index in (("dispatcher", 1), ("Merger.feed", 2)):
        for event in ("start", "stop"):
            key = f"{event}_us"
            growth = rows[-1][index][key] / rows[0][index][key]
            verdict = "flat (within 2x)" if growth <= 2 else "NOT flat"
            print(f"- ours, {label}, {event}: 10,000 vs 100 running = {growth:.2f}x: {verdict}")
    for event in ("start", "stop"):
        key = f"{event}_us"
        growth = rows[-1][3][key] / rows[0][3][key]
        print(f"- upstream, {event}: 10,000 vs 100 running = {growth:.1f}x")
    print(f"\ntotal time {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
