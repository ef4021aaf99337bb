"""Our dispatcher side by side with the reference `frequenz-dispatch` 1.0.4 (asyncio).

    .venv/bin/python benchmarks/dispatcher_reference.py

It creates ``.venv-upstream`` first if needed (``tools/upstream_env.py``) and takes about
two to four minutes. Both sides talk to the same server: ours, embedded, in a subprocess
(`ServerProcess` from ``benchmarks/dispatcher.py``), a fresh one per measurement, over
an SQLite file filled by `fill_database` with the same contents for both. Each side runs
in a process of its own: ours under ``.venv``, the reference under ``.venv-upstream``
(``child ours ...`` / ``child ref ...`` below); each prints one JSON line.

(a) Initial sync, 1,000 and 10,000 dispatches (one-offs starting tomorrow): wall time
    until the dispatcher is usable with all of them in its local state. Ours: until
    `open_dispatcher` returns (`measure_startup`: it subscribes to the stream, lists
    with pages of 1,000, reconciles). Reference: from ``Dispatcher(...)`` until
    ``async with`` has entered: that awaits ``wait_for_initialization()``, i.e. the
    background service's first ``_fetch`` (list with the client's default page size,
    100, and ``end_from=now-5s``; schedule each dispatch; fill ``_dispatches``); the
    child checks ``len(dispatcher._bg_service._dispatches)``. Its stream subscription
    comes after that signal, so it is not in the reference's time. Best of 2 runs in
    one process, plus the client's listing alone (the same call the dispatcher makes).
    The reference runs its ``assert``s unless ``python -O``: both are measured; 10,000
    without ``-O`` once, capped at 120 s.
(b) Lateness of running-status events: 1,000 dispatches, 100 starting on each of 10
    whole seconds, 30 s long; receive time minus scheduled start, p50 / p99, real clock,
    ours then the reference, each on a fresh server and database. Counted per dispatch:
    the first event whose dispatch is started when received (ours: ``status.started``;
    the reference's `Dispatch.started` is evaluated at access time, so at receipt).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve()

MICROGRID = 1  # what fill_database writes
TYPE = "BENCH"
CAP_S = 120.0  # any single measurement
SYNC_RUNS = 2
LATENESS_N = 1000
LATENESS_PER_SECOND = 100
LATENESS_LEAD_S = 12.0  # from filling the database to the first start
LATENESS_GRACE_S = 10.0  # after the last start, give up waiting for missing events


def load_dispatcher_bench() -> ModuleType:
    """``benchmarks/dispatcher.py`` by path (our venv only: it imports trio_dispatch)."""
    spec = importlib.util.spec_from_file_location("bench_dispatcher", HERE.parent / "dispatcher.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lateness_summary(late: list[float]) -> dict[str, float]:
    late = sorted(late)
    if not late:
        return {}
    # The same percentiles as benchmarks/dispatcher.py section 3.
    return {
        "p50_ms": statistics.median(late) * 1e3,
        "p99_ms": late[max(0, int(len(late) * 0.99) - 1)] * 1e3,
        "max_ms": late[-1] * 1e3,
        "min_ms": late[0] * 1e3,
    }


# == children: ours (.venv) =================================================================


def ours_sync(args: argparse.Namespace) -> dict[str, Any]:
    import trio

    bench = load_dispatcher_bench()
    runs = []
    for _ in range(args.runs):
        c0 = time.process_time()
        elapsed, loaded = trio.run(bench.measure_startup, args.url)
        runs.append({"wall_s": elapsed, "cpu_s": time.process_time() - c0, "loaded": loaded})
    listing = min(trio.run(bench.measure_listing, args.url) for _ in range(2))
    return {"runs": runs, "listing_s": listing}


def ours_lateness(args: argparse.Namespace) -> dict[str, Any]:
    import trio

    from trio_dispatch import open_dispatcher

    bench = load_dispatcher_bench()
    deadline = datetime.fromisoformat(args.deadline)

    async def run() -> dict[str, Any]:
        seen: dict[int, float] = {}
        events = not_started = duplicates = 0
        async with open_dispatcher(
            microgrid_id=MICROGRID, server_url=args.url, key=bench.KEY
        ) as dispatcher:
            ready = datetime.now(UTC)
            with dispatcher.running_status_change.new_receiver() as changes:
                with trio.move_on_after((deadline - datetime.now(UTC)).total_seconds()):
                    async for status in changes:
                        now = datetime.now(UTC)
                        events += 1
                        if not status.started:
                            not_started += 1
                        elif status.id in seen:
                            duplicates += 1
                        else:
                            seen[status.id] = (now - status.start_time).total_seconds()
                            if len(seen) == args.n:
                                break
        return {
            "ready": ready.isoformat(),
            "received": len(seen),
            "events": events,
            "not_started": not_started,
            "duplicates": duplicates,
            **lateness_summary(list(seen.values())),
        }

    return trio.run(run)


# == children: the reference (.venv-upstream) ===============================================


def ref_dispatcher(args: argparse.Namespace) -> Any:
    from frequenz.client.common.microgrid import MicrogridId
    from frequenz.dispatch import Dispatcher

    return Dispatcher(microgrid_id=MicrogridId(MICROGRID), server_url=args.url, auth_key=args.key)


async def ref_sync(args: argparse.Namespace) -> dict[str, Any]:
    from frequenz.client.common.microgrid import MicrogridId
    from frequenz.client.dispatch import DispatchApiClient

    runs = []
    for _ in range(args.runs):
        c0, t0 = time.process_time(), time.perf_counter()
        dispatcher = ref_dispatcher(args)
        try:
            async with asyncio.timeout(CAP_S):
                await dispatcher.__aenter__()
        except TimeoutError:
            runs.append({"timeout": True})
            emit({"runs": runs})  # and exit at once: no clean-up to wait for
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        loaded = len(dispatcher._bg_service._dispatches)
        await dispatcher.__aexit__(None, None, None)
        runs.append({"wall_s": elapsed, "cpu_s": cpu, "loaded": loaded})

    # The listing alone, as the dispatcher's `_fetch` calls it (default page size).
    listing = []
    async with DispatchApiClient(server_url=args.url, auth_key=args.key) as client:
        for _ in range(2):
            t0 = time.perf_counter()
            count = 0
            async for page in client.list(
                microgrid_id=MicrogridId(MICROGRID),
                end_from=datetime.now(UTC) - timedelta(seconds=5),
            ):
                count += sum(1 for _ in page)  # a page is a generator: this decodes it
            listing.append(time.perf_counter() - t0)
    return {"runs": runs, "listing_s": min(listing), "listed": count}


async def ref_lateness(args: argparse.Namespace) -> dict[str, Any]:
    deadline = datetime.fromisoformat(args.deadline)
    seen: dict[int, float] = {}
    events = not_started = duplicates = 0
    async with ref_dispatcher(args) as dispatcher:
        ready = datetime.now(UTC)
        receiver = await dispatcher.new_running_state_event_receiver(TYPE)
        try:
            async with asyncio.timeout((deadline - datetime.now(UTC)).total_seconds()):
                while len(seen) < args.n:
                    dispatch = await receiver.receive()
                    now = datetime.now(UTC)
                    events += 1
                    if not dispatch.started_at(now):  # what `.started` says at receipt
                        not_started += 1
                    elif int(dispatch.id) in seen:
                        duplicates += 1
                    else:
                        seen[int(dispatch.id)] = (now - dispatch.start_time).total_seconds()
        except TimeoutError:
            pass
    return {
        "ready": ready.isoformat(),
        "received": len(seen),
        "events": events,
        "not_started": not_started,
        "duplicates": duplicates,
        **lateness_summary(list(seen.values())),
    }


_RESULT_OUT = sys.stdout


def emit(result: dict[str, Any]) -> None:
    """Print the result and exit at once (not waiting on a timed-out dispatcher)."""
    result["optimized"] = sys.flags.optimize
    _RESULT_OUT.write(json.dumps(result) + "\n")
    _RESULT_OUT.flush()
    os._exit(0)


def child(args: argparse.Namespace) -> None:
    sys.stdout = sys.stderr  # stdout is for the result only
    if args.side == "ours":
        emit(ours_sync(args) if args.task == "sync" else ours_lateness(args))
    task = ref_sync if args.task == "sync" else ref_lateness
    emit(asyncio.run(task(args)))


# == orchestration (our venv) ===============================================================


class Runner:
    def __init__(self, bench: ModuleType, upstream_python: Path, scratch: Path) -> None:
        self.bench = bench
        self.upstream_python = upstream_python
        self.scratch = scratch
        self.notes: list[str] = []

    def run(self, side: str, task: str, url: str, optimize: bool = False, **opts: Any) -> Any:
        python = sys.executable if side == "ours" else str(self.upstream_python)
        cmd = [python, *(["-O"] if optimize else []), str(HERE), "child", side, task]
        cmd += ["--url", url, "--key", self.bench.KEY]
        for name, value in opts.items():
            cmd += [f"--{name}", str(value)]
        what = f"{side}{' -O' if optimize else ''} {task} {opts}"
        print(f"[{what}] ...", file=sys.stderr, flush=True)
        err = self.scratch / "child.err"
        with err.open("w+") as errf:
            try:
                done = subprocess.run(
                    cmd,
                    stdout=subprocess.PIPE,
                    stderr=errf,
                    text=True,
                    timeout=CAP_S + 60,  # a backstop: the child caps itself at CAP_S
                    check=False,
                )
            except subprocess.TimeoutExpired:  # run() has killed it
                self.notes.append(f"{what}: killed after {CAP_S + 60:.0f} s")
                return None
            errf.seek(0)
            stderr = errf.read()
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            self.notes.append(f"{what} failed ({done.returncode}): {stderr[-1500:]}")
            return None
        return json.loads(lines[-1])

    def sync(self, count: int) -> dict[str, Any]:
        db = self.scratch / f"sync{count}.sqlite3"
        start = datetime.now(UTC) + timedelta(days=1)
        self.bench.fill_database(
            db, [(start + timedelta(seconds=i), timedelta(minutes=5)) for i in range(count)]
        )
        variants = [("ours", False, SYNC_RUNS), ("ref", False, 1 if count > 1000 else SYNC_RUNS)]
        variants.append(("ref", True, SYNC_RUNS))
        results = {}
        for side, optimize, runs in variants:
            with self.bench.ServerProcess(db) as server:
                result = self.run(side, "sync", server.url, optimize, runs=runs)
            key = side + ("-O" if optimize else "")
            results[key] = result
            if result is None:
                continue
            for r in result["runs"]:
                if not r.get("timeout") and r["loaded"] != count:
                    self.notes.append(f"{key}, sync {count:,}: loaded {r['loaded']:,}")
        return results

    def lateness(self, side: str) -> Any:
        db = self.scratch / f"lateness-{side}.sqlite3"
        now = datetime.now(UTC)
        first = now.replace(microsecond=0) + timedelta(seconds=LATENESS_LEAD_S)
        n = LATENESS_N
        self.bench.fill_database(
            db,
            [
                (first + timedelta(seconds=i // LATENESS_PER_SECOND), timedelta(seconds=30))
                for i in range(n)
            ],
        )
        seconds = n // LATENESS_PER_SECOND
        deadline = first + timedelta(seconds=seconds - 1 + LATENESS_GRACE_S)
        with self.bench.ServerProcess(db) as server:
            result = self.run(side, "lateness", server.url, n=n, deadline=deadline.isoformat())
        if result is None:
            return None
        lead = (first - datetime.fromisoformat(result["ready"])).total_seconds()
        result["lead_s"] = lead
        if lead <= 0:
            self.notes.append(f"{side} lateness: ready {-lead:.2f} s after the first start")
        if result["received"] != n:
            self.notes.append(f"{side} lateness: only {result['received']:,} of {n:,} starts")
        if result["not_started"] or result["duplicates"]:
            self.notes.append(
                f"{side} lateness: {result['events']:,} events, of which "
                f"{result['not_started']} not started at receipt, "
                f"{result['duplicates']} repeated starts"
            )
        return result


def _best(result: Any, field: str = "wall_s") -> float | None:
    if result is None or any(r.get("timeout") for r in result["runs"]):
        return None
    return float(min(r[field] for r in result["runs"]))


def _fmt_s(value: float | None) -> str:
    return f"> {CAP_S:.0f} s" if value is None else f"{value:.3f} s"


def _ratio(ours: float | None, ref: float | None) -> str:
    if ours is None or ours <= 0:
        return "n/a"
    if ref is None:
        return f"> {CAP_S / ours:,.0f}x"
    return f"{ref / ours:,.2f}x"


def report(sync: dict[int, dict[str, Any]], late: dict[str, Any]) -> list[str]:
    rows: list[tuple[str, str, str, str]] = []
    for count, res in sync.items():
        ours = _best(res["ours"])
        for key, label in (("ref", "reference asserts on"), ("ref-O", "reference `python -O`")):
            ref = _best(res[key])
            runs = len(res[key]["runs"]) if res[key] else 0
            best = "best of 2" if runs > 1 else "1 run"
            rows.append(
                (
                    f"(a) initial sync of {count:,} ({label}; {best})",
                    _fmt_s(ours),
                    _fmt_s(ref),
                    _ratio(ours, ref),
                )
            )
        ours_cpu, ref_cpu = _best(res["ours"], "cpu_s"), _best(res["ref-O"], "cpu_s")
        rows.append(
            (
                f"(a)   process CPU during that sync of {count:,} (reference -O)",
                _fmt_s(ours_cpu),
                _fmt_s(ref_cpu),
                _ratio(ours_cpu, ref_cpu),
            )
        )
        ours_list = res["ours"]["listing_s"] if res["ours"] else None
        ref_list = res["ref-O"]["listing_s"] if res["ref-O"] else None
        rows.append(
            (
                f"(a)   the client's listing alone, {count:,} (page size: ours 1,000, ref 100)",
                _fmt_s(ours_list),
                _fmt_s(ref_list),
                _ratio(ours_list, ref_list),
            )
        )
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "max")):
        ours_v = late["ours"].get(key) if late["ours"] else None
        ref_v = late["ref"].get(key) if late["ref"] else None
        rows.append(
            (
                f"(b) lateness {label} ({LATENESS_N:,} starts, {LATENESS_PER_SECOND} per second)",
                "n/a" if ours_v is None else f"{ours_v:.2f} ms",
                "n/a" if ref_v is None else f"{ref_v:.2f} ms",
                "n/a" if ours_v is None or ref_v is None else f"{ref_v / ours_v:,.2f}x",
            )
        )
    got = [f"{late[s]['received']:,}" if late[s] else "n/a" for s in ("ours", "ref")]
    rows.append(("(b) starts received (of 1,000)", *got, ""))
    lines = ["| measurement | ours | reference | ratio (reference/ours) |", "|---|---:|---:|---:|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def orchestrate() -> int:
    sys.path.insert(0, str(ROOT))
    from tools.upstream_env import ensure_upstream_python

    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    t0 = time.perf_counter()
    load = os.getloadavg()[0]
    upstream_python = ensure_upstream_python()
    bench = load_dispatcher_bench()
    with tempfile.TemporaryDirectory(prefix="bench-dispatcher-ref-") as scratch:
        runner = Runner(bench, upstream_python, Path(scratch))
        late = {side: runner.lateness(side) for side in ("ours", "ref")}
        sync = {count: runner.sync(count) for count in (1_000, 10_000)}
    print("\n".join(report(sync, late)))
    leads = ", ".join(
        f"{side} {late[side]['lead_s']:.1f} s" for side in ("ours", "ref") if late[side]
    )
    print(f"\n(b) ready before the first start by: {leads}.")
    for note in runner.notes:
        print(f"NOTE: {note}")
    cores = os.cpu_count() or 1
    print(
        f"\n(total {time.perf_counter() - t0:.0f} s; {cores} cores, load {load:.1f} at start; "
        f"reference: {upstream_python})"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="role")
    p = sub.add_parser("child")
    p.add_argument("side", choices=["ours", "ref"])
    p.add_argument("task", choices=["sync", "lateness"])
    p.add_argument("--url", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--n", type=int, default=0)
    p.add_argument("--deadline")
    args = parser.parse_args()
    if args.role is None:
        return orchestrate()
    child(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
