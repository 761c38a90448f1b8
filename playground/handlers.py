"""Django's ASGI handler, taking requests through the views a few at a time."""

from __future__ import annotations

import asyncio

from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase


class PacedASGIHandler(ASGIHandler):
    """At most `views_at_once` requests of this process are inside middleware and views.

    Django gives every request a thread of its own for synchronous code, and all of them
    share one interpreter lock. When a rush posts a hundred questions at once, a hundred
    threads took turns on that lock (a turn is 0.1 ms, see apps.py) and on SQLite's write
    lock, so every one of them, the first in line with the rest, finished seconds late: the
    bench saw the first wave of answers start 1.5 s after their rows were written. Waiting
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
