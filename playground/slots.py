"""Slot leases: the GPU throttle.

The database holds the line of queued messages; Redis holds, per backend, a sorted set of slot
leases (member = message id, score = expiry time). A message is *dispatched* when a lease is
taken for it, atomically in a Lua script that also picks the least-loaded healthy backend, so
the number of in-flight generations per backend never exceeds its limit however many web and
worker processes race. A running generation renews its lease; when its worker dies the lease
simply expires and the slot comes back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings

from playground import controls
from playground.realtime import redis_clients
from playground.rotation import backends, health_key

_ACQUIRE = """
-- KEYS[1]: the mark of intact leases; KEYS[2..]: slot sets, one per candidate backend.
-- ARGV: now, expiry, member, limit per slot set...
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local now = tonumber(ARGV[1])
local best, best_load = -1, nil
for i = 2, #KEYS do
  local key = KEYS[i]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local limit = tonumber(ARGV[2 + i])
  local used = redis.call('ZCARD', key)
  if limit > 0 and used < limit then
    local load = used / limit
    if best_load == nil or load < best_load then best, best_load = i, load end
  end
end
if best < 0 then return 0 end
redis.call('ZADD', KEYS[best], ARGV[2], ARGV[3])
return best - 1
"""


# Set once the leases in Redis are known to be complete. A Redis that restarted without its
# data has lost every lease of the answers being written, and would hand their slots out
# again: twice the configured concurrency on the GPUs. Until this mark is back, nobody is
# given a slot (LeasesLost); the leases are rebuilt from the database first.
LEASES_INTACT_KEY = "pg:slots:intact"


class LeasesLost(Exception):
    """Redis has lost its data: restore the leases from the database before leasing."""


def lease_seconds() -> int:
    return settings.SLOT_LEASE_SECONDS


def slot_key(backend: str) -> str:
    return f"pg:slots:{backend}"


def _limit_with(override: int | None) -> int:
    # An operator's override (set on /ops/) wins over the setting, in every process at once.
    return override if override is not None else settings.GENERATION_CONCURRENCY


def capacity() -> int:
    return sum(slots.limit for slots in in_rotation())


@dataclass(frozen=True)
class BackendSlots:
    url: str
    limit: int
    in_use: int | None  # leases not yet expired; None when not asked for


def in_rotation(
    *, count_leases: bool = False, include_disabled: bool = False
) -> list[BackendSlots]:
    """The backends in rotation (answering health checks and, unless `include_disabled`, not
    disabled by an operator) with their slot limits and leases in use, read in one round trip:
    every submission of a rush asks, and dispatch asks again for the lease. Counting leases
    raises LeasesLost when Redis lost them (they would all look free)."""
    urls = backends()
    if not urls:
        return []
    pipe = redis_clients.redis_client().pipeline(transaction=False)
    pipe.mget([health_key(url) for url in urls])
    pipe.smembers(controls.DISABLED_KEY)
    pipe.hmget(controls.CONCURRENCY_KEY, urls)
    if count_leases:
        pipe.exists(LEASES_INTACT_KEY)
        now = time.time()
        for url in urls:
            pipe.zcount(slot_key(url), now, "+inf")
    down, disabled, overrides, *in_use = pipe.execute()
    if count_leases and not in_use.pop(0):
        raise LeasesLost()
    disabled_urls = set() if include_disabled else controls.disabled_from(disabled)
    counts = in_use if count_leases else [None] * len(urls)
    return [
        BackendSlots(
            url=url,
            limit=_limit_with(controls.override_from(override)),
            in_use=None if used is None else int(used),
        )
        for url, flag, override, used in zip(urls, down, overrides, counts, strict=True)
        if flag is None and url not in disabled_urls
    ]


def healthy_backends(*, include_disabled: bool = False) -> list[str]:
    """Backends in rotation: answering health checks and not disabled by an operator."""
    return [slots.url for slots in in_rotation(include_disabled=include_disabled)]


def acquire_slot(message_id: str) -> str | None:
    """Lease a slot on the least-loaded healthy backend for a message; None if all are full.
    Raises LeasesLost when Redis has lost its data since the leases were last restored."""
    candidates = in_rotation()
    if not candidates:
        return None
    now = time.time()
    script = redis_clients.redis_client().register_script(_ACQUIRE)
    chosen = int(
        script(
            keys=[LEASES_INTACT_KEY, *[slot_key(slots.url) for slots in candidates]],
            args=[now, now + lease_seconds(), message_id, *[slots.limit for slots in candidates]],
        )
    )
    if chosen < 0:
        raise LeasesLost()
    return candidates[chosen - 1].url if chosen > 0 else None


def leases_intact() -> bool:
    return bool(redis_clients.redis_client().exists(LEASES_INTACT_KEY))


def restore_leases(holders: list[tuple[str, str]]) -> None:
    """Lease a slot again for each (message id, backend) that holds one in the database, then
    mark the leases intact. A worker still writing the answer renews its lease as before; one
    whose worker is gone expires like any other."""
    expiry = time.time() + lease_seconds()
    pipe = redis_clients.redis_client().pipeline(transaction=True)
    for message_id, backend in holders:
        if backend:
            pipe.zadd(slot_key(backend), {message_id: expiry})
    pipe.set(LEASES_INTACT_KEY, "1")
    pipe.execute()


def any_free_slot() -> bool:
    """Whether some healthy backend has a slot free right now: a cheap look that spares a
    rush's every submission the dispatch lock and the line's query while all slots are busy.
    Raises LeasesLost when Redis has lost its data since the leases were last restored."""
    return any((slots.in_use or 0) < slots.limit for slots in in_rotation(count_leases=True))


async def arenew_slot(backend: str, message_id: str) -> None:
    # Re-adding also restores a lease lost with a Redis restart: the worker is alive and owns it.
    await redis_clients.async_redis_client().zadd(
        slot_key(backend), {message_id: time.time() + lease_seconds()}
    )


async def arelease_slot(backend: str, message_id: str) -> None:
    await redis_clients.async_redis_client().zrem(slot_key(backend), message_id)


def release_slot(backend: str, message_id: str) -> None:
    if backend:
        redis_clients.redis_client().zrem(slot_key(backend), message_id)


def holds_slot(backend: str, message_id: str) -> bool:
    score = redis_clients.redis_client().zscore(slot_key(backend), message_id)
    return score is not None and score > time.time()


def slots_in_use(backend: str) -> int:
    client = redis_clients.redis_client()
    key = slot_key(backend)
    client.zremrangebyscore(key, "-inf", time.time())
    return int(client.zcard(key))
