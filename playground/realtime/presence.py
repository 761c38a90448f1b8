"""Presence: when someone was last seen looking at a message (a waiting visitor with nobody
looking for a while has left, see services.dispatching.is_abandoned).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from playground.realtime.redis_clients import (
    async_redis_client,
    redis_client,
)

log = logging.getLogger(__name__)


def seen_key(message_id: str) -> str:
    return f"pg:seen:{message_id}"


PRESENCE_TTL = 24 * 60 * 60


def touch(message_id: str) -> None:
    """The owner looked at the message (a poll, a page load, an open socket's heartbeat)."""
    redis_client().set(seen_key(message_id), f"{time.time():.3f}", ex=PRESENCE_TTL)


async def atouch_many(message_ids: Iterable[str]) -> None:
    """Everyone watching these messages is still here, in one round trip."""
    now = f"{time.time():.3f}"
    pipe = async_redis_client().pipeline(transaction=False)
    for message_id in message_ids:
        pipe.set(seen_key(message_id), now, ex=PRESENCE_TTL)
    await pipe.execute()


def touch_many(message_ids: Iterable[str], at: float | None = None) -> None:
    """`touch` for many messages in one round trip, as of `at` (default: now)."""
    when = f"{time.time() if at is None else at:.3f}"
    pipe = redis_client().pipeline(transaction=False)
    for message_id in message_ids:
        pipe.set(seen_key(message_id), when, ex=PRESENCE_TTL)
    pipe.execute()


def last_seen(message_id: str) -> float | None:
    """When the owner or a viewer was last seen looking at a waiting message, if ever."""
    seen = redis_client().get(seen_key(message_id))
    return float(seen) if seen else None
