"""A Redis connection of the generations' own, for what they do per token (see RedisPipe)."""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
from typing import Any

import hiredis
import redis
import redis.asyncio as aredis
from django.conf import settings
from redis.asyncio.connection import parse_url

from playground.realtime.per_loop import PerLoop

log = logging.getLogger(__name__)


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
    pipeline spent several times this one's CPU on each, under the process's one interpreter
    lock, while every other generation of the process waited (bench/README.md).

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


_pipes = PerLoop(lambda: RedisPipe(settings.REDIS_URL))


def redis_pipe() -> RedisPipe:
    """The running loop's pipe (one per worker process: generations share its loop)."""
    return _pipes.get()
