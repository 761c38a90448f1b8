"""Django's ASGI handler, taking requests through the views a few at a time, and the
process's lifespan (what it does at startup)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

from playground.realtime import channel_groups

log = logging.getLogger(__name__)

AsgiMessage = dict[str, Any]
Receive = Callable[[], Awaitable[AsgiMessage]]
Send = Callable[[AsgiMessage], Awaitable[None]]


class PacedASGIHandler(ASGIHandler):
    """At most `views_at_once` requests of this process are being handled by Django.

    Django gives every request a thread of its own for synchronous code, and all of them
    share one interpreter lock. When a rush posts a hundred questions at once, a hundred
    threads took turns on that lock (a turn is 0.1 ms, see apps.py) and on SQLite's write
    lock, so every one of them, the first in line with the rest, finished seconds late, and
    the first wave of answers started late with them (bench/README.md). The turn is taken
    before Django starts on the request: its request_started signal already makes the
    request's thread, and a thousand requests waiting inside Django held a thousand threads
    (685 KiB of the web process per waiting visitor in a launch rush). Waiting here costs no
    thread, the turns go in arrival order, and the few admitted run at full speed. The body is
    read before the turn (up to DATA_UPLOAD_MAX_MEMORY_SIZE), so a client slow to send it
    holds none.

    Each turn has a thread that stays: Django would start a new thread for every request (and
    one more to join it afterwards), 8 % of the web process's time when a thousand requests
    came at once (bench/README.md). A request's synchronous code still runs on one thread, the
    turn's, as Django's thread-sensitive mode requires.
    """

    def __init__(self, views_at_once: int) -> None:
        super().__init__()
        self.views_at_once = views_at_once
        self._turns: asyncio.Semaphore | None = None
        self._idle_threads: list[ThreadPoolExecutor] = []

    async def handle(self, scope: AsgiMessage, receive: Receive, send: Send) -> None:
        if self._turns is None:
            # Made here, on the serving loop: one handler serves one process's loop.
            self._turns = asyncio.Semaphore(self.views_at_once)
            self._idle_threads = [
                ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"view-turn-{turn}")
                for turn in range(self.views_at_once)
            ]
        early, receive = await read_ahead(receive, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        if early and early[-1]["type"] == "http.disconnect":
            return  # the client left while sending: nothing to answer
        async with self._turns:
            # A turn held means a thread idle: there are as many threads as turns.
            thread = self._idle_threads.pop()
            try:
                async with ThreadSensitiveContext(executor=thread):
                    await super().handle(scope, receive, send)
            finally:
                self._idle_threads.append(thread)


async def read_ahead(receive: Receive, limit: int | None) -> tuple[list[AsgiMessage], Receive]:
    """The request's body messages, read now (up to `limit` bytes; more is left to be read
    later), and a `receive` that hands them out again before reading on."""
    early: list[AsgiMessage] = []
    size = 0
    while limit is None or size <= limit:
        message = await receive()
        early.append(message)
        if message["type"] != "http.request" or not message.get("more_body"):
            break
        size += len(message.get("body", b""))
    waiting = list(early)

    async def replay() -> AsgiMessage:
        return waiting.pop(0) if waiting else await receive()

    return early, replay


# Startup must not hang on an unreachable Redis: the site serves pages without it, and the
# first viewer's connect subscribes the standing channel instead (consumers.py).
LISTEN_AT_STARTUP_SECONDS = 5.0


async def lifespan(
    scope: AsgiMessage,
    receive: Receive,
    send: Send,
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
