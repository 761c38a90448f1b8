"""realtime.per_loop: one object per running loop, and the objects of closed loops dropped."""

from __future__ import annotations

import asyncio

from playground.realtime.per_loop import PerLoop


def test_each_loop_gets_its_own_object_once_and_closed_loops_are_forgotten() -> None:
    made: list[object] = []
    per_loop = PerLoop(lambda: made.append(object()) or made[-1])

    async def twice() -> tuple[object, object]:
        return per_loop.get(), per_loop.get()

    first_a, first_b = asyncio.run(twice())
    second_a, second_b = asyncio.run(twice())

    assert first_a is first_b and second_a is second_b
    assert first_a is not second_a
    assert len(made) == 2
    assert len(per_loop._made) == 1, "the first, closed loop's object was dropped"
