"""Per-address submission budgets (IP_RATE_LIMIT), as a sliding window in Redis.

A sliding log rather than fixed windows: a burst at the edge of two windows cannot get twice
the budget through, and the Retry-After told to the visitor is exact.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass

import redis
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


@dataclass(frozen=True)
class Spend:
    """One submission's entry in an address's log, to give back if the submission is refused
    for another reason after all."""

    key: str
    member: str


def spend_in(pipe: redis.client.Pipeline, ip: str, rate: Rate | None = None) -> Spend:
    """Add the spend of one submission of `ip`'s budget to a caller's pipeline; its reply reads
    with `seconds_to_wait` (0 if allowed, else seconds until a submission frees up).
    EVAL, not EVALSHA: a pipeline holding a registered script asks Redis whether it knows the
    script first, a round trip more, and Redis caches the script by its hash either way."""
    rate = rate or settings.IP_RATE_LIMIT
    spend = Spend(key=f"pg:rate:{ip}", member=secrets.token_hex(6))
    pipe.eval(_TAKE, 1, spend.key, time.time(), rate.seconds, rate.count, spend.member)
    return spend


def seconds_to_wait(reply: bytes | str) -> int:
    wait = float(reply)
    return math.ceil(wait) if wait > 0 else 0


def give_back(spend: Spend) -> None:
    """Take a spend out of its address's log (a refused submission must not use up the
    budget of everyone else at that address). A spend the budget refused was never logged."""
    redis_clients.redis_client().zrem(spend.key, spend.member)
