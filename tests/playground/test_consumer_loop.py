"""realtime.consumer_loop: every message of every source dispatched, one at a time, in the
order each source gave them; a dispatch that raises stops the reads and is raised."""

from __future__ import annotations

import asyncio

import pytest
from channels.exceptions import StopConsumer

from playground.realtime.consumer_loop import dispatch_each


def test_every_message_of_every_source_is_dispatched_one_at_a_time_in_order() -> None:
    async def scenario() -> tuple[list[str], int]:
        socket: asyncio.Queue[str] = asyncio.Queue()
        layer: asyncio.Queue[str] = asyncio.Queue()
        dispatched: list[str] = []
        busy = most_at_once = 0

        async def dispatch(message: str) -> None:
            nonlocal busy, most_at_once
            busy += 1
            most_at_once = max(most_at_once, busy)
            await asyncio.sleep(0.001)  # a handler that awaits: the other source must wait
            dispatched.append(message)
            busy -= 1
            if message == "stop":
                raise StopConsumer()

        for i in range(20):
            layer.put_nowait(f"delta {i}")
            if i % 5 == 0:
                socket.put_nowait(f"frame {i}")
        with pytest.raises(StopConsumer):
            loop = asyncio.ensure_future(dispatch_each([socket.get, layer.get], dispatch))
            await asyncio.sleep(0.2)
            socket.put_nowait("stop")
            await loop
        return dispatched, most_at_once

    dispatched, most_at_once = asyncio.run(scenario())

    assert most_at_once == 1
    assert [m for m in dispatched if m.startswith("delta")] == [f"delta {i}" for i in range(20)]
    assert [m for m in dispatched if m.startswith("frame")] == [
        f"frame {i}" for i in (0, 5, 10, 15)
    ]
    assert dispatched[-1] == "stop"


def test_a_dispatch_that_raises_stops_the_other_sources_reads() -> None:
    async def scenario() -> list[str]:
        cancelled: list[str] = []

        def source(name: str, first: str | None) -> object:
            given = False

            async def read() -> str:
                nonlocal given
                if first is not None and not given:
                    given = True
                    return first
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    cancelled.append(name)
                    raise
                return ""

            return read

        async def dispatch(message: str) -> None:
            raise RuntimeError(message)

        with pytest.raises(RuntimeError, match="broken"):
            await dispatch_each([source("socket", None), source("layer", "broken")], dispatch)
        return cancelled

    # The layer's pump raised and reads no more; the socket's pending read is cancelled.
    assert asyncio.run(scenario()) == ["socket"]
