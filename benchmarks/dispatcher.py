"""Dispatcher benchmarks (issue: open_dispatcher).

    .venv/bin/python benchmarks/dispatcher.py [--quick]

1. Scale: 100,000 dispatches of mixed kinds over 24 simulated hours, through the
   dispatcher's core (the pure `Scheduler` deciding, the coalescing `Broadcast`
   publishing to one receiver that keeps up). CPU microseconds per running-status
   event, and memory per dispatch (tracemalloc).
2. Idle CPU right after a burst: 10,000 dispatches start at the same instant; the real
   dispatcher (real clock, embedded server in a subprocess) then has nothing to do for
   several seconds. Process CPU time over that idle window, in % of one core.
3. Lateness: 1,000 dispatches, 100 starting on each of 10 whole seconds; receive time
   minus scheduled start, p50 / p99, real clock.
4. Initial sync: time until `open_dispatcher` returns, with 1,000 and 10,000 dispatches
   in the server (a subprocess, so its encoding does not count against us), and the
   dispatcher's own share once decoding is subtracted.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trio
from frequenz.api.dispatch.v1 import dispatch_pb2 as pb2

from trio_dispatch import (
    Dispatch,
    Frequency,
    RecurrenceRule,
    TargetIds,
    open_client,
    open_dispatcher,
)
from trio_dispatch._broadcast import Broadcast
from trio_dispatch._convert import dispatch_data_to_proto, dispatch_from_pb2, dispatch_to_proto
from trio_dispatch._events import RunningStatus
from trio_dispatch._scheduler import Scheduler
from trio_dispatch.server._store import DispatchStore

KEY = "bench"
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def mixed(n: int, rng: random.Random) -> list[Dispatch]:
    """One-off, minutely, hourly, daily and overlapping dispatches."""
    out = []
    for i in range(n):
        kind = rng.random()
        start = T0 + timedelta(seconds=rng.randrange(0, 86_400))
        rule = None
        if kind < 0.40:
            duration = timedelta(minutes=rng.randrange(5, 60))
        elif kind < 0.50:
            rule = RecurrenceRule(frequency=Frequency.MINUTELY, interval=rng.randrange(30, 61))
            duration = timedelta(minutes=rng.randrange(1, 10))
        elif kind < 0.70:
            rule = RecurrenceRule(frequency=Frequency.HOURLY)
            duration = timedelta(minutes=rng.randrange(5, 30))
        elif kind < 0.90:
            rule = RecurrenceRule(frequency=Frequency.DAILY)
            duration = timedelta(hours=rng.randrange(1, 6))
        else:  # overlapping: runs last longer than the interval
            rule = RecurrenceRule(frequency=Frequency.HOURLY)
            duration = timedelta(minutes=90)
        out.append(
            Dispatch(
                id=i + 1,
                type=f"TYPE_{i % 7}",
                start_time=start,
                duration=duration,
                recurrence=rule,
                target=TargetIds.of(i % 50),
                payload={"power_w": float(i % 1000)},
            )
        )
    return out


def bench_scale(n: int) -> dict[str, float]:
    rng = random.Random(42)
    dispatches = mixed(n, rng)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    scheduler = Scheduler()
    events = scheduler.reconcile(dispatches, T0)
    del events
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    # Per dispatch: the model values themselves plus the scheduler's state.
    model = _model_bytes(dispatches[:2000]) / 2000
    per_dispatch = (after - before) / n + model

    running: Broadcast[RunningStatus] = Broadcast(lambda s: s.dispatch.id, 1024)
    receiver = running.subscribe(lambda s: True)
    end = T0 + timedelta(hours=24)
    emitted = 0
    cpu0 = time.process_time()
    while (deadline := scheduler.next_deadline()) is not None and deadline <= end:
        for status in scheduler.advance(deadline):
            running.publish(status)
            emitted += 1
        while True:  # a reader that keeps up
            try:
                receiver.receive_nowait()
            except trio.WouldBlock:
                break
    cpu = time.process_time() - cpu0
    return {
        "events": emitted,
        "us_per_event": cpu / emitted * 1e6,
        "bytes_per_dispatch": per_dispatch,
    }


def _model_bytes(sample: list[Dispatch]) -> int:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    copies = [
        dispatch_from_pb2(pb2.Dispatch.FromString(bytes(dispatch_to_proto(d)))) for d in sample
    ]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del copies
    return after - before


# -- a server in its own process ---------------------------------------------------------

SERVER = """
import sys, trio
from trio_dispatch.server import serve_dispatch_api
async def main():
    async with trio.open_nursery() as n:
        s = await n.start(lambda task_status: serve_dispatch_api(
            keys=[sys.argv[2]], database=sys.argv[1], task_status=task_status))
        print(s.url, flush=True)
trio.run(main)
"""


def fill_database(path: Path, dispatches: list[tuple[datetime, timedelta | None]]) -> None:
    with DispatchStore.open(path) as store:
        for start, duration in dispatches:
            data = dispatch_data_to_proto(
                Dispatch(id=0, type="BENCH", start_time=start, duration=duration)
            )
            store.create(1, data, start_immediately=False, now=min(start, datetime.now(UTC)))


class ServerProcess:
    def __init__(self, database: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(database), KEY],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait()


async def measure_idle_after_burst(url: str, burst_at: datetime, window: float) -> float:
    async with open_dispatcher(microgrid_id=1, server_url=url, key=KEY) as dispatcher:
        with dispatcher.running_status_change.new_receiver() as changes:
            await trio.sleep_until(
                trio.current_time() + (burst_at - datetime.now(UTC)).total_seconds()
            )
            await trio.sleep(0.5)  # the burst is handled
            async for _ in _drain(changes):
                pass
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await trio.sleep(window)
            return (time.process_time() - cpu0) / (time.perf_counter() - wall0) * 100


async def _drain(rx):  # type: ignore[no-untyped-def]
    while True:
        try:
            yield rx.receive_nowait()
        except trio.WouldBlock:
            return


async def measure_lateness(url: str, count: int) -> list[float]:
    lateness: list[float] = []
    async with open_dispatcher(microgrid_id=1, server_url=url, key=KEY) as dispatcher:
        with dispatcher.running_status_change.new_receiver() as changes:
            async for status in changes:
                if status.started:
                    lateness.append((datetime.now(UTC) - status.start_time).total_seconds())
                    if len(lateness) == count:
                        return lateness
    return lateness


async def measure_startup(url: str) -> tuple[float, int]:
    t = time.perf_counter()
    async with open_dispatcher(microgrid_id=1, server_url=url, key=KEY) as dispatcher:
        elapsed = time.perf_counter() - t
        return elapsed, len(dispatcher.dispatches)


async def measure_listing(url: str) -> float:
    """Seconds for the client alone to list everything (what any sync must pay)."""
    async with open_client(server_url=url, key=KEY) as client:
        t = time.perf_counter()
        async for _ in client.list(1):
            pass
        return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="10,000 instead of 100,000")
    args = parser.parse_args()
    n = 10_000 if args.quick else 100_000
    rows: list[tuple[str, str, str]] = []

    scale = bench_scale(n)
    rows.append(
        (
            f"CPU per running-status event ({n:,} dispatches, 24 h, {scale['events']:,.0f} events)",
            f"{scale['us_per_event']:.1f} us",
            "<= 20 us",
        )
    )
    rows.append(
        (
            "memory per dispatch (model + scheduler)",
            f"{scale['bytes_per_dispatch']:.0f} B",
            "<= 2048 B",
        )
    )

    with tempfile.TemporaryDirectory() as tmp:
        now = datetime.now(UTC)
        burst = now.replace(microsecond=0) + timedelta(seconds=8)
        db = Path(tmp) / "burst.sqlite3"
        fill_database(db, [(burst, timedelta(minutes=5))] * 10_000)
        with ServerProcess(db) as server:
            idle = trio.run(measure_idle_after_burst, server.url, burst, 5.0)
        rows.append(("idle CPU after a burst of 10,000 starts", f"{idle:.2f} % of a core", "< 1 %"))

        now = datetime.now(UTC)
        first = now.replace(microsecond=0) + timedelta(seconds=5)
        db = Path(tmp) / "lateness.sqlite3"
        fill_database(
            db, [(first + timedelta(seconds=i // 100), timedelta(seconds=30)) for i in range(1000)]
        )
        with ServerProcess(db) as server:
            late = sorted(trio.run(measure_lateness, server.url, 1000))
        p50 = statistics.median(late) * 1e3
        p99 = late[int(len(late) * 0.99) - 1] * 1e3
        rows.append(("lateness p50 (1,000 starts, 100 per second)", f"{p50:.2f} ms", ""))
        rows.append(("lateness p99", f"{p99:.2f} ms", "<= 3 ms"))

        for count in (1_000, 10_000):
            db = Path(tmp) / f"sync{count}.sqlite3"
            start = datetime.now(UTC) + timedelta(days=1)
            fill_database(
                db, [(start + timedelta(seconds=i), timedelta(minutes=5)) for i in range(count)]
            )
            with ServerProcess(db) as server:
                listing = min(trio.run(measure_listing, server.url) for _ in range(2))
                elapsed, loaded = min(trio.run(measure_startup, server.url) for _ in range(2))
            assert loaded == count, (loaded, count)
            own = max(0.0, elapsed - listing) / count * 1e6
            rows.append(
                (
                    f"initial sync of {count:,}: open_dispatcher returns after",
                    f"{elapsed:.3f} s",
                    "<= 3 s" if count == 10_000 else "",
                )
            )
            rows.append(
                (
                    "  of which the client's listing / the dispatcher's own per dispatch",
                    f"{listing:.3f} s / {own:.1f} us",
                    "own <= 20 us",
                )
            )

    print("| measurement | value | target |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
