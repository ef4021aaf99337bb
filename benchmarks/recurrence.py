"""How long `next_run_after` and `started_at` take, against walking dateutil's rrule.

Run it as ``.venv/bin/python benchmarks/recurrence.py``. For plain rules (interval 1, no
by-parts, no end criteria) of each frequency, aged one day to ten years, it prints a
markdown table of the median microseconds per call of:

* `Schedule` (this library): the schedule is built once, as a `Dispatch` holds it, and
  each call asks about a different time near the given age;
* "walk": what the reference library does on every call, build an rrule from dtstart,
  then ``rule.after(t, inc=True)`` for the next start and ``rule.before(t, inc=True)``
  plus the duration for "is it running". That is O(occurrences since the start), so it
  is repeated fewer times where it is slow (once for the largest cases); the whole script
  takes about a minute or two.

A second table shows rules with by-parts (ours only).

The targets are at most 50 µs per call everywhere and at least 1000x faster than the
walk for a minutely rule one year old.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dateutil import rrule as rr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trio_dispatch import EndCriteria, Frequency, RecurrenceRule, Weekday
from trio_dispatch._recurrence import Schedule

START = datetime(2015, 3, 7, 9, 30, 15, tzinfo=UTC)
CASES = [
    (Frequency.MINUTELY, rr.MINUTELY, timedelta(seconds=30)),
    (Frequency.HOURLY, rr.HOURLY, timedelta(minutes=15)),
    (Frequency.DAILY, rr.DAILY, timedelta(hours=1)),
    (Frequency.WEEKLY, rr.WEEKLY, timedelta(hours=8)),
    (Frequency.MONTHLY, rr.MONTHLY, timedelta(days=2)),
]
AGES = [
    ("1 day", timedelta(days=1)),
    ("30 days", timedelta(days=30)),
    ("1 year", timedelta(days=365)),
    ("10 years", timedelta(days=3652)),
]
CALLS = 2001  # timed calls of our side, each at a different time
WALK_BUDGET_S = 2.0  # per cell: the walk is repeated until about this much time is spent
WALK_MAX_REPS = 51


def median_us(
    fn: Callable[[datetime], object], times: list[datetime]
) -> tuple[float, list[object]]:
    """Median µs per call over `times`, and the answers."""
    samples, answers = [], []
    clock = time.perf_counter_ns
    for t in times:
        t0 = clock()
        answers.append(fn(t))
        samples.append(clock() - t0)
    return statistics.median(samples) / 1000, answers


def walk_median_us(
    fn: Callable[[datetime], object], times: list[datetime]
) -> tuple[float, int, list[object]]:
    """Like `median_us`, on as many of `times` as fit the time budget."""
    t0 = time.perf_counter()
    first = fn(times[0])
    elapsed = time.perf_counter() - t0
    reps = max(1, min(WALK_MAX_REPS, int(WALK_BUDGET_S / max(elapsed, 1e-9))))
    if reps == 1:
        return elapsed * 1e6, 1, [first]
    us, answers = median_us(fn, times[:reps])
    return us, reps, answers


F, W = Frequency, Weekday
FILTERED = [
    (
        "minutely, 08-09h on Mondays",
        RecurrenceRule(frequency=F.MINUTELY, byhours=(8, 9), byweekdays=(W.MONDAY,)),
    ),
    (
        "minutely every 61 min at hh:00 in hour 5",
        RecurrenceRule(frequency=F.MINUTELY, interval=61, byminutes=(0,), byhours=(5,)),
    ),
    (
        "hourly at 8h and 20h, Mon and Fri",
        RecurrenceRule(frequency=F.HOURLY, byhours=(8, 20), byweekdays=(W.MONDAY, W.FRIDAY)),
    ),
    ("daily, last day of the month", RecurrenceRule(frequency=F.DAILY, bymonthdays=(-1,))),
    (
        "daily in December at 1, 2, 3h",
        RecurrenceRule(frequency=F.DAILY, bymonths=(12,), byhours=(1, 2, 3)),
    ),
    ("monthly on the 31st", RecurrenceRule(frequency=F.MONTHLY, bymonthdays=(31,))),
    ("yearly on 29 February", RecurrenceRule(frequency=F.YEARLY, bymonths=(2,), bymonthdays=(29,))),
    (
        "yearly on 29 February, if a Monday",
        RecurrenceRule(
            frequency=F.YEARLY, bymonths=(2,), bymonthdays=(29,), byweekdays=(W.MONDAY,)
        ),
    ),
    (
        "weekly, first 7 days of the month, count 4096",
        RecurrenceRule(
            frequency=F.WEEKLY, bymonthdays=tuple(range(1, 8)), end_criteria=EndCriteria(count=4096)
        ),
    ),
    (
        "never: daily on 30 February",
        RecurrenceRule(frequency=F.DAILY, bymonths=(2,), bymonthdays=(30,)),
    ),
]


def filtered_table(rng: random.Random) -> None:
    print(
        "\nRules with by-parts, 10 years old (Schedule only; the first call also compiles\n"
        "the rule and, for count, walks to the count-th occurrence once):\n\n"
        "| rule | first call µs | next_run_after µs | started_at µs |\n|---|---:|---:|---:|"
    )
    for name, rule in FILTERED:
        t0 = time.perf_counter()
        schedule = Schedule(START, timedelta(minutes=30), rule)
        schedule.next_run_after(START)
        first = (time.perf_counter() - t0) * 1e6
        times = [
            START + AGES[-1][1] + timedelta(seconds=rng.uniform(-30 * 86400, 30 * 86400))
            for _ in range(CALLS)
        ]
        next_us, _ = median_us(schedule.next_run_after, times)
        run_us, _ = median_us(schedule.started_at, times)
        print(f"| {name} | {first:,.0f} | {next_us:.1f} | {run_us:.1f} |")


def main() -> None:
    rng = random.Random(42)
    print(
        "| rule | age | next_run_after µs | walk µs | ratio | started_at µs | walk µs | ratio |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|"
    )
    worst = 0.0
    minutely_year_ratio = 0.0
    for freq, rr_freq, duration in CASES:
        schedule = Schedule(START, duration, RecurrenceRule(frequency=freq))

        def walk_next(t: datetime, rr_freq: int = rr_freq) -> object:
            return rr.rrule(rr_freq, dtstart=START).after(t, inc=True)

        def walk_running(
            t: datetime, rr_freq: int = rr_freq, duration: timedelta = duration
        ) -> bool:
            last = rr.rrule(rr_freq, dtstart=START).before(t, inc=True)
            return last is not None and last + duration > t

        for age_name, age in AGES:
            # Different times around the age, a tenth of them exactly at a run start.
            times = [
                START + age + timedelta(seconds=rng.uniform(-3600, 3600)) for _ in range(CALLS)
            ]
            times[::10] = [schedule.next_run_after(t) or t for t in times[::10]]
            ours_next, next_answers = median_us(schedule.next_run_after, times)
            ours_run, run_answers = median_us(schedule.started_at, times)
            walk_next_us, reps_next, walk_next_answers = walk_median_us(walk_next, times)
            walk_run_us, reps_run, walk_run_answers = walk_median_us(walk_running, times)
            # Same answers as the walk, wherever it was asked.
            assert next_answers[:reps_next] == walk_next_answers
            assert run_answers[:reps_run] == walk_run_answers
            worst = max(worst, ours_next, ours_run)
            if freq is Frequency.MINUTELY and age_name == "1 year":
                minutely_year_ratio = min(walk_next_us / ours_next, walk_run_us / ours_run)
            note_n = f" ({reps_next}x)" if reps_next < WALK_MAX_REPS else ""
            note_r = f" ({reps_run}x)" if reps_run < WALK_MAX_REPS else ""
            cells = [
                freq.name.lower(),
                age_name,
                f"{ours_next:.1f}",
                f"{walk_next_us:,.0f}{note_n}",
                f"{walk_next_us / ours_next:,.0f}x",
                f"{ours_run:.1f}",
                f"{walk_run_us:,.0f}{note_r}",
                f"{walk_run_us / ours_run:,.0f}x",
            ]
            print("| " + " | ".join(cells) + " |", flush=True)
    print(
        f"\nSchedule: worst median {worst:.1f} µs per call (target <= 50); "
        f"minutely at 1 year: {minutely_year_ratio:,.0f}x faster than the walk (target >= 1000x)."
        "\n(Nx): the walk was timed N times only, where it is slow."
    )
    filtered_table(rng)


if __name__ == "__main__":
    main()
