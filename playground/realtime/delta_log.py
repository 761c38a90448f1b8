"""The live side of an answer being written: its delta log in Redis and its publisher.

While a message is generating, each coalesced delta is appended to a Redis list (persist) and
only then sent to the message's channel-layer group (publish). A viewer that connects or
reconnects subscribes first and reads the list second, so with the seq numbers it can stitch
replay and live events together with no gap and no duplicate. When the message ends, the log
is copied into the database row and the Redis list expires a while later.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from typing import Any

from inference.parser import Delta
from playground.realtime.cancel_flags import (
    cancel_key,
)
from playground.realtime.channel_groups import (
    group_channel,
    wire_message,
)
from playground.realtime.pipes import (
    redis_pipe,
)
from playground.realtime.redis_clients import (
    REDIS_DOWN,
    async_redis_client,
    redis_client,
)

log = logging.getLogger(__name__)


# Long enough for a viewer who joined just before the end to finish reading the live log.
FINISHED_LOG_TTL = 15 * 60


def delta_log_key(message_id: str) -> str:
    return f"pg:deltas:{message_id}"


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


def read_delta_log(message_id: str, after: int = 0) -> list[dict[str, Any]]:
    raw = redis_client().lrange(delta_log_key(message_id), after, -1)
    return [json.loads(item) for item in raw]


async def aread_delta_log(message_id: str, after: int = 0) -> list[dict[str, Any]]:
    # The list holds seq 1..n at positions 0..n-1, so seq after+1 sits at index `after`.
    raw = await async_redis_client().lrange(delta_log_key(message_id), after, -1)
    return [json.loads(item) for item in raw]


class StreamPublisher:
    """Persists then publishes the events of one generation, inside its event loop.

    A delta is appended to the log and published to its group (`group_channel`) in one
    write on the loop's `RedisPipe`.
    Settings give the layer the one Redis that `REDIS_URL` names, the same one these clients
    talk to.

    The generation's own list of its events (`events`) is the answer; the log in Redis is the
    viewers' copy of it. When Redis goes away mid-answer (an outage, a restart that loses its
    data), the generation goes on and its events wait in the list; once Redis answers again,
    the log is written afresh from the list in one transaction and whatever viewers may have
    missed is published again (a viewer drops what it already has, by seq). Replay stays
    gap-free, and the text a visitor saw is never lost.
    """

    # A Redis that takes longer than this to answer a write is treated as gone.
    REPLY_SECONDS = 2.0
    RETRY_SECONDS = 0.25
    RETRY_CAP_SECONDS = 2.0

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.seq = 0
        self.events: list[dict[str, Any]] = []
        # The loop's pooled client: a generation starts on a warm connection.
        self._redis = async_redis_client()
        self._pipe = redis_pipe()
        self._key = delta_log_key(message_id)
        self._channel = group_channel(message_id)
        self._writing = asyncio.Lock()
        self._logged = 0  # events sent to the log (their replies may still be on the way)
        self._confirmed = 0  # events Redis confirmed: in the log and published
        self._healthy = True
        self._recovering: asyncio.Task[None] | None = None
        self._unannounced: dict[str, Any] | None = None  # a start Redis could not take

    async def start(self, event: dict[str, Any]) -> None:
        """Begin the log afresh and announce `event` (the `started` event), in one round trip.

        A retried generation starts its log afresh; viewers only ever saw a log that belonged
        to an attempt that produced no text (retries happen before any delta)."""
        try:
            await self._pipe.execute_within(
                self.REPLY_SECONDS,
                ("DEL", self._key),
                ("PUBLISH", self._channel, wire_message(event)),
            )
        except REDIS_DOWN:
            self._unannounced = event
            self._lost_redis()

    async def publish_deltas(self, deltas: list[Delta]) -> None:
        if not deltas:
            return
        events = [delta_event(self.seq + number, delta) for number, delta in enumerate(deltas, 1)]
        # Part of the answer from here on, whatever becomes of the writes below: the stored
        # answer holds exactly what the viewers were (or will be) sent.
        self.seq += len(events)
        self.events.extend(events)
        if not self._healthy:
            return  # the recovery writes them (checked first: it may hold the lock meanwhile)
        async with self._writing:
            if not self._healthy:
                return
            new = self.events[self._logged :]
            if not new:
                return
            self._logged = len(self.events)
            try:
                # Appended before published, in one write: a viewer who subscribes and then
                # reads the log can miss nothing.
                replies = await self._pipe.execute_within(
                    self.REPLY_SECONDS,
                    ("RPUSH", self._key, *[json.dumps(event) for event in new]),
                    *[("PUBLISH", self._channel, wire_message(event)) for event in new],
                )
            except REDIS_DOWN:
                self._lost_redis()
                return
            if replies[0] != self._logged:
                # The log is not the one written so far: Redis restarted empty between two
                # writes, unnoticed (the pipe reconnected). Seq n must sit at position n - 1
                # for replay, so the log is written afresh from the generation's list.
                self._lost_redis(retry_in=0.0)
                return
            self._confirmed = self._logged

    async def finish(self, final: dict[str, Any] | None, patience: float) -> bool:
        """Bring the log up to date, announce `final` (if any) and let the log expire; after a
        `restarted` announcement the log is dropped instead (the next attempt writes its own).

        Waits up to `patience` seconds for a Redis that is away; False if it never came back
        (the answer is stored all the same, and the web processes' sweep tells its viewers).
        """
        if self._recovering is not None:
            self._recovering.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        delay = self.RETRY_SECONDS
        while True:
            async with self._writing:
                restarted = final is not None and final.get("type") == "restarted"
                commands = self._catch_up_commands() if self._behind() and not restarted else []
                if final is not None:
                    commands.append(("PUBLISH", self._channel, wire_message(final)))
                if restarted:
                    commands.append(("DEL", self._key))
                else:
                    commands.append(("EXPIRE", self._key, FINISHED_LOG_TTL))
                try:
                    await self._pipe.execute_within(self.REPLY_SECONDS, *commands)
                except REDIS_DOWN:
                    pass
                else:
                    return True
            if loop.time() + delay > deadline:
                log.warning("Redis stayed away: the end of %s was not announced", self.message_id)
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.RETRY_CAP_SECONDS)

    async def cancel_requested(self) -> bool:
        try:
            return bool(await self._redis.exists(cancel_key(self.message_id)))
        except REDIS_DOWN:
            return False  # a Stop that cannot be read is read by the cancel watch later, if at all

    def _behind(self) -> bool:
        return not self._healthy or self._confirmed < len(self.events)

    def _catch_up_commands(self) -> list[tuple[Any, ...]]:
        """The whole log written afresh from the generation's own list, in one transaction,
        and everything viewers may not have been sent yet, published again."""
        logged = [json.dumps(event) for event in self.events]
        commands: list[tuple[Any, ...]] = [("MULTI",), ("DEL", self._key)]
        if logged:
            commands.append(("RPUSH", self._key, *logged))
        commands.append(("EXEC",))
        if self._unannounced is not None:
            commands.append(("PUBLISH", self._channel, wire_message(self._unannounced)))
        commands += [
            ("PUBLISH", self._channel, wire_message(event))
            for event in self.events[self._confirmed :]
        ]
        return commands

    def _lost_redis(self, retry_in: float = RETRY_SECONDS) -> None:
        if self._healthy:
            log.warning(
                "Redis lost the log of %s: it is kept here until Redis is back", self.message_id
            )
        self._healthy = False
        if self._recovering is None or self._recovering.done():
            self._recovering = asyncio.ensure_future(self._recover(retry_in))

    async def _recover(self, delay: float) -> None:
        while True:
            await asyncio.sleep(delay)
            async with self._writing:
                count = len(self.events)
                try:
                    await self._pipe.execute_within(self.REPLY_SECONDS, *self._catch_up_commands())
                except REDIS_DOWN:
                    delay = min(max(delay * 2, self.RETRY_SECONDS), self.RETRY_CAP_SECONDS)
                    continue
                self._logged = self._confirmed = count
                self._unannounced = None
                self._healthy = True
                log.info("Redis is back: the log of %s is whole again", self.message_id)
                return
