"""realtime.crowds: every socket counts in its answer's crowd while it is open (and no longer
once its process stopped renewing it), the worker reads the crowds' sizes, and an answer
watched by a crowd is published in fewer, larger deltas with the same text and gap-free seqs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from inference.parser import parse
from inference.samples import get_sample
from playground import services, viewers
from playground.models import Message
from playground.realtime import crowds, redis_clients
from tests.playground.test_consumers import (  # stored_sessions: the owner's session exists
    communicator,
    make_message,
    stored_sessions,
)
from tests.support.simulator import running_simulator

pytestmark = pytest.mark.django_db(transaction=True)

__all__ = ["stored_sessions"]


def test_a_lone_viewer_gets_every_burst_at_the_usual_interval(settings: Any) -> None:
    settings.STREAM_FLUSH_INTERVAL = 0.02
    settings.STREAM_CROWD_FRAMES_PER_SECOND = 10_000

    assert crowds.flush_interval(0) == 0.02
    assert crowds.flush_interval(1) == 0.02
    assert crowds.flush_interval(200) == 0.02


def test_a_crowd_shares_the_frames_a_second_and_is_published_at_least_four_times_a_second(
    settings: Any,
) -> None:
    settings.STREAM_FLUSH_INTERVAL = 0.02
    settings.STREAM_CROWD_FRAMES_PER_SECOND = 10_000

    assert crowds.flush_interval(1_000) == pytest.approx(0.1)
    assert crowds.flush_interval(2_000) == pytest.approx(0.2)
    assert crowds.flush_interval(1_000_000) == crowds.LONGEST_FLUSH_INTERVAL


def test_a_longer_usual_interval_is_never_shortened_by_a_crowd(settings: Any) -> None:
    settings.STREAM_FLUSH_INTERVAL = 0.5
    settings.STREAM_CROWD_FRAMES_PER_SECOND = 100

    assert crowds.flush_interval(1_000) == 0.5


def crowd_size(message_id: str) -> int:
    return redis_clients.redis_client().zcount(crowds.crowd_key(message_id), time.time(), "+inf")


def test_each_open_socket_counts_in_its_answers_crowd_until_it_closes() -> None:
    message = make_message(status=Message.Status.RUNNING)
    token = message.conversation.share_token

    async def scenario() -> list[int]:
        sizes = []
        owner = communicator(message)
        await owner.connect()
        await owner.receive_output(3)
        sizes.append(await asyncio.to_thread(crowd_size, message.pk))
        stranger = communicator(message, session=None, query=f"share={token}")
        await stranger.connect()
        await stranger.receive_output(3)
        sizes.append(await asyncio.to_thread(crowd_size, message.pk))
        await stranger.disconnect()
        await asyncio.sleep(0.1)
        sizes.append(await asyncio.to_thread(crowd_size, message.pk))
        await owner.disconnect()
        await asyncio.sleep(0.1)
        sizes.append(await asyncio.to_thread(crowd_size, message.pk))
        return sizes

    assert asyncio.run(scenario()) == [1, 2, 1, 0]


def test_the_heartbeat_renews_a_sockets_place_in_the_crowd() -> None:
    message = make_message(status=Message.Status.RUNNING)
    key = crowds.crowd_key(message.pk)
    redis = redis_clients.redis_client()

    async def scenario() -> tuple[int, int]:
        socket = communicator(message)
        await socket.connect()
        await socket.receive_output(3)
        # As if the lease had nearly run out: the next beat pushes it a minute ahead again.
        members = await asyncio.to_thread(redis.zrange, key, 0, -1)
        await asyncio.to_thread(redis.zadd, key, {members[0]: time.time() - 1})
        lapsed = await asyncio.to_thread(crowd_size, message.pk)
        await viewers.tender().beat()
        renewed = await asyncio.to_thread(crowd_size, message.pk)
        await socket.disconnect()
        return lapsed, renewed

    assert asyncio.run(scenario()) == (0, 1)


def test_the_worker_reads_the_sizes_of_its_generations_crowds_leaving_out_lapsed_sockets() -> None:
    redis = redis_clients.redis_client()
    now = time.time()
    redis.zadd(crowds.crowd_key("a"), {"one": now + 60, "two": now + 60, "gone": now - 1})
    redis.zadd(crowds.crowd_key("b"), {"one": now + 60})

    async def scenario() -> tuple[int, int, int, int]:
        watch = crowds.crowd_watch()
        watch.watch("a")
        watch.watch("b")
        watch.watch("nobody")
        await watch.read()
        sizes = watch.size("a"), watch.size("b"), watch.size("nobody")
        watch.unwatch("a")
        watch.unwatch("b")
        watch.unwatch("nobody")
        return (*sizes, watch.size("a"))

    assert asyncio.run(scenario()) == (2, 1, 0, 0)


@pytest.fixture
def slow_sim(settings: Any) -> Iterator[str]:
    # 100 tokens a second: 10 ms between tokens, so nearly every token is a delta of its own
    # for a lone viewer (20 ms interval) and a crowd's tenth of a second merges about ten.
    with running_simulator(tokens_per_second=100.0) as url:
        settings.TGI_URLS = [url]
        settings.GENERATION_CONCURRENCY = 2
        settings.STREAM_FLUSH_INTERVAL = 0.02
        settings.STREAM_CROWD_FRAMES_PER_SECOND = 10_000
        yield url


def generate_watched_by(watchers: int) -> Message:
    message = services.submit(session_key=f"s{watchers}", client_ip="10.0.0.1", sample="sheep")
    if watchers:
        expiry = time.time() + 60
        redis_clients.redis_client().zadd(
            crowds.crowd_key(message.pk), {f"socket-{i}": expiry for i in range(watchers)}
        )
    services.run_generation(message.pk)
    message.refresh_from_db()
    return message


def test_an_answer_watched_by_a_crowd_is_published_in_fewer_larger_deltas_with_the_same_text(
    slow_sim: str, samples: Any, enqueued: list[str]
) -> None:
    alone = generate_watched_by(0)
    crowded = generate_watched_by(1_000)

    expected = parse(get_sample("sheep").scripted_answer).as_dict()
    for message in (alone, crowded):
        assert message.status == Message.Status.DONE
        assert message.sections == expected
        assert [event["seq"] for event in message.deltas] == list(range(1, len(message.deltas) + 1))
    assert len(crowded.deltas) * 3 < len(alone.deltas), (len(crowded.deltas), len(alone.deltas))
