"""The README's seed example runs as shown against the embedded server."""

from __future__ import annotations

import functools
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_dispatch
from trio_dispatch import TargetIds, open_client
from trio_dispatch.server import open_dispatch_server
from trio_dispatch.testing import WallClock

README = Path(__file__).resolve().parent.parent / "README.md"


def seed_example() -> str:
    text = README.read_text()
    match = re.search(r"<!-- seed-example:.*?-->\n```python\n(.*?)```", text, re.DOTALL)
    assert match is not None, "README.md lost its seed example block"
    return match.group(1)


class Actor:
    """Records what the example asks of it, with the wall-clock time."""

    def __init__(self, clock: WallClock) -> None:
        self.clock = clock
        self.is_running = False
        self.calls: list[tuple[datetime, str, dict[str, Any]]] = []

    def start(self, **kwargs: Any) -> None:
        self.is_running = True
        self.calls.append((self.clock(), "start", kwargs))

    def reconfigure(self, **kwargs: Any) -> None:
        self.calls.append((self.clock(), "reconfigure", kwargs))

    def stop(self) -> None:
        self.is_running = False
        self.calls.append((self.clock(), "stop", {}))


async def test_seed_example_drives_an_actor(
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = WallClock()
    t0 = clock()
    namespace: dict[str, Any] = {}
    exec(compile(seed_example(), str(README), "exec"), namespace)
    # The one change to the code as shown: the dispatcher reads the test's wall clock,
    # which follows trio's fake clock.
    namespace["open_dispatcher"] = functools.partial(trio_dispatch.open_dispatcher, clock=clock)
    actor = Actor(clock)
    with trio.fail_after(3600):
        async with open_dispatch_server(keys=["some-key"], clock=clock) as server:
            monkeypatch.setenv("DISPATCH_API_URL", server.url)
            monkeypatch.setenv("DISPATCH_API_KEY", "some-key")
            async with open_client(server_url=server.url, key="some-key", clock=clock) as client:
                demo = await client.create(
                    1,
                    type="DEMO_TYPE",
                    start_time=t0 + timedelta(minutes=1),
                    duration=timedelta(minutes=5),
                    target=TargetIds.of(4, 5),
                    payload={"power_w": 1500},
                )
                await client.create(
                    1, type="OTHER", start_time=t0 + timedelta(minutes=1), duration=None
                )
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(namespace["run"], actor)
                    await trio.sleep_until(clock.trio_time(t0 + timedelta(minutes=3)))
                    await client.update(1, demo.id, payload={"power_w": 500})
                    await trio.sleep_until(clock.trio_time(t0 + timedelta(minutes=10)))
                    nursery.cancel_scope.cancel()

    start = t0 + timedelta(minutes=1)
    until = t0 + timedelta(minutes=6)
    params = {"components": TargetIds.of(4, 5), "dry_run": False, "until": until}
    assert actor.calls == [
        (start, "start", {**params, "run_parameters": {"power_w": 1500.0}}),
        (
            t0 + timedelta(minutes=3),
            "reconfigure",
            {**params, "run_parameters": {"power_w": 500.0}},
        ),
        (until, "stop", {}),
    ]
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"Executing dispatch {demo.id}, due on {start}"] * 2


def test_readme_managed_example_is_the_one_the_docs_test_runs() -> None:
    def block(path: Path) -> str:
        match = re.search(
            r"<!-- managed-example:.*?-->\n```python\n(.*?)```", path.read_text(), re.DOTALL
        )
        assert match is not None, f"{path.name} lost its managed-example block"
        return match.group(1)

    assert block(README) == block(README.parent / "docs" / "managed.md")
