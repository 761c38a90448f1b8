"""The line's events, read once per web process and handed to each waiting viewer's socket.

Every viewer of a waiting answer is told its place out of one event that holds the whole line
(services/line.py: `line_event`). When each socket joined the line's channel-layer group, each
got its own copy of every event and decoded all of it: with n waiting, n decodings of n places
per event, and each socket kept the last event it read until the next one came (36 KiB per
socket with 300 waiting, so the memory per waiting visitor grew with the line). Here one
channel per process, in the group, decodes each event once; each waiting socket has a mailbox
that holds the latest event (shared by all of them, never changed), and picks its own place out
of it when it reads the mailbox.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.layers import get_channel_layer

from playground.realtime.channel_groups import LINE_GROUP
from playground.realtime.per_loop import PerLoop

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0


class Mailbox:
    """The latest line event for one socket: a newer one replaces one not yet taken."""

    def __init__(self) -> None:
        self._event: dict[str, Any] | None = None
        self._arrived = asyncio.Event()

    def offer(self, event: dict[str, Any]) -> None:
        self._event = event
        self._arrived.set()

    def clear(self) -> None:
        self._event = None
        self._arrived.clear()

    async def take(self) -> dict[str, Any]:
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            event, self._event = self._event, None
            if event is not None:
                return event


class _Listener:
    """One event loop's channel in the line's group, and the mailboxes it fills."""

    def __init__(self) -> None:
        self.mailboxes: set[Mailbox] = set()
        self.reading: asyncio.Task[None] | None = None
        self.subscribing = asyncio.Lock()

    async def listen(self) -> None:
        async with self.subscribing:
            if self.reading is not None:
                return
            layer = get_channel_layer()
            channel = await layer.new_channel("line.")
            await layer.group_add(LINE_GROUP, channel)
            self.reading = asyncio.ensure_future(self._read(layer, channel))

    async def _read(self, layer: Any, channel: str) -> None:
        while True:
            try:
                message = await layer.receive(channel)
            except Exception:
                # The layer's reader reconnects to Redis by itself; this channel stays
                # subscribed meanwhile.
                log.exception("reading the line's events failed; trying again")
                await asyncio.sleep(RETRY_SECONDS)
                continue
            event = message.get("event")
            if isinstance(event, dict):
                for mailbox in list(self.mailboxes):
                    mailbox.offer(event)


_listeners = PerLoop(_Listener)


async def join(mailbox: Mailbox) -> None:
    """Fill `mailbox` with the line's events from now on. The process's first joiner waits
    for its channel to be in the group (raises as the channel layer does while Redis is down:
    the next joiner tries again)."""
    listener = _listeners.get()
    await listener.listen()
    listener.mailboxes.add(mailbox)


def leave(mailbox: Mailbox) -> None:
    _listeners.get().mailboxes.discard(mailbox)
    mailbox.clear()
