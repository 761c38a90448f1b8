"""Operational numbers, kept in Redis so that every web and worker process adds to the same ones.

Events are recorded where they happen (admission in services, the end of every message in
Message._transition through the message_finished signal, WebSocket connects in the consumer)
into:

- ten-second buckets (a hash each, expiring after two hours) that the dashboard sums over its
  windows: admitted and rejected by reason, finished by status and code, tokens;
- raw samples of queue wait, time to first token and duration per bucket (a capped list each),
  for exact percentiles over the last minutes;
- cumulative totals (one hash, never reset) for Prometheus counters and histograms, which must
  only ever go up;
- per-process WebSocket counts with a heartbeat, so a process that dies stops counting.

A sampler (Celery beat, `playground.tasks.sample_metrics`, see ops/dashboard.py) appends
gauges to a one-hour series for the dashboard's charts: a sorted set by time, trimmed to the
hour at every write and expiring an hour after the last one. Being in Redis, not in a process,
it outlives restarts of web and worker processes (a stopped beat leaves a gap) and survives a
Redis restart as far as Redis keeps its data (the compose file's append-only file does; the
dev stack's embedded Redis keeps nothing). Recording never raises: the numbers must not break
the product. This module imports no part of the playground that records into it
(services, the consumer), so that they may import it.

The dashboard reads the windows, percentiles and series here; /metrics reads the totals
(ops/prometheus.py).
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import json
import logging
import math
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import redis

from playground.realtime import redis_clients

if TYPE_CHECKING:
    from playground.models import Message

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

BUCKET_SECONDS = 10
BUCKET_TTL = 2 * 60 * 60
RATE_WINDOW = 60  # "per minute" tiles: the current bucket and the five before it
PERCENTILE_WINDOW = 5 * 60
SAMPLES_PER_BUCKET = 500  # beyond this, a bucket keeps its latest samples only
SERIES_SECONDS = 60 * 60
SAMPLE_INTERVAL = 5
WS_HEARTBEAT_SECONDS = 15
WS_HEARTBEAT_TTL = 60

# Upper bounds of the Prometheus histogram buckets, in seconds (+Inf is implied).
HISTOGRAMS: dict[str, tuple[float, ...]] = {
    "wait": (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
    "ttft": (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
    "duration": (1, 2, 5, 10, 20, 30, 60, 120, 300),
}

TOTALS_KEY = "pg:m:total"
SERIES_KEY = "pg:m:series"
SAMPLE_LOCK_KEY = "pg:m:sample-lock"
WS_KEY = "pg:m:ws"

# Tests pin the clock to make windows exact.
clock: Callable[[], float] = time.time


def _bucket(t: float) -> int:
    return int(t // BUCKET_SECONDS) * BUCKET_SECONDS


def _bucket_key(start: int) -> str:
    return f"pg:m:b:{start}"


def _samples_key(kind: str, start: int) -> str:
    return f"pg:m:s:{kind}:{start}"


def _window_starts(seconds: int, now: float) -> list[int]:
    current = _bucket(now)
    count = max(1, seconds // BUCKET_SECONDS)
    return [current - BUCKET_SECONDS * i for i in range(count)]


# --- recording ------------------------------------------------------------------------------


def _record(
    counts: dict[str, int],
    samples: dict[str, float] | None = None,
    pipe: redis.client.Pipeline | None = None,
) -> None:
    """`pipe`: a caller's pipeline to add the writes to (the caller sends it, and its errors
    are the caller's); else they are sent now, and an error is only logged."""
    if pipe is not None:
        _add_writes(pipe, counts, samples)
        return
    try:
        pipe = redis_clients.redis_client().pipeline(transaction=False)
        _add_writes(pipe, counts, samples)
        pipe.execute()
    except redis.RedisError:
        log.warning("could not record metrics %s", counts, exc_info=True)


def _add_writes(
    pipe: redis.client.Pipeline, counts: dict[str, int], samples: dict[str, float] | None
) -> None:
    start = _bucket(clock())
    key = _bucket_key(start)
    for name, amount in counts.items():
        pipe.hincrby(key, name, amount)
        pipe.hincrby(TOTALS_KEY, name, amount)
    pipe.expire(key, BUCKET_TTL)
    for kind, value in (samples or {}).items():
        samples_key = _samples_key(kind, start)
        pipe.lpush(samples_key, f"{value:.4f}")
        pipe.ltrim(samples_key, 0, SAMPLES_PER_BUCKET - 1)
        pipe.expire(samples_key, PERCENTILE_WINDOW + 2 * BUCKET_SECONDS)
        # bisect_left: the first bound >= value, i.e. the bucket with value <= le.
        pipe.hincrby(TOTALS_KEY, f"hist:{kind}:{bisect.bisect_left(HISTOGRAMS[kind], value)}")
        pipe.hincrbyfloat(TOTALS_KEY, f"hist:{kind}:sum", value)


def record_admitted(pipe: redis.client.Pipeline | None = None) -> None:
    _record({"admitted": 1}, pipe=pipe)


def record_rejected(code: str) -> None:
    _record({f"rejected:{code}": 1})


def counting_refusals(check: Callable[P, R]) -> Callable[P, R]:
    """Count each refusal an admission check raises, by its code (PlaygroundError.code)."""

    @functools.wraps(check)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return check(*args, **kwargs)
        except Exception as exc:
            code = getattr(exc, "code", None)
            if isinstance(code, str):
                record_rejected(code)
            raise

    return wrapper


def _seconds_between(start: Any, end: Any) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def count_finished_message(sender: type, message: Message, **kwargs: Any) -> None:
    """A message reached its final status (done, error or cancelled, with its code): the
    receiver of models.message_finished."""
    if message.role != "assistant":
        return
    counts = {f"finished:{message.status}:{message.error_code or ''}": 1}
    if message.tokens:
        counts["tokens"] = int(message.tokens)
    samples: dict[str, float] = {}
    for kind, start, end in (
        ("wait", message.created, message.started_at),
        ("ttft", message.started_at, message.first_token_at),
        ("duration", message.started_at, message.finished_at),
    ):
        seconds = _seconds_between(start, end)
        if seconds is not None:
            samples[kind] = seconds
    _record(counts, samples)


# --- WebSocket viewers: per-process counts with a heartbeat ---------------------------------

_PROCESS = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
_heartbeats: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}


def _alive_key(process: str) -> str:
    return f"pg:m:ws:alive:{process}"


async def _heartbeat_forever() -> None:
    while True:
        await asyncio.sleep(WS_HEARTBEAT_SECONDS)
        try:
            await redis_clients.async_redis_client().set(
                _alive_key(_PROCESS), "1", ex=WS_HEARTBEAT_TTL
            )
        except redis.RedisError:
            log.warning("could not renew the WebSocket heartbeat", exc_info=True)


def _ensure_heartbeat() -> None:
    loop = asyncio.get_running_loop()
    task = _heartbeats.get(loop)
    if task is None or task.done():
        for stale in [known for known in _heartbeats if known.is_closed()]:
            del _heartbeats[stale]
        _heartbeats[loop] = loop.create_task(_heartbeat_forever(), name="ws-heartbeat")


async def websocket_opened() -> None:
    try:
        pipe = redis_clients.async_redis_client().pipeline(transaction=False)
        pipe.hincrby(WS_KEY, _PROCESS, 1)
        pipe.hincrby(TOTALS_KEY, "ws_opened", 1)
        pipe.set(_alive_key(_PROCESS), "1", ex=WS_HEARTBEAT_TTL)
        await pipe.execute()
        _ensure_heartbeat()
    except redis.RedisError:
        log.warning("could not count a WebSocket connection", exc_info=True)


async def websocket_closed() -> None:
    try:
        await redis_clients.async_redis_client().hincrby(WS_KEY, _PROCESS, -1)
    except redis.RedisError:
        log.warning("could not count a WebSocket disconnection", exc_info=True)


def websocket_viewers() -> int:
    """Open WebSockets across live processes; a dead process's count is dropped."""
    client = redis_clients.redis_client()
    counts = {(_text(k)): int(v) for k, v in client.hgetall(WS_KEY).items()}
    if not counts:
        return 0
    processes = list(counts)
    alive = client.mget([_alive_key(process) for process in processes])
    dead = [process for process, flag in zip(processes, alive, strict=True) if flag is None]
    if dead:
        client.hdel(WS_KEY, *dead)
    return sum(max(0, counts[p]) for p in processes if p not in dead)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# --- reading the windows --------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    counts: Counter[str]
    seconds: float  # how much time the buckets summed actually cover

    def by_prefix(self, prefix: str) -> dict[str, int]:
        """{rest of the name: count} for names ``prefix:rest``, largest first."""
        found: Counter[str] = Counter()
        for name, count in self.counts.items():
            if name.startswith(prefix + ":"):
                found[name[len(prefix) + 1 :]] += count
        return dict(found.most_common())


def window(seconds: int = RATE_WINDOW, now: float | None = None) -> Window:
    now = clock() if now is None else now
    starts = _window_starts(seconds, now)
    pipe = redis_clients.redis_client().pipeline(transaction=False)
    for start in starts:
        pipe.hgetall(_bucket_key(start))
    counts: Counter[str] = Counter()
    for bucket in pipe.execute():
        for name, value in bucket.items():
            counts[_text(name)] += int(value)
    return Window(counts=counts, seconds=max(1.0, now - starts[-1]))


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least p% of values at or below."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def latencies(
    seconds: int = PERCENTILE_WINDOW, now: float | None = None
) -> dict[str, dict[str, float | int | None]]:
    """p50/p95 of queue wait, time to first token and duration over the last `seconds`."""
    now = clock() if now is None else now
    starts = _window_starts(seconds, now)
    pipe = redis_clients.redis_client().pipeline(transaction=False)
    for kind in HISTOGRAMS:
        for start in starts:
            pipe.lrange(_samples_key(kind, start), 0, -1)
    raw = pipe.execute()
    result: dict[str, dict[str, float | int | None]] = {}
    for i, kind in enumerate(HISTOGRAMS):
        chunk = raw[i * len(starts) : (i + 1) * len(starts)]
        values = [float(value) for bucket in chunk for value in bucket]
        result[kind] = {
            "p50": percentile(values, 50),
            "p95": percentile(values, 95),
            "count": len(values),
        }
    return result


def totals() -> dict[str, float]:
    raw = redis_clients.redis_client().hgetall(TOTALS_KEY)
    return {_text(name): float(value) for name, value in raw.items()}


# --- the last hour, for the charts ----------------------------------------------------------


def claim_sample() -> bool:
    """One sample per interval across every beat and process that may try."""
    ttl = max(1, SAMPLE_INTERVAL - 1)
    return bool(redis_clients.redis_client().set(SAMPLE_LOCK_KEY, "1", nx=True, ex=ttl))


def store_point(point: dict[str, Any], now: float | None = None) -> None:
    now = clock() if now is None else now
    point = {"t": round(now, 3), **point}
    pipe = redis_clients.redis_client().pipeline(transaction=False)
    pipe.zadd(SERIES_KEY, {json.dumps(point, sort_keys=True): now})
    pipe.zremrangebyscore(SERIES_KEY, "-inf", now - SERIES_SECONDS)
    # Nothing of it is shown once its last point is an hour old: a site that stopped sampling
    # does not keep it.
    pipe.expire(SERIES_KEY, SERIES_SECONDS)
    pipe.execute()


def series(since: float | None = None, now: float | None = None) -> list[dict[str, Any]]:
    """Points of the last hour, oldest first; only those after `since` when given."""
    now = clock() if now is None else now
    low = now - SERIES_SECONDS
    bound: float | str = low if since is None or since < low else f"({since}"
    raw = redis_clients.redis_client().zrangebyscore(SERIES_KEY, bound, "+inf")
    return [json.loads(item) for item in raw]
