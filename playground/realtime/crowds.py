"""How many sockets watch each answer, across all web processes, and what that means for how
often the answer is published.

Every delta of an answer becomes one WebSocket frame per socket watching it. A thousand
strangers on one live share link at 50 tokens a second were 50,000 frames a second for one web
process to relay, and their delay grew to seconds. An answer watched by a crowd is therefore
published in fewer, larger deltas: at most STREAM_CROWD_FRAMES_PER_SECOND frames a second over
all of its sockets, however many watch. The text is the same, and seq stays gap-free for every
viewer (the deltas are merged where they are numbered, in the worker), so the page and every
reconnect work as before; what changes is how many tokens one frame carries.

Each socket is a member of its answer's crowd (a sorted set: socket id → lease expiry),
added when it joins, removed when it leaves and renewed with the other leases of its process
(viewers.Tender), so the sockets of a process that died drop out by themselves. Each worker
loop reads the sizes of the crowds of all of its generations about once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import redis
from django.conf import settings

from playground.realtime.per_loop import PerLoop
from playground.realtime.redis_clients import async_redis_client

log = logging.getLogger(__name__)

# However large the crowd, an answer is published at least this often.
LONGEST_FLUSH_INTERVAL = 0.25
CROWD_POLL_SECONDS = 1.0


def crowd_key(message_id: str) -> str:
    return f"pg:crowd:{message_id}"


def flush_interval(watchers: int) -> float:
    """The least time between two deltas of an answer that `watchers` sockets watch."""
    shared = watchers / settings.STREAM_CROWD_FRAMES_PER_SECOND
    return max(settings.STREAM_FLUSH_INTERVAL, min(shared, LONGEST_FLUSH_INTERVAL))


class CrowdWatch:
    """The crowd sizes of every generation running on one event loop, read in one round trip
    about once a second."""

    def __init__(self) -> None:
        self._sizes: dict[str, int] = {}
        self._poller: asyncio.Task[None] | None = None
        self._read_now = asyncio.Event()

    def watch(self, message_id: str) -> None:
        """Read `message_id`'s crowd from now on, the first time at once: a generation that
        starts before a crowd that gathered while it waited in line learns of it at once."""
        self._sizes.setdefault(message_id, 0)
        self._read_now.set()
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    def unwatch(self, message_id: str) -> None:
        self._sizes.pop(message_id, None)
        if not self._sizes:
            self._read_now.set()  # the poller ends now, not a second later

    def size(self, message_id: str) -> int:
        return self._sizes.get(message_id, 0)

    async def read(self) -> None:
        """Read the sizes now."""
        ids = list(self._sizes)
        if not ids:
            return
        now = time.time()
        pipe = async_redis_client().pipeline(transaction=False)
        for message_id in ids:
            pipe.zcount(crowd_key(message_id), now, "+inf")
        try:
            sizes = await pipe.execute()
        except redis.RedisError:
            # The sizes stay as they were read last; a crowd is only about speed.
            log.warning("could not read the crowds' sizes", exc_info=True)
            return
        for message_id, size in zip(ids, sizes, strict=True):
            if message_id in self._sizes:
                self._sizes[message_id] = int(size)

    async def _poll(self) -> None:
        # Ends by itself once nothing is watched: nothing outlives the last generation.
        while self._sizes:
            self._read_now.clear()
            await self.read()
            if not self._sizes:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._read_now.wait(), CROWD_POLL_SECONDS)


_crowd_watches = PerLoop(CrowdWatch)


def crowd_watch() -> CrowdWatch:
    """The running loop's crowd watch."""
    return _crowd_watches.get()
