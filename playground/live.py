"""The live side of a message: its delta log in Redis, its channel-layer group, its cancel flag.

While a message is generating, each coalesced delta is appended to a Redis list (persist) and
only then sent to the message's channel-layer group (publish). A viewer that connects or
reconnects subscribes first and reads the list second, so with the seq numbers it can stitch
replay and live events together with no gap and no duplicate. When the message ends, the log
is copied into the database row and the Redis list expires a while later.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import ssl
import time
import weakref
from collections.abc import Iterable
from typing import Any

import hiredis
import redis
import redis.asyncio as aredis
from channels.layers import get_channel_layer
from django.conf import settings
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff

from inference.parser import Delta

log = logging.getLogger(__name__)

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
    """One pooled client per event loop (a web process has one; each generation runs its own)."""
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


# The channel layer's reader (channels_redis's pub/sub layer) reads only while the process is
# subscribed to something; subscribed to nothing, it looks again every 100 ms. On an idle site
# every viewer's subscriptions end with their answer, so the next visitor's first events waited
# for that look: up to 100 ms, a median 12 ms of `make bench`'s idle first delta. A channel of
# the process's own, which nobody sends to, keeps the reader reading.
_standing_channels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, str] = (
    weakref.WeakKeyDictionary()
)


async def keep_listening() -> None:
    """Subscribe this event loop's channel layer to a channel of its own, once per loop."""
    loop = asyncio.get_running_loop()
    if loop in _standing_channels:
        return
    layer = get_channel_layer()
    if layer is None:
        return
    _standing_channels[loop] = ""  # taken: a second caller meanwhile does not subscribe too
    try:
        _standing_channels[loop] = await layer.new_channel("standing.")
    except BaseException:
        del _standing_channels[loop]  # the next caller tries again
        raise


def standing_channel() -> str | None:
    """The running loop's standing channel, once subscribed."""
    return _standing_channels.get(asyncio.get_running_loop()) or None


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


class _PipeProtocol(asyncio.Protocol):
    """One Redis connection: a caller's commands are written the moment they are given, in one
    write; hiredis parses the replies, which go back to their callers in order."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._parser = hiredis.Reader(replyError=redis.ResponseError)
        # Per caller, in the order they wrote: (their replies, how many are still to come).
        self._callers: collections.deque[tuple[asyncio.Future[list[Any]], list[Any]]] = (
            collections.deque()
        )
        self._expected: collections.deque[int] = collections.deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        while (reply := self._parser.gets()) is not False:
            future, replies = self._callers[0]
            replies.append(reply)
            if len(replies) == self._expected[0]:
                self._callers.popleft()
                self._expected.popleft()
                if future.done():
                    continue  # its caller stopped waiting; the commands ran all the same
                failed = next((r for r in replies if isinstance(r, redis.ResponseError)), None)
                if failed is not None:
                    future.set_exception(failed)
                else:
                    future.set_result(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        while self._callers:
            future, _ = self._callers.popleft()
            if not future.done():
                future.set_exception(redis.ConnectionError(f"Redis connection lost: {exc}"))
        self._expected.clear()

    def send(self, commands: tuple[tuple[Any, ...], ...]) -> asyncio.Future[list[Any]]:
        assert self.transport is not None, "send() before the connection was made"
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._callers.append((future, []))
        self._expected.append(len(commands))
        self.transport.write(b"".join(hiredis.pack_command(command) for command in commands))
        return future


class RedisPipe:
    """The generations' way to Redis for what they do per token: one connection per event
    loop, each caller's commands written at once and in one write, with no pool to pass.

    A model server emits a token for every running stream at each decode step, so all of a
    worker's generations store and publish a delta at the same moment. redis-py's pooled
    pipeline spent about 0.2 ms of CPU on each, under the process's one interpreter lock,
    while every other generation of the process waited; this spends a quarter of that.

    Connecting is retried with a short backoff (a Redis restart). Commands already written
    when the connection breaks fail rather than being sent twice: a delta appended twice
    would break the log's seq-to-position order.
    """

    CONNECT_ATTEMPTS = 6

    def __init__(self, url: str) -> None:
        self._options = parse_url(url)
        self._connection: _PipeProtocol | None = None
        self._connecting: asyncio.Future[_PipeProtocol] | None = None

    async def send(self, *commands: tuple[Any, ...]) -> asyncio.Future[list[Any]]:
        """Write `commands` (each the words of one Redis command) together, connecting first if
        need be, and return the future of their replies. Once this returns, they are sent."""
        connection = await self._connected()
        return connection.send(commands)

    async def execute(self, *commands: tuple[Any, ...]) -> list[Any]:
        return await (await self.send(*commands))

    async def execute_within(self, seconds: float, *commands: tuple[Any, ...]) -> list[Any]:
        """`execute`, but a Redis that has not answered within `seconds` (stopped, or cut off
        without a reset) counts as gone: the connection is dropped, so that every caller
        waiting on it fails now and the next one connects afresh."""
        try:
            async with asyncio.timeout(seconds):
                return await self.execute(*commands)
        except TimeoutError:
            self.abort()
            raise redis.TimeoutError(f"Redis did not answer within {seconds} s") from None

    def abort(self) -> None:
        connection = self._connection
        if connection is not None and connection.transport is not None:
            connection.lost = True
            connection.transport.abort()

    async def _connected(self) -> _PipeProtocol:
        connection = self._connection
        if connection is not None and not connection.lost:
            return connection
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._connect())
        # Shielded: one caller giving up must not abort the connection the others wait for.
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> _PipeProtocol:
        for attempt in range(self.CONNECT_ATTEMPTS):
            try:
                self._connection = await self._open()
                return self._connection
            except (OSError, redis.ConnectionError) as exc:
                if attempt == self.CONNECT_ATTEMPTS - 1:
                    raise redis.ConnectionError(f"could not connect to Redis: {exc}") from exc
                await asyncio.sleep(min(1.0, 0.05 * 2**attempt))
        raise AssertionError("unreachable")

    async def _open(self) -> _PipeProtocol:
        loop = asyncio.get_running_loop()
        options = self._options
        if "path" in options:
            _, connection = await loop.create_unix_connection(_PipeProtocol, options["path"])
        else:
            tls = _tls_context(options) if options.get("connection_class") is _TLS else None
            _, connection = await loop.create_connection(
                _PipeProtocol, options.get("host", "localhost"), options.get("port", 6379), ssl=tls
            )
        handshake: list[tuple[Any, ...]] = []
        if options.get("password"):
            credentials = [options.get("username"), options["password"]]
            handshake.append(("AUTH", *[part for part in credentials if part]))
        if options.get("db"):
            handshake.append(("SELECT", options["db"]))
        if handshake:
            try:
                await connection.send(tuple(handshake))
            except redis.ResponseError:
                connection.transport.close()  # type: ignore[union-attr]
                raise
        return connection


_TLS = aredis.SSLConnection


def _tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    """A `rediss://` URL's TLS settings (the query parameters redis-py reads)."""
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    if options.get("ssl_certfile"):
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    if str(options.get("ssl_cert_reqs", "required")).lower() in ("none", "optional"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif str(options.get("ssl_check_hostname", "true")).lower() in ("false", "0", "no"):
        context.check_hostname = False
    return context


_pipes: dict[asyncio.AbstractEventLoop, RedisPipe] = {}


def redis_pipe() -> RedisPipe:
    """The running loop's pipe (one per worker process: generations share its loop)."""
    loop = asyncio.get_running_loop()
    pipe = _pipes.get(loop)
    if pipe is None:
        for stale in [known for known in _pipes if known.is_closed()]:
            del _pipes[stale]
        pipe = _pipes[loop] = RedisPipe(settings.REDIS_URL)
    return pipe


class CancelWatch:
    """Watches the cancel flags of every generation running on one event loop: one read of
    all the flags a few times a second, instead of one round trip per generation."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._watched: dict[str, asyncio.Event] = {}
        self._cancelled: set[str] = set()
        self._interrupted: set[str] = set()  # stopped because the process is shutting down
        self._poller: asyncio.Task[None] | None = None

    def watch(self, message_id: str, wake: asyncio.Event) -> None:
        """Set `wake` when `message_id` is asked to stop (see `cancelled`)."""
        self._watched[message_id] = wake
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    def unwatch(self, message_id: str) -> None:
        self._watched.pop(message_id, None)
        self._cancelled.discard(message_id)
        self._interrupted.discard(message_id)

    def cancelled(self, message_id: str) -> bool:
        return message_id in self._cancelled

    def interrupted(self, message_id: str) -> bool:
        return message_id in self._interrupted

    def interrupt_all(self) -> int:
        """Stop every generation on this loop now (the process is shutting down); how many."""
        for message_id, wake in list(self._watched.items()):
            self._interrupted.add(message_id)
            self._cancelled.add(message_id)
            wake.set()
        return len(self._watched)

    async def _poll(self) -> None:
        # Ends by itself once nothing is watched: nothing outlives the last generation.
        while self._watched:
            await asyncio.sleep(self.interval)
            ids = list(self._watched)
            if not ids:
                break
            try:
                flags = await async_redis_client().mget([cancel_key(i) for i in ids])
            except redis.RedisError:
                log.warning("could not read the cancel flags", exc_info=True)
                continue
            for message_id, flag in zip(ids, flags, strict=True):
                wake = self._watched.get(message_id)
                if flag and wake is not None:
                    self._cancelled.add(message_id)
                    wake.set()


_cancel_watches: dict[asyncio.AbstractEventLoop, CancelWatch] = {}


def cancel_watch(interval: float) -> CancelWatch:
    """The running loop's cancel watch, polling every `interval` seconds."""
    loop = asyncio.get_running_loop()
    watch = _cancel_watches.get(loop)
    if watch is None:
        for stale in [known for known in _cancel_watches if known.is_closed()]:
            del _cancel_watches[stale]
        watch = _cancel_watches[loop] = CancelWatch(interval)
    watch.interval = interval
    return watch


# What a Redis that cannot be reached raises: refused, reset, or too slow to answer.
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, OSError)


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
