"""The live side of a message: its delta log in Redis, its channel-layer group, its cancel flag.

While a message is generating, each coalesced delta is appended to a Redis list (persist) and
only then sent to the message's channel-layer group (publish). A viewer that connects or
reconnects subscribes first and reads the list second, so with the seq numbers it can stitch
replay and live events together with no gap and no duplicate. When the message ends, the log
is copied into the database row and the Redis list expires a while later.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from typing import Any

import redis
import redis.asyncio as aredis
from channels.layers import get_channel_layer
from django.conf import settings
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff

from inference.parser import Delta

# Long enough for a viewer who joined just before the end to finish reading the live log.
FINISHED_LOG_TTL = 15 * 60
CANCEL_FLAG_TTL = 60 * 60


def group_name(message_id: str) -> str:
    return f"msg.{message_id}"


def delta_log_key(message_id: str) -> str:
    return f"pg:deltas:{message_id}"


def cancel_key(message_id: str) -> str:
    return f"pg:cancel:{message_id}"


def delta_event(seq: int, delta: Delta) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "delta",
        "seq": seq,
        "section": delta.section,
        "text": delta.text,
    }
    if delta.index is not None:
        event["index"] = delta.index
    return event


def delta_events(stored: Iterable[dict[str, Any]], after: int = 0) -> list[dict[str, Any]]:
    """The database keeps the same dicts the live log held; replay them from seq after+1."""
    return [event for event in stored if event["seq"] > after]


_sync_client: redis.Redis | None = None


def redis_client() -> redis.Redis:
    """One thread-safe pooled client per process for the synchronous side (views, tasks)."""
    global _sync_client
    if _sync_client is None:
        if not settings.REDIS_URL:
            raise RuntimeError("REDIS_URL is not set: start the stack with `make run`.")
        _sync_client = redis.Redis.from_url(settings.REDIS_URL, health_check_interval=30)
    return _sync_client


_async_clients: dict[asyncio.AbstractEventLoop, aredis.Redis] = {}


def async_redis_client() -> aredis.Redis:
    """One pooled client per event loop (daphne has one; each generation runs its own)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        for stale in [known for known in _async_clients if known.is_closed()]:
            del _async_clients[stale]
        # A blocking pool: a burst of viewers connecting at once waits a moment for a
        # connection instead of failing with "too many connections".
        # Connections outlive a Redis restart in the pool: a command that meets a dead one
        # reconnects and is sent again instead of failing a generation or a viewer.
        pool = aredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=64,
            timeout=20,
            health_check_interval=30,
            retry=AsyncRetry(ExponentialBackoff(cap=1.0, base=0.05), 5),
            retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
        )
        client = aredis.Redis(connection_pool=pool)
        _async_clients[loop] = client
    return client


def read_delta_log(message_id: str, after: int = 0) -> list[dict[str, Any]]:
    raw = redis_client().lrange(delta_log_key(message_id), after, -1)
    return [json.loads(item) for item in raw]


async def aread_delta_log(message_id: str, after: int = 0) -> list[dict[str, Any]]:
    # The list holds seq 1..n at positions 0..n-1, so seq after+1 sits at index `after`.
    raw = await async_redis_client().lrange(delta_log_key(message_id), after, -1)
    return [json.loads(item) for item in raw]


def _watchers_key(message_id: str) -> str:
    return f"pg:watchers:{message_id}"


def _seen_key(message_id: str) -> str:
    return f"pg:seen:{message_id}"


PRESENCE_TTL = 24 * 60 * 60


async def watch_started(message_id: str) -> None:
    client = async_redis_client()
    await client.incr(_watchers_key(message_id))
    await client.expire(_watchers_key(message_id), PRESENCE_TTL)


async def watch_ended(message_id: str) -> None:
    client = async_redis_client()
    await client.decr(_watchers_key(message_id))
    await client.set(_seen_key(message_id), f"{time.time():.3f}", ex=PRESENCE_TTL)


def touch(message_id: str) -> None:
    """The owner looked at the message without a socket (polling, a page load)."""
    redis_client().set(_seen_key(message_id), f"{time.time():.3f}", ex=PRESENCE_TTL)


def last_seen(message_id: str) -> tuple[int, float | None]:
    """(open sockets, time the owner was last seen without one) for a waiting message."""
    watchers, seen = redis_client().mget([_watchers_key(message_id), _seen_key(message_id)])
    return int(watchers or 0), float(seen) if seen else None


def request_cancel(message_id: str) -> None:
    redis_client().set(cancel_key(message_id), "1", ex=CANCEL_FLAG_TTL)


def group_channel(message_id: str) -> str:
    """The Redis pub/sub channel behind a message's group: the name the channel layer
    subscribes viewers to (tests/test_consumers.py holds the layer to it).

    Events are published straight to it with the layer's own serializer, in pipelined round
    trips of the publisher's own: from synchronous code without borrowing the web process's
    event loop (busy with every socket under a rush), and from the generation loop without
    queueing on the layer's single lock-guarded connection.
    """
    prefix = settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix", "asgi")
    return f"{prefix}__group__{group_name(message_id)}"


def wire_message(event: dict[str, Any]) -> bytes:
    return get_channel_layer().serialize({"type": "stream.event", "event": event})


def publish(message_id: str, event: dict[str, Any]) -> None:
    """Send one event to everyone watching a message, from synchronous code."""
    publish_many([(message_id, event)])


def publish_many(events: list[tuple[str, dict[str, Any]]]) -> None:
    """Send each (message id, event) to that message's viewers, all in one round trip."""
    if not events:
        return
    pipe = redis_client().pipeline(transaction=False)
    for message_id, event in events:
        pipe.publish(group_channel(message_id), wire_message(event))
    pipe.execute()


class StreamPublisher:
    """Persists then publishes the events of one generation, inside its event loop.

    A delta is appended to the log and published to its group (`group_channel`) in one
    pipelined round trip on the loop's pooled connections. Settings give the layer the one
    Redis that `REDIS_URL` names, the same one these clients talk to.
    """

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.seq = 0
        self.events: list[dict[str, Any]] = []
        # The loop's pooled client: a generation starts on a warm connection.
        self._redis = async_redis_client()
        self._key = delta_log_key(message_id)
        self._channel = group_channel(message_id)

    async def reset(self) -> None:
        # A retried generation starts its log afresh; viewers only ever saw a log that
        # belonged to an attempt that produced no text (retries happen before any delta).
        await self._redis.delete(self._key)

    async def publish_deltas(self, deltas: list[Delta]) -> None:
        if not deltas:
            return
        events = []
        for delta in deltas:
            self.seq += 1
            events.append(delta_event(self.seq, delta))
        # Appended before published, in one round trip: a viewer who subscribes and then
        # reads the log can miss nothing.
        pipe = self._redis.pipeline(transaction=False)
        pipe.rpush(self._key, *[json.dumps(event) for event in events])
        for event in events:
            pipe.publish(self._channel, wire_message(event))
        await pipe.execute()
        self.events.extend(events)

    async def publish(self, event: dict[str, Any]) -> None:
        await self._redis.publish(self._channel, wire_message(event))

    async def cancel_requested(self) -> bool:
        return bool(await self._redis.exists(cancel_key(self.message_id)))

    async def expire_log(self) -> None:
        await self._redis.expire(self._key, FINISHED_LOG_TTL)

    async def aclose(self) -> None:
        # The pooled client outlives this generation; nothing of its own to close.
        return None
