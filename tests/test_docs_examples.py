"""The example tests shown in docs/ run as written."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import trio

DOCS = Path(__file__).resolve().parent.parent / "docs"


def example(page: str, marker: str) -> dict[str, Any]:
    text = (DOCS / page).read_text()
    match = re.search(rf"<!-- {marker}:.*?-->\n```python\n(.*?)```", text, re.DOTALL)
    assert match is not None, f"docs/{page} lost its {marker} block"
    namespace: dict[str, Any] = {}
    exec(compile(match.group(1), str(DOCS / page), "exec"), namespace)
    return namespace


async def test_testing_page_example(autojump_clock: trio.testing.MockClock) -> None:
    namespace = example("testing.md", "example-test")
    started = time.perf_counter()
    with trio.fail_after(31 * 86400):
        await namespace["test_a_daily_dispatch_runs_every_day"](autojump_clock)
    assert time.perf_counter() - started < 1.0
