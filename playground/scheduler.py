"""Admission to the GPU backends: slot leases, backend choice and the ETA model.

The database holds the line of queued messages; Redis holds, per backend, a sorted set of slot
leases (member = message id, score = expiry time). A message is *dispatched* when a lease is
taken for it, atomically in a Lua script that also picks the least-loaded healthy backend, so
the number of in-flight generations per backend never exceeds its limit however many web and
worker processes race. A running generation renews its lease; when its worker dies the lease
simply expires and the slot comes back.
"""

from __future__ import annotations

import heapq
import json
import logging
import time
from dataclasses import dataclass

import httpx
from django.conf import settings

from inference.backends import health_paths, http_url, info_from_payload, info_path
from inference.client import BackendError, shared_ssl_context
from playground import controls
from playground.realtime import redis_clients

log = logging.getLogger(__name__)

INFO_CACHE_SECONDS = 60
# A backend marked down stays out until a probe (every reconcile) finds it healthy again; the
# expiry only guards against a flag outliving every reconciler.
DOWN_SECONDS = 300
DEFAULT_SERVICE_SECONDS = 30.0
SERVICE_SAMPLES = 50

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


def _info_key(backend: str) -> str:
    return f"pg:backend:info:{backend}"


def _health_key(backend: str) -> str:
    return f"pg:backend:down:{backend}"


def backends() -> list[str]:
    return list(settings.TGI_URLS)


def public_name(backend: str) -> str | None:
    """How visitors and share viewers see a backend: its place in TGI_URL. Its address is
    for operators (the dashboard), never for the public."""
    if not backend:
        return None
    urls = backends()
    return f"backend-{urls.index(backend) + 1}" if backend in urls else "backend"


def concurrency_limit(backend: str) -> int:
    return _limit_with(controls.concurrency_override(backend))


def _limit_with(override: int | None) -> int:
    # An operator's override (set on /ops/) wins over the setting, in every process at once.
    return override if override is not None else settings.GENERATION_CONCURRENCY


def capacity() -> int:
    return sum(slots.limit for slots in in_rotation())


def mark_down(backend: str, reason: str) -> None:
    """Take a backend out of rotation until a later probe finds it healthy again."""
    log.warning("backend %s leaves rotation: %s", backend, reason)
    redis_clients.redis_client().set(_health_key(backend), reason, ex=DOWN_SECONDS)


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
    pipe.mget([_health_key(url) for url in urls])
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


# A server that answered /health with 404 is up; its model list only confirms it, and
# llama-cpp-python answers every route after the running generation: do not wait long.
BUSY_MODEL_LIST_SECONDS = 2.0


def _backend_get(backend: str, path: str, timeout: float | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {settings.TGI_API_KEY}"} if settings.TGI_API_KEY else {}
    return httpx.get(
        http_url(backend) + path,
        headers=headers,
        timeout=settings.TGI_CONNECT_TIMEOUT if timeout is None else timeout,
        verify=shared_ssl_context(),
    )


def probe(backend: str) -> bool:
    """Health-check a backend: GET /health. An OpenAI-compatible server without /health (404,
    as llama-cpp-python's) is checked by its model list instead; when that is slow to answer,
    the server is busy generating (llama-cpp-python serves one request at a time), not down."""
    try:
        response = _backend_get(backend, "/health")
        if response.status_code in (404, 405) and len(health_paths(backend)) > 1:
            try:
                response = _backend_get(
                    backend,
                    health_paths(backend)[1],
                    timeout=min(settings.TGI_CONNECT_TIMEOUT, BUSY_MODEL_LIST_SECONDS),
                )
            except httpx.TimeoutException:
                response = httpx.Response(200)  # it answered /health: up, and busy
    except httpx.HTTPError as exc:
        mark_down(backend, f"health check failed: {exc.__class__.__name__}")
        return False
    if response.status_code != 200:
        mark_down(backend, f"health check answered {response.status_code}")
        return False
    redis_clients.redis_client().delete(_health_key(backend))
    return True


def backend_info(backend: str) -> dict:
    """A backend's model and limits in TGI's /info keys (an OpenAI-compatible server's
    /v1/models, mapped), cached in Redis so each generation need not ask."""
    client = redis_clients.redis_client()
    cached = client.get(_info_key(backend))
    if cached:
        return json.loads(cached)
    path = info_path(backend)
    try:
        response = _backend_get(backend, path)
        response.raise_for_status()
        info = info_from_payload(backend, response.json())
    except (httpx.HTTPError, ValueError, BackendError) as exc:
        log.warning("could not read %s%s: %s", backend, path, exc)
        return {}
    if not info:
        return {}
    client.set(_info_key(backend), json.dumps(info), ex=INFO_CACHE_SECONDS)
    return info


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


def renew_slot(backend: str, message_id: str) -> None:
    # Re-adding also restores a lease lost with a Redis restart: the worker is alive and owns it.
    redis_clients.redis_client().zadd(
        slot_key(backend), {message_id: time.time() + lease_seconds()}
    )


async def arenew_slot(backend: str, message_id: str) -> None:
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


# --- the wait estimate ------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueSnapshot:
    running_elapsed: list[float]  # seconds each in-flight generation has been running
    capacity: int
    mean_service: float  # recent mean seconds a generation holds a slot


def wait_estimates(snapshot: QueueSnapshot, positions: int) -> list[float]:
    """Seconds until each of the first `positions` in line would start.

    Each slot frees when its generation is expected to end (mean service time, never less than
    a little from now for the ones already overdue); then the line advances one by one onto the
    earliest free slot. This is the M/G/c picture without the statistics: honest enough while
    answers are of similar length, and it reacts at once to what is actually running.
    """
    if snapshot.capacity <= 0:
        return []
    mean = max(snapshot.mean_service, 0.1)
    free_at = [max(mean - elapsed, mean * 0.1) for elapsed in snapshot.running_elapsed]
    free_at = sorted(free_at)[: snapshot.capacity]
    free_at += [0.0] * (snapshot.capacity - len(free_at))
    heapq.heapify(free_at)
    estimates = []
    for _ in range(positions):
        start = heapq.heappop(free_at)
        estimates.append(start)
        heapq.heappush(free_at, start + mean)
    return estimates
