"""The generations' Redis pipe and cancel watch, against the test session's real Redis."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from django.conf import settings

from playground.realtime import cancel_flags, channel_groups, pipes, redis_clients


def url_with(*, db: int | None = None, password: str | None = None) -> str:
    parts = urlsplit(settings.REDIS_URL)
    netloc = parts.hostname or "127.0.0.1"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    if password:
        netloc = f":{password}@{netloc}"
    path = f"/{db}" if db is not None else parts.path
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


def test_the_pipe_answers_concurrent_callers_each_with_their_own_replies() -> None:
    async def scenario() -> tuple[list, list]:
        pipe = pipes.RedisPipe(settings.REDIS_URL)
        first = await pipe.send(("RPUSH", "pipe:a", "1", "2"), ("LRANGE", "pipe:a", 0, -1))
        second = await pipe.send(("SET", "pipe:b", "x"), ("GET", "pipe:b"))
        return await first, await second

    first, second = asyncio.run(scenario())

    assert first == [2, [b"1", b"2"]]
    assert second == [b"OK", b"x"]


def test_a_failed_command_fails_only_its_caller() -> None:
    async def scenario() -> list:
        pipe = pipes.RedisPipe(settings.REDIS_URL)
        await pipe.execute(("RPUSH", "pipe:list", "item"))
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            await pipe.execute(("INCR", "pipe:counter"), ("INCR", "pipe:list"))
        return await pipe.execute(("GET", "pipe:counter"))

    # The caller's other command ran: Redis has no transaction here, and the pipe says so.
    assert asyncio.run(scenario()) == [b"1"]


def test_commands_in_flight_fail_when_the_connection_drops_and_the_next_reconnect() -> None:
    async def scenario() -> tuple[BaseException | None, list]:
        pipe = pipes.RedisPipe(settings.REDIS_URL)
        [pipe_id] = await pipe.execute(("CLIENT", "ID"))
        waiting = await pipe.send(("BLPOP", "pipe:never", 5))
        await asyncio.sleep(0.05)
        redis_clients.redis_client().execute_command("CLIENT", "KILL", "ID", pipe_id)
        failure = None
        try:
            await asyncio.wait_for(waiting, 3)
        except redis.ConnectionError as exc:
            failure = exc
        return failure, await pipe.execute(("PING",))

    failure, after = asyncio.run(scenario())

    assert isinstance(failure, redis.ConnectionError)
    assert after == [b"PONG"]


def test_the_pipe_uses_the_database_the_url_names() -> None:
    other_db = (
        3 if redis_clients.redis_client().connection_pool.connection_kwargs.get("db") != 3 else 4
    )
    elsewhere = redis.Redis.from_url(url_with(db=other_db))
    try:
        asyncio.run(pipes.RedisPipe(url_with(db=other_db)).execute(("SET", "pipe:db", "here")))
        assert elsewhere.get("pipe:db") == b"here"
        assert redis_clients.redis_client().get("pipe:db") is None
    finally:
        elsewhere.delete("pipe:db")
        elsewhere.close()


def test_the_pipe_reports_a_password_the_server_refuses() -> None:
    # The test Redis has no password, so sending one is refused: the handshake's error
    # reaches the caller instead of a connection that silently lacks its AUTH.
    with pytest.raises(redis.ResponseError, match="(?i)auth"):
        asyncio.run(pipes.RedisPipe(url_with(password="not-the-password")).execute(("PING",)))


def test_the_pipe_gives_up_on_an_unreachable_server_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pipes.RedisPipe, "CONNECT_ATTEMPTS", 2)
    with pytest.raises(redis.ConnectionError, match="could not connect to Redis"):
        asyncio.run(pipes.RedisPipe("redis://127.0.0.1:1/0").execute(("PING",)))


def test_the_cancel_watch_wakes_only_the_generation_asked_to_stop() -> None:
    async def scenario() -> tuple[bool, bool, bool, bool]:
        watch = cancel_flags.CancelWatch(interval=0.02)
        stopping, going_on = asyncio.Event(), asyncio.Event()
        watch.watch("stopping", stopping)
        watch.watch("going-on", going_on)
        redis_clients.redis_client().set(cancel_flags.cancel_key("stopping"), "1")
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


def standing_channels() -> set[str]:
    """Standing channels anyone on this Redis subscribes (a running stack may have its own)."""
    return {name.decode() for name in redis_clients.redis_client().pubsub_channels("*standing.*")}


def subscribers(channel: str) -> int:
    [(_, count)] = redis_clients.redis_client().pubsub_numsub(channel)
    return int(count)


def test_the_layer_keeps_listening_after_the_last_viewer_leaves() -> None:
    # channels_redis's reader sleeps 100 ms at a time while nothing is subscribed: the
    # standing channel is what keeps the process subscribed between viewers.
    from channels.layers import get_channel_layer

    async def scenario() -> tuple[str | None, int, int]:
        await channel_groups.keep_listening()
        layer = get_channel_layer()
        viewer = await layer.new_channel()
        await layer.group_add(channel_groups.group_name("m1"), viewer)
        await layer.group_discard(channel_groups.group_name("m1"), viewer)
        standing = channel_groups.standing_channel()
        assert standing is not None
        while_running = subscribers(standing)
        await layer.flush()
        # The flush closes the subscriber's connection; Redis drops its subscriptions when it
        # reads the close, which on a busy machine is a little after the flush returns.
        for _ in range(50):
            if subscribers(standing) == 0:
                break
            await asyncio.sleep(0.02)
        return standing, while_running, subscribers(standing)

    standing, while_running, after_flush = asyncio.run(scenario())

    assert standing is not None and standing.startswith("asgistanding.")
    assert while_running == 1
    assert after_flush == 0


def test_each_loop_subscribes_once_however_many_callers() -> None:
    async def scenario() -> tuple[str | None, set[str]]:
        before = standing_channels()
        await asyncio.gather(*(channel_groups.keep_listening() for _ in range(5)))
        await channel_groups.keep_listening()
        return channel_groups.standing_channel(), standing_channels() - before

    first, first_new = asyncio.run(scenario())
    second, second_new = asyncio.run(scenario())

    assert first_new == {first}
    # A new loop (a new process's server, or the next test) has a standing channel of its own.
    assert second_new == {second} and second != first


def test_a_failed_subscription_is_tried_again_by_the_next_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    attempts: list[str] = []
    real_new_channel = layer.new_channel

    async def failing_once(prefix: str = "specific.") -> str:
        attempts.append(prefix)
        if len(attempts) == 1:
            raise redis.ConnectionError("Redis went away")
        return await real_new_channel(prefix)

    monkeypatch.setattr(layer, "new_channel", failing_once)

    async def scenario() -> tuple[str | None, str | None]:
        with pytest.raises(redis.ConnectionError):
            await channel_groups.keep_listening()
        after_failure = channel_groups.standing_channel()
        await channel_groups.keep_listening()
        return after_failure, channel_groups.standing_channel()

    after_failure, after_retry = asyncio.run(scenario())

    assert after_failure is None
    assert after_retry is not None and len(attempts) == 2
