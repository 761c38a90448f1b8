"""Per-address submission budgets (IP_RATE_LIMIT), as a sliding window in Redis.

A sliding log rather than fixed windows: a burst at the edge of two windows cannot get twice
the budget through, and the Retry-After told to the visitor is exact.
"""

from __future__ import annotations

import math
import secrets
import time

from django.conf import settings

from playground.env import Rate
from playground.realtime import redis_clients

_TAKE = """
-- KEYS[1]: the log. ARGV: now, window seconds, budget, member
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(window))
return '0'
"""


def take(ip: str, rate: Rate | None = None) -> int:
    """Spend one submission of `ip`'s budget: 0 if allowed, else seconds until one frees up."""
    rate = rate or settings.IP_RATE_LIMIT
    script = redis_clients.redis_client().register_script(_TAKE)
    wait = float(
        script(
            keys=[f"pg:rate:{ip}"],
            args=[time.time(), rate.seconds, rate.count, secrets.token_hex(6)],
        )
    )
    return math.ceil(wait) if wait > 0 else 0
