"""A generation's publisher against a Redis of its own that goes away mid-answer: restarted
empty, or frozen. The answer goes on, nothing is lost, and the log comes back whole."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
from channels.layers import get_channel_layer

from devtools.processes import EmbeddedRedis
from inference.parser import Delta
from playground.realtime import channel_groups, delta_log

MESSAGE = "m-publisher"


@pytest.fixture
def own_redis(settings: Any) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis().start()
    settings.REDIS_URL = server.url  # read by the pipe and client each new event loop makes
    try:
        yield server
    finally:
        server.stop()


def stored_log(server: EmbeddedRedis) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(server.url)
    try:
        return [json.loads(item) for item in client.lrange(delta_log.delta_log_key(MESSAGE), 0, -1)]
    finally:
        client.close()


async def published_events(pubsub: aredis.client.PubSub, count: int) -> list[dict[str, Any]]:
    layer = get_channel_layer()
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(5):
        while len(events) < count:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None:
                events.append(layer.deserialize(message["data"])["event"])
    return events


def test_a_generation_rides_out_a_redis_that_restarts_empty(own_redis: EmbeddedRedis) -> None:
    async def scenario() -> tuple[list[float], bool, list[dict[str, Any]]]:
        loop = asyncio.get_running_loop()
        publisher = delta_log.StreamPublisher(MESSAGE)
        await publisher.start({"type": "started"})
        await publisher.publish_deltas([Delta("thinking", "Let me ")])
        await asyncio.to_thread(own_redis.stop, True)

        took = []
        for delta in (Delta("thinking", "think."), Delta("output", "Three.")):
            began = loop.time()
            await publisher.publish_deltas([delta])
            took.append(loop.time() - began)

        await asyncio.to_thread(own_redis.start)
        viewer = aredis.Redis.from_url(own_redis.url)
        pubsub = viewer.pubsub()
        await pubsub.subscribe(channel_groups.group_channel(MESSAGE))
        announced = await publisher.finish({"type": "done", "seq": 3}, patience=10)
        missed = await published_events(pubsub, 3)
        await pubsub.aclose()
        await viewer.aclose()
        return took, announced, missed

    took, announced, missed = asyncio.run(scenario())

    # The first write finds Redis gone (within its reply timeout); the next does not wait.
    assert took[0] < delta_log.StreamPublisher.REPLY_SECONDS + 0.5
    assert took[1] < 0.1
    assert announced
    log = stored_log(own_redis)
    assert [event["seq"] for event in log] == [1, 2, 3]
    assert "".join(event["text"] for event in log) == "Let me think.Three."
    # What viewers could not be sent while Redis was away is published again, then the end.
    assert [event.get("seq") for event in missed] == [2, 3, 3]
    assert missed[-1]["type"] == "done"


def test_a_frozen_redis_costs_a_write_at_most_its_reply_timeout(
    own_redis: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delta_log.StreamPublisher, "REPLY_SECONDS", 0.5)
    assert own_redis.process is not None
    pid = own_redis.process.pid

    async def scenario() -> tuple[float, float, bool]:
        loop = asyncio.get_running_loop()
        publisher = delta_log.StreamPublisher(MESSAGE)
        await publisher.start({"type": "started"})
        os.kill(pid, signal.SIGSTOP)
        try:
            began = loop.time()
            await publisher.publish_deltas([Delta("output", "One, ")])
            first = loop.time() - began
            began = loop.time()
            await publisher.publish_deltas([Delta("output", "two.")])
            second = loop.time() - began
        finally:
            os.kill(pid, signal.SIGCONT)
        return first, second, await publisher.finish({"type": "done", "seq": 2}, patience=10)

    first, second, announced = asyncio.run(scenario())

    assert first < 1.5, "one reply timeout, then Redis counts as gone"
    assert second < 0.1, "later deltas wait in the generation's own list"
    assert announced
    assert [event["text"] for event in stored_log(own_redis)] == ["One, ", "two."]


def test_an_answer_restarted_leaves_no_log_of_the_attempt_behind(
    own_redis: EmbeddedRedis,
) -> None:
    async def scenario() -> None:
        publisher = delta_log.StreamPublisher(MESSAGE)
        await publisher.start({"type": "started"})
        await publisher.publish_deltas([Delta("thinking", "Half a")])
        await publisher.finish({"type": "restarted", "attempt": 2}, patience=5)

    asyncio.run(scenario())

    assert stored_log(own_redis) == []
