"""Django's ASGI handler, taking requests through the views a few at a time, and the
process's lifespan (what it does at startup)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase

from playground.realtime import channel_groups

log = logging.getLogger(__name__)


class PacedASGIHandler(ASGIHandler):
    """At most `views_at_once` requests of this process are inside middleware and views.

    Django gives every request a thread of its own for synchronous code, and all of them
    share one interpreter lock. When a rush posts a hundred questions at once, a hundred
    threads took turns on that lock (a turn is 0.1 ms, see apps.py) and on SQLite's write
    lock, so every one of them, the first in line with the rest, finished seconds late, and
    the first wave of answers started late with them (bench/README.md). Waiting
    here costs nothing (no thread exists yet), the turns go in arrival order, and the few
    admitted run at full speed. Bodies are read and responses sent outside, so a slow client
    holds no turn.
    """

    def __init__(self, views_at_once: int) -> None:
        super().__init__()
        self.views_at_once = views_at_once
        self._turns: asyncio.Semaphore | None = None

    async def run_get_response(self, request: HttpRequest) -> HttpResponseBase:
        if self._turns is None:
            # Made here, on the serving loop: one handler serves one process's loop.
            self._turns = asyncio.Semaphore(self.views_at_once)
        async with self._turns:
            return await super().run_get_response(request)


# Startup must not hang on an unreachable Redis: the site serves pages without it, and the
# first viewer's connect subscribes the standing channel instead (consumers.py).
LISTEN_AT_STARTUP_SECONDS = 5.0

AsgiMessage = dict[str, Any]


async def lifespan(
    scope: AsgiMessage,
    receive: Callable[[], Awaitable[AsgiMessage]],
    send: Callable[[AsgiMessage], Awaitable[None]],
) -> None:
    """The ASGI lifespan protocol: at startup the process's channel layer starts listening
    (channel_groups.keep_listening), so that even the first viewer's events are read as they
    come."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await asyncio.wait_for(channel_groups.keep_listening(), LISTEN_AT_STARTUP_SECONDS)
            except Exception as exc:  # any failure: serve anyway, see above
                log.warning("the channel layer could not subscribe at startup: %r", exc)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
