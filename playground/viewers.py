"""The stream sockets open in one web process, and the chores that keep them honest.

Every few seconds (`Tender.beat`), for all of the process's sockets at once:

- presence: each watched message is marked seen, so a visitor waiting with only a socket
  open is never taken for gone when their turn comes, even after Redis lost the marks;
- the per-address socket budget (IP_MAX_WEBSOCKETS) is renewed: each socket holds a lease
  in Redis that lapses a while after its process died, so a crash frees its budget; the same
  lease counts the socket in its answer's crowd (realtime.crowds);
- the sweep: one query finds the watched answers that ended a while ago and the share links
  that were turned off. Their sockets are told from the database (the final event, with any
  deltas they miss) or closed. Events normally arrive through the channel layer in
  milliseconds; the sweep is for those that were lost (a Redis outage or restart).

A consumer joins with `tender().join(...)` after its handshake and leaves when it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import weakref
from typing import Protocol

from channels.db import DatabaseSyncToAsync
from django.conf import settings

from playground import services
from playground.realtime import crowds, presence, redis_clients

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
# An answer this long over is told by the sweep (its final event is taken to be lost).
SWEEP_AFTER_SECONDS = 3.0
# A socket's budget lease outlives its process by this much.
SOCKET_LEASE_SECONDS = 60

_ADMIT = """
-- KEYS[1]: the address's sockets (member: socket id, score: lease expiry); KEYS[2]: the
-- message's presence mark; KEYS[3]: the message's crowd (like KEYS[1]).
-- ARGV: now, expiry, socket id, budget, key ttl, presence ttl
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[5])
return 1
"""


class Viewer(Protocol):
    """What the tender needs of a stream consumer."""

    message_id: str
    share_token: str | None

    async def catch_up(self) -> None: ...

    async def revoke(self) -> None: ...


def _budget_key(address: str) -> str:
    return f"pg:sockets:{address}"


def heartbeat_seconds() -> float:
    # Well inside the grace after which a waiting visitor counts as gone.
    return min(HEARTBEAT_SECONDS, settings.ABANDON_GRACE_SECONDS / 4)


class Tender:
    """The sockets of one event loop (a web process serves all of its sockets on one)."""

    def __init__(self) -> None:
        self._viewers: dict[Viewer, tuple[str, str]] = {}  # viewer: (address, socket id)
        self._task: asyncio.Task[None] | None = None

    async def join(self, viewer: Viewer, address: str) -> bool:
        """Count a socket against its address's budget, and its viewer as present; False
        when the budget is spent. Raises what Redis raises when it cannot be reached."""
        socket_id = secrets.token_hex(8)
        now = time.time()
        client = redis_clients.async_redis_client()
        admitted = await client.eval(
            _ADMIT,
            3,
            _budget_key(address),
            presence.seen_key(viewer.message_id),
            crowds.crowd_key(viewer.message_id),
            f"{now:.3f}",
            now + SOCKET_LEASE_SECONDS,
            socket_id,
            settings.IP_MAX_WEBSOCKETS,
            SOCKET_LEASE_SECONDS * 2,
            presence.PRESENCE_TTL,
        )
        if not admitted:
            return False
        self._viewers[viewer] = (address, socket_id)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._tend())
        return True

    async def leave(self, viewer: Viewer) -> None:
        joined = self._viewers.pop(viewer, None)
        if joined is None:
            return
        address, socket_id = joined
        # The viewer was last seen now; the grace before they count as gone starts here.
        pipe = redis_clients.async_redis_client().pipeline(transaction=False)
        pipe.zrem(_budget_key(address), socket_id)
        pipe.zrem(crowds.crowd_key(viewer.message_id), socket_id)
        pipe.set(
            presence.seen_key(viewer.message_id), f"{time.time():.3f}", ex=presence.PRESENCE_TTL
        )
        with contextlib.suppress(*redis_clients.REDIS_DOWN):  # else its lease lapses by itself
            await pipe.execute()

    async def _tend(self) -> None:
        # Ends by itself once no socket is left: nothing outlives the last viewer.
        while self._viewers:
            await asyncio.sleep(heartbeat_seconds())
            try:
                await self.beat()
            except Exception:
                log.warning("the stream sockets' heartbeat failed", exc_info=True)

    async def beat(self) -> None:
        """Presence, budgets and the sweep, once, for every socket of this loop."""
        viewers = list(self._viewers.items())
        if not viewers:
            return
        with contextlib.suppress(*redis_clients.REDIS_DOWN):
            await self._renew(viewers)
        await self._sweep([viewer for viewer, _ in viewers])

    async def _renew(self, viewers: list[tuple[Viewer, tuple[str, str]]]) -> None:
        await presence.atouch_many({viewer.message_id for viewer, _ in viewers})
        expiry = time.time() + SOCKET_LEASE_SECONDS
        leases: dict[str, dict[str, float]] = {}
        for viewer, (address, socket_id) in viewers:
            for key in (_budget_key(address), crowds.crowd_key(viewer.message_id)):
                leases.setdefault(key, {})[socket_id] = expiry
        # One ZADD and EXPIRE per key: a thousand sockets on one share link are one crowd.
        pipe = redis_clients.async_redis_client().pipeline(transaction=False)
        for key, members in leases.items():
            pipe.zadd(key, members)
            pipe.expire(key, SOCKET_LEASE_SECONDS * 2)
        await pipe.execute()

    async def _sweep(self, viewers: list[Viewer]) -> None:
        ended, shares = await DatabaseSyncToAsync(
            services.ended_and_shared, thread_sensitive=False
        )({viewer.message_id for viewer in viewers}, SWEEP_AFTER_SECONDS)
        for viewer in viewers:
            try:
                if viewer.share_token and shares.get(viewer.message_id) != viewer.share_token:
                    await viewer.revoke()
                elif viewer.message_id in ended:
                    await viewer.catch_up()
            except OSError:
                pass  # the viewer left meanwhile; its disconnect lets go of it


_tenders: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Tender] = weakref.WeakKeyDictionary()


def tender() -> Tender:
    """The running loop's tender."""
    loop = asyncio.get_running_loop()
    found = _tenders.get(loop)
    if found is None:
        found = _tenders[loop] = Tender()
    return found
