"""The line's events, read once per process (playground/realtime/line_listener.py), over the
real Redis channel layer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from playground.realtime import channel_groups, line_listener
from playground.realtime.line_listener import Mailbox


def line_event(as_of: float, places: dict[str, int]) -> dict[str, Any]:
    return {
        "type": "line",
        "as_of": as_of,
        "on_hold": False,
        "places": {message_id: [place, place * 2.0] for message_id, place in places.items()},
    }


async def nothing_to_take(mailbox: Mailbox, within: float) -> bool:
    try:
        async with asyncio.timeout(within):
            await mailbox.take()
    except TimeoutError:
        return True
    return False


def test_a_mailbox_holds_only_the_latest_event() -> None:
    async def scenario() -> tuple[dict, bool]:
        mailbox = Mailbox()
        mailbox.offer(line_event(1, {"a": 3}))
        mailbox.offer(line_event(2, {"a": 2}))
        latest = await mailbox.take()
        return latest, await nothing_to_take(mailbox, 0.05)

    latest, then_empty = asyncio.run(scenario())
    assert latest["as_of"] == 2
    assert then_empty


def test_a_cleared_mailbox_has_nothing_to_take() -> None:
    async def scenario() -> bool:
        mailbox = Mailbox()
        mailbox.offer(line_event(1, {"a": 3}))
        mailbox.clear()
        return await nothing_to_take(mailbox, 0.05)

    assert asyncio.run(scenario())


def test_every_waiting_socket_gets_the_one_event_the_process_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> tuple[list[dict], int]:
        mailboxes = [Mailbox() for _ in range(50)]
        for mailbox in mailboxes:
            await line_listener.join(mailbox)
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        decoded = 0
        deserialize = layer.deserialize

        def counting(message: bytes) -> Any:
            nonlocal decoded
            decoded += 1
            return deserialize(message)

        monkeypatch.setattr(layer, "deserialize", counting)
        places = {f"m{n}": n + 1 for n in range(50)}
        await asyncio.to_thread(channel_groups.publish_to_line, line_event(7.0, places))
        async with asyncio.timeout(3):
            heard = [await mailbox.take() for mailbox in mailboxes]
        for mailbox in mailboxes:
            line_listener.leave(mailbox)
        return heard, decoded

    heard, decoded = asyncio.run(scenario())

    assert heard[0]["places"]["m49"] == [50, 100.0]
    assert all(event is heard[0] for event in heard), "one decoded event, shared"
    assert decoded == 1


def test_a_socket_that_left_the_line_hears_no_more_of_it() -> None:
    async def scenario() -> tuple[dict, bool]:
        staying, leaving = Mailbox(), Mailbox()
        await line_listener.join(staying)
        await line_listener.join(leaving)
        line_listener.leave(leaving)
        await asyncio.to_thread(channel_groups.publish_to_line, line_event(1.0, {"a": 1}))
        async with asyncio.timeout(3):
            heard = await staying.take()
        return heard, await nothing_to_take(leaving, 0.2)

    heard, left_in_silence = asyncio.run(scenario())
    assert heard["places"] == {"a": [1, 2.0]}
    assert left_in_silence
