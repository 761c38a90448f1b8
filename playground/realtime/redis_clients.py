"""The process's Redis clients: one pooled synchronous client (views, tasks) and one pooled
asyncio client per event loop; and what an unreachable Redis raises.
"""

from __future__ import annotations

import logging

import redis
import redis.asyncio as aredis
from django.conf import settings
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff

from playground.realtime.per_loop import PerLoop

log = logging.getLogger(__name__)


_sync_client: redis.Redis | None = None


def redis_client() -> redis.Redis:
    """One thread-safe pooled client per process for the synchronous side (views, tasks)."""
    global _sync_client
    if _sync_client is None:
        if not settings.REDIS_URL:
            raise RuntimeError("REDIS_URL is not set: start the stack with `make run`.")
        _sync_client = redis.Redis.from_url(settings.REDIS_URL, health_check_interval=30)
    return _sync_client


def _new_async_client() -> aredis.Redis:
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
    return aredis.Redis(connection_pool=pool)


_async_clients = PerLoop(_new_async_client)


def async_redis_client() -> aredis.Redis:
    """One pooled client per event loop (a web process has one; each generation runs its own)."""
    return _async_clients.get()


# What a Redis that cannot be reached raises: refused, reset, or too slow to answer.
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, OSError)
