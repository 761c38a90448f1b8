"""Stop flags: a visitor's Stop is a flag in Redis; each worker loop watches the flags of all
of its generations at once.
"""

from __future__ import annotations

import asyncio
import logging

import redis

from playground.realtime.per_loop import PerLoop
from playground.realtime.redis_clients import (
    async_redis_client,
    redis_client,
)

log = logging.getLogger(__name__)


CANCEL_FLAG_TTL = 60 * 60


def cancel_key(message_id: str) -> str:
    return f"pg:cancel:{message_id}"


def request_cancel(message_id: str) -> None:
    redis_client().set(cancel_key(message_id), "1", ex=CANCEL_FLAG_TTL)


class CancelWatch:
    """Watches the cancel flags of every generation running on one event loop: one read of
    all the flags a few times a second, instead of one round trip per generation."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._watched: dict[str, asyncio.Event] = {}
        self._cancelled: set[str] = set()
        self._interrupted: set[str] = set()  # stopped because the process is shutting down
        self._poller: asyncio.Task[None] | None = None

    def watch(self, message_id: str, wake: asyncio.Event) -> None:
        """Set `wake` when `message_id` is asked to stop (see `cancelled`)."""
        self._watched[message_id] = wake
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    def unwatch(self, message_id: str) -> None:
        self._watched.pop(message_id, None)
        self._cancelled.discard(message_id)
        self._interrupted.discard(message_id)

    def cancelled(self, message_id: str) -> bool:
        return message_id in self._cancelled

    def interrupted(self, message_id: str) -> bool:
        return message_id in self._interrupted

    def interrupt_all(self) -> int:
        """Stop every generation on this loop now (the process is shutting down); how many."""
        for message_id, wake in list(self._watched.items()):
            self._interrupted.add(message_id)
            self._cancelled.add(message_id)
            wake.set()
        return len(self._watched)

    async def _poll(self) -> None:
        # Ends by itself once nothing is watched: nothing outlives the last generation.
        while self._watched:
            await asyncio.sleep(self.interval)
            ids = list(self._watched)
            if not ids:
                break
            try:
                flags = await async_redis_client().mget([cancel_key(i) for i in ids])
            except redis.RedisError:
                log.warning("could not read the cancel flags", exc_info=True)
                continue
            for message_id, flag in zip(ids, flags, strict=True):
                wake = self._watched.get(message_id)
                if flag and wake is not None:
                    self._cancelled.add(message_id)
                    wake.set()


# Its interval is the one its latest caller asks for (cancel_watch).
_cancel_watches = PerLoop(lambda: CancelWatch(interval=0.0))


def cancel_watch(interval: float) -> CancelWatch:
    """The running loop's cancel watch, polling every `interval` seconds."""
    watch = _cancel_watches.get()
    watch.interval = interval
    return watch
