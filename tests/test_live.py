"""The generations' Redis pipe and cancel watch, against the test session's real Redis."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from django.conf import settings

from playground import live


def url_with(*, db: int | None = None, password: str | None = None) -> str:
    parts = urlsplit(settings.REDIS_URL)
    netloc = parts.hostname or "127.0.0.1"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    if password:
        netloc = f":{password}@{netloc}"
    path = f"/{db}" if db is not None else parts.path
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


def test_it_answers_concurrent_callers_each_with_their_own_replies() -> None:
    async def scenario() -> tuple[list, list]:
        pipe = live.RedisPipe(settings.REDIS_URL)
        first = await pipe.send(("RPUSH", "pipe:a", "1", "2"), ("LRANGE", "pipe:a", 0, -1))
        second = await pipe.send(("SET", "pipe:b", "x"), ("GET", "pipe:b"))
        return await first, await second

    first, second = asyncio.run(scenario())

    assert first == [2, [b"1", b"2"]]
    assert second == [b"OK", b"x"]


def test_a_failed_command_fails_only_its_caller() -> None:
    async def scenario() -> list:
        pipe = live.RedisPipe(settings.REDIS_URL)
        await pipe.execute(("RPUSH", "pipe:list", "item"))
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            await pipe.execute(("INCR", "pipe:counter"), ("INCR", "pipe:list"))
        return await pipe.execute(("GET", "pipe:counter"))

    # The caller's other command ran: Redis has no transaction here, and the pipe says so.
    assert asyncio.run(scenario()) == [b"1"]


def test_commands_in_flight_fail_when_the_connection_drops_and_the_next_reconnect() -> None:
    async def scenario() -> tuple[BaseException | None, list]:
        pipe = live.RedisPipe(settings.REDIS_URL)
        [pipe_id] = await pipe.execute(("CLIENT", "ID"))
        waiting = await pipe.send(("BLPOP", "pipe:never", 5))
        await asyncio.sleep(0.05)
        live.redis_client().execute_command("CLIENT", "KILL", "ID", pipe_id)
        failure = None
        try:
            await asyncio.wait_for(waiting, 3)
        except redis.ConnectionError as exc:
            failure = exc
        return failure, await pipe.execute(("PING",))

    failure, after = asyncio.run(scenario())

    assert isinstance(failure, redis.ConnectionError)
    assert after == [b"PONG"]


def test_it_uses_the_database_the_url_names() -> None:
    other_db = 3 if live.redis_client().connection_pool.connection_kwargs.get("db") != 3 else 4
    elsewhere = redis.Redis.from_url(url_with(db=other_db))
    try:
        asyncio.run(live.RedisPipe(url_with(db=other_db)).execute(("SET", "pipe:db", "here")))
        assert elsewhere.get("pipe:db") == b"here"
        assert live.redis_client().get("pipe:db") is None
    finally:
        elsewhere.delete("pipe:db")
        elsewhere.close()


def test_it_reports_a_password_the_server_refuses() -> None:
    # The test Redis has no password, so sending one is refused: the handshake's error
    # reaches the caller instead of a connection that silently lacks its AUTH.
    with pytest.raises(redis.ResponseError, match="(?i)auth"):
        asyncio.run(live.RedisPipe(url_with(password="not-the-password")).execute(("PING",)))


def test_it_gives_up_on_an_unreachable_server_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live.RedisPipe, "CONNECT_ATTEMPTS", 2)
    with pytest.raises(redis.ConnectionError, match="could not connect to Redis"):
        asyncio.run(live.RedisPipe("redis://127.0.0.1:1/0").execute(("PING",)))


def test_the_cancel_watch_wakes_only_the_generation_asked_to_stop() -> None:
    async def scenario() -> tuple[bool, bool, bool, bool]:
        watch = live.CancelWatch(interval=0.02)
        stopping, going_on = asyncio.Event(), asyncio.Event()
        watch.watch("stopping", stopping)
        watch.watch("going-on", going_on)
        live.redis_client().set(live.cancel_key("stopping"), "1")
        await asyncio.wait_for(stopping.wait(), 2)
        await asyncio.sleep(0.05)
        result = (
            watch.cancelled("stopping"),
            watch.cancelled("going-on"),
            going_on.is_set(),
        )
        watch.unwatch("stopping")
        watch.unwatch("going-on")
        await asyncio.sleep(0.05)
        return (*result, watch._poller is not None and watch._poller.done())

    stopped, other_stopped, other_woken, poller_ended = asyncio.run(scenario())

    assert stopped
    assert not other_stopped and not other_woken
    assert poller_ended, "the poller outlived the last watched generation"
