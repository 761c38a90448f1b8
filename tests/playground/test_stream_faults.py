"""The stream consumer when things go wrong: a planted cookie, a share link turned off, a
flood of sockets from one address, a Redis that is down or lost events, an answer that
starts over. Driven with Channels' WebsocketCommunicator over the real Redis channel layer."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from playground import services, viewers
from playground.consumers import MessageStreamConsumer
from playground.models import Message
from playground.realtime import channel_groups
from tests.playground.test_consumers import (
    OWNER,
    communicator,
    delta,
    make_message,
    receive_all,
    session_store,
    stored_sessions,  # noqa: F401  (autouse: the owner's session exists)
)

pytestmark = pytest.mark.django_db(transaction=True)


async def next_event(socket: WebsocketCommunicator, timeout: float = 3) -> dict[str, Any]:
    output = await socket.receive_output(timeout)
    if output["type"] == "websocket.close":
        return {"closed": output.get("code", 1000)}
    return json.loads(output["text"])


def test_a_cookie_naming_no_stored_session_opens_nothing() -> None:
    # The conversation was made under a key that no session of the server's holds: a cookie
    # planted with that key is nobody.
    message = make_message(deltas=[delta(1)])
    Message.objects.filter(pk=message.pk).update(session_key="plantedbysomeone0123")
    message.conversation.__class__.objects.filter(pk=message.conversation_id).update(
        session_key="plantedbysomeone0123"
    )

    async def scenario() -> list[dict]:
        socket = communicator(message, session="plantedbysomeone0123")
        await socket.connect()
        return await receive_all(socket)

    assert asyncio.run(scenario())[0]["code"] == "not_found"


def test_turning_a_share_link_off_closes_the_streams_opened_with_it_at_once() -> None:
    message = make_message(status=Message.Status.RUNNING)
    token = message.conversation.share_token

    async def scenario() -> tuple[list[dict], dict, float]:
        shared = communicator(message, session=None, query=f"share={token}")
        owner = communicator(message)
        await shared.connect()
        await owner.connect()
        await next_event(shared), await next_event(owner)  # started
        started = asyncio.get_running_loop().time()
        await asyncio.to_thread(services.revoke_share_link, message.conversation)
        events = await receive_all(shared)
        took = asyncio.get_running_loop().time() - started
        await asyncio.to_thread(channel_groups.publish, message.pk, delta(1))
        owners = await next_event(owner)
        await owner.disconnect()
        return events, owners, took

    events, owners, took = asyncio.run(scenario())

    assert events[0]["code"] == "revoked" and events[0]["type"] == "error"
    assert events[-1] == {"closed": 4403}
    assert took < 1.0
    assert owners == delta(1), "the owner's own stream goes on"


def test_a_link_turned_off_while_its_event_was_lost_is_closed_by_the_sweep() -> None:
    message = make_message(status=Message.Status.RUNNING)
    token = message.conversation.share_token

    async def scenario() -> list[dict]:
        shared = communicator(message, session=None, query=f"share={token}")
        await shared.connect()
        await next_event(shared)
        conversation = message.conversation
        conversation.share_token = None  # as revoking does, without its announcement
        await asyncio.to_thread(conversation.save, update_fields=["share_token"])
        await viewers.tender().beat()
        return await receive_all(shared)

    events = asyncio.run(scenario())

    assert events[0]["code"] == "revoked"
    assert events[-1] == {"closed": 4403}


def handshake(message: Message, client: tuple[str, int]) -> WebsocketCommunicator:
    socket = communicator(message)
    socket.scope["client"] = client
    socket.scope["extensions"] = {"websocket.http.response": {}}
    return socket


def test_an_address_may_open_only_so_many_streams(settings: Any) -> None:
    settings.IP_MAX_WEBSOCKETS = 2
    message = make_message(status=Message.Status.RUNNING)

    async def scenario() -> tuple[list[dict], dict, dict]:
        sockets = [handshake(message, ("192.0.2.5", 4000 + n)) for n in range(3)]
        opened = [await socket.connect() for socket in sockets[:2]]
        await sockets[2].send_input({"type": "websocket.connect"})
        refused = await sockets[2].receive_output(3)
        body = await sockets[2].receive_output(3)
        other = handshake(message, ("192.0.2.6", 4000))
        elsewhere = await other.connect()
        for socket in (*sockets[:2], other):
            await socket.disconnect()
        return [{"connected": ok} for ok, _ in opened], refused, {"body": body, "other": elsewhere}

    opened, refused, rest = asyncio.run(scenario())

    assert opened == [{"connected": True}, {"connected": True}]
    assert refused["type"] == "websocket.http.response.start" and refused["status"] == 429
    assert json.loads(rest["body"]["body"])["error"]["code"] == "rate_limited"
    assert rest["other"][0] is True, "another address has its own budget"


def test_a_closed_stream_gives_its_place_in_the_budget_back(settings: Any) -> None:
    settings.IP_MAX_WEBSOCKETS = 1
    message = make_message(status=Message.Status.RUNNING)

    async def scenario() -> tuple[bool, bool]:
        first = handshake(message, ("192.0.2.7", 1))
        first_ok, _ = await first.connect()
        await first.disconnect()
        second = handshake(message, ("192.0.2.7", 2))
        second_ok, _ = await second.connect()
        await second.disconnect()
        return first_ok, second_ok

    assert asyncio.run(scenario()) == (True, True)


def test_while_redis_is_down_the_handshake_is_refused_with_503(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = make_message(status=Message.Status.RUNNING)

    async def refused_join(tender: Any, viewer: Any, address: str) -> bool:
        raise ConnectionRefusedError(111, "Connection refused")

    async def scenario() -> tuple[dict, dict]:
        monkeypatch.setattr(viewers.Tender, "join", refused_join)
        socket = handshake(message, ("192.0.2.8", 1))
        await socket.send_input({"type": "websocket.connect"})
        return await socket.receive_output(3), await socket.receive_output(3)

    start, body = asyncio.run(scenario())

    assert start["status"] == 503
    assert (b"retry-after", b"5") in start["headers"]
    assert json.loads(body["body"])["error"]["code"] == "unavailable"


def test_an_answer_whose_final_event_was_lost_is_ended_by_the_sweep_from_the_database() -> None:
    message = make_message(status=Message.Status.RUNNING)
    stored = [delta(seq) for seq in range(1, 5)]

    async def scenario() -> list[dict]:
        socket = communicator(message)
        await socket.connect()
        await next_event(socket)  # started
        await asyncio.to_thread(channel_groups.publish, message.pk, delta(1))
        assert await next_event(socket) == delta(1)
        # The answer ended while Redis was away: stored, never announced, its log lost.
        await asyncio.to_thread(
            Message.objects.filter(pk=message.pk).update,
            status=Message.Status.DONE,
            deltas=stored,
            finished_at=timezone.now() - timedelta(seconds=10),
        )
        await viewers.tender().beat()
        return await receive_all(socket)

    events = asyncio.run(scenario())

    assert [e.get("seq") for e in events if e.get("type") == "delta"] == [2, 3, 4]
    assert events[-2]["type"] == "done" and events[-2]["seq"] == 4
    assert events[-1] == {"closed": 1000}


def test_a_final_event_beyond_what_the_log_holds_is_completed_from_the_database() -> None:
    # Redis restarted empty mid-answer: the viewer has seq 1, the log is gone, and the final
    # event says the answer has 3 deltas.
    message = make_message(status=Message.Status.RUNNING)
    stored = [delta(seq) for seq in range(1, 4)]

    async def scenario() -> list[dict]:
        socket = communicator(message)
        await socket.connect()
        await next_event(socket)
        await asyncio.to_thread(channel_groups.publish, message.pk, delta(1))
        await next_event(socket)
        await asyncio.to_thread(
            Message.objects.filter(pk=message.pk).update,
            status=Message.Status.DONE,
            deltas=stored,
            finished_at=timezone.now(),
        )
        await asyncio.to_thread(
            channel_groups.publish, message.pk, {"type": "done", "stats": {}, "seq": 3}
        )
        return await receive_all(socket)

    events = asyncio.run(scenario())

    assert [e.get("seq") for e in events if e.get("type") == "delta"] == [2, 3]
    assert events[-2]["type"] == "done"


def test_a_restarted_answer_is_told_and_its_new_deltas_from_seq_one_are_relayed() -> None:
    message = make_message(status=Message.Status.RUNNING)

    async def scenario() -> list[dict]:
        socket = communicator(message)
        await socket.connect()
        await next_event(socket)
        for seq in (1, 2, 3):
            await asyncio.to_thread(
                channel_groups.publish, message.pk, delta(seq, text=f"old {seq}")
            )
        events = [await next_event(socket) for _ in range(3)]
        restarted = {"type": "restarted", "attempt": 2}
        await asyncio.to_thread(channel_groups.publish, message.pk, restarted)
        await asyncio.to_thread(
            channel_groups.publish, message.pk, {"type": "started", "backend": "b", "attempt": 2}
        )
        await asyncio.to_thread(channel_groups.publish, message.pk, delta(1, text="new 1"))
        events += [await next_event(socket) for _ in range(3)]
        await socket.disconnect()
        return events

    events = asyncio.run(scenario())

    assert [e["type"] for e in events] == ["delta"] * 3 + ["restarted", "started", "delta"]
    assert events[-1] == delta(1, text="new 1"), "not dropped as a seq it already sent"


def test_a_page_reconnecting_with_an_earlier_attempts_text_is_told_to_start_over() -> None:
    message = make_message(status=Message.Status.QUEUED)
    Message.objects.filter(pk=message.pk).update(attempts=1)  # it ran once, then went back

    async def scenario() -> list[dict]:
        socket = communicator(message, query="after=30&attempt=1")
        await socket.connect()
        events = [await next_event(socket) for _ in range(2)]
        await socket.disconnect()
        return events

    events = asyncio.run(scenario())

    assert events[0] == {"type": "restarted", "attempt": 2}
    assert events[1]["type"] == "queued", "and hears its place in line, as a fresh answer"


def test_an_api_client_that_does_not_say_its_attempt_gets_the_stream_as_before() -> None:
    message = make_message(deltas=[delta(seq) for seq in range(1, 4)])
    Message.objects.filter(pk=message.pk).update(attempts=2)

    async def scenario() -> list[dict]:
        socket = WebsocketCommunicator(
            MessageStreamConsumer.as_asgi(), f"/ws/messages/{message.pk}/?after=1"
        )
        socket.scope["url_route"] = {"kwargs": {"message_id": message.pk}}
        socket.scope["query_string"] = b"after=1"
        socket.scope["session"] = session_store(OWNER)
        await socket.connect()
        return await receive_all(socket)

    events = asyncio.run(scenario())

    assert [e.get("seq") for e in events if e.get("type") == "delta"] == [2, 3]
