"""The message stream consumer: authorize, replay, relay without gaps or duplicates.

Driven with Channels' WebsocketCommunicator over the real Redis channel layer.
"""

from __future__ import annotations

import asyncio
import json
import time
from importlib import import_module
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings

from playground import consumers, viewers
from playground.consumers import MessageStreamConsumer
from playground.models import Message
from playground.realtime import channel_groups, delta_log, presence, redis_clients
from tests.support.rows import stored_answer
from tests.support.sessions import visitor_session

pytestmark = pytest.mark.django_db(transaction=True)

OWNER = "owner-session"
SOMEONE_ELSE = "someone-else"


def make_message(
    status: str = Message.Status.DONE, deltas: list | None = None, session: str = OWNER
) -> Message:
    return stored_answer(session, status, deltas=deltas or [])


def delta(seq: int, section: str = "output", text: str | None = None) -> dict[str, Any]:
    return {"type": "delta", "seq": seq, "section": section, "text": text or f"<{seq}>"}


def communicator(
    message: Message, session: str | None = OWNER, query: str = ""
) -> WebsocketCommunicator:
    """A socket opened with the cookie of `session` (a stored visitor session: see
    `stored_sessions`; any other key is one the server never created)."""
    path = f"/ws/messages/{message.pk}/" + (f"?{query}" if query else "")
    socket = WebsocketCommunicator(MessageStreamConsumer.as_asgi(), path)
    socket.scope["url_route"] = {"kwargs": {"message_id": message.pk}}
    socket.scope["query_string"] = query.encode()
    socket.scope["session"] = session_store(session)
    return socket


def session_store(key: str | None) -> Any:
    return import_module(settings.SESSION_ENGINE).SessionStore(key)


@pytest.fixture(autouse=True)
def stored_sessions() -> None:
    """The owner's and another visitor's sessions exist: the server created them."""
    visitor_session(OWNER)
    visitor_session(SOMEONE_ELSE)


async def receive_all(socket: WebsocketCommunicator, timeout: float = 3) -> list[dict]:
    """Events until the server closes the socket."""
    events = []
    while True:
        output = await socket.receive_output(timeout)
        if output["type"] == "websocket.close":
            events.append({"closed": output.get("code", 1000)})
            return events
        events.append(json.loads(output["text"]))


def test_a_finished_answer_is_replayed_after_the_given_seq_then_closed() -> None:
    message = make_message(deltas=[delta(i) for i in range(1, 6)])

    async def scenario() -> list[dict]:
        socket = communicator(message, query="after=2")
        connected, _ = await socket.connect()
        assert connected
        return await receive_all(socket)

    events = asyncio.run(scenario())

    assert [e.get("seq") for e in events[:3]] == [3, 4, 5]
    assert events[3]["type"] == "done"
    assert events[4] == {"closed": 1000}


def test_a_stranger_is_refused_and_learns_nothing() -> None:
    message = make_message(deltas=[delta(1)])

    async def scenario() -> list[dict]:
        socket = communicator(message, session=SOMEONE_ELSE)
        await socket.connect()
        return await receive_all(socket)

    events = asyncio.run(scenario())

    assert events == [
        {"type": "error", "code": "not_found", "message": "No such message."},
        {"closed": 4404},
    ]


def test_the_share_token_opens_the_stream_to_anyone() -> None:
    message = make_message(deltas=[delta(1), delta(2)])
    token = message.conversation.share_token

    async def scenario(query: str) -> list[dict]:
        socket = communicator(message, session=None, query=query)
        await socket.connect()
        return await receive_all(socket)

    assert asyncio.run(scenario(f"share={token}"))[-2]["type"] == "done"
    assert asyncio.run(scenario("share=wrong-token"))[0]["code"] == "not_found"


def test_a_garbage_after_parameter_replays_everything() -> None:
    message = make_message(deltas=[delta(1), delta(2)])

    async def scenario() -> list[dict]:
        socket = communicator(message, query="after=banana")
        await socket.connect()
        return await receive_all(socket)

    assert [e.get("seq") for e in asyncio.run(scenario())[:2]] == [1, 2]


def test_live_deltas_are_relayed_once_each_and_gaps_are_filled_from_the_log() -> None:
    message = make_message(status=Message.Status.RUNNING)
    redis = redis_clients.redis_client()
    redis.rpush(delta_log.delta_log_key(message.pk), json.dumps(delta(1)))

    async def scenario() -> list[dict]:
        socket = communicator(message, query="after=0")
        await socket.connect()
        first = [json.loads((await socket.receive_output(3))["text"]) for _ in range(2)]
        for seq in (2, 3):
            redis.rpush(delta_log.delta_log_key(message.pk), json.dumps(delta(seq)))
        # seq 2 is "lost" in transit: only 1 (a duplicate) and 3 are published.
        await asyncio.to_thread(channel_groups.publish, message.pk, delta(1))
        await asyncio.to_thread(channel_groups.publish, message.pk, delta(3))
        await asyncio.to_thread(channel_groups.publish, message.pk, {"type": "done", "stats": {}})
        return first + await receive_all(socket)

    events = asyncio.run(scenario())

    assert events[0] == delta(1)
    assert events[1]["type"] == "started"
    assert [e.get("seq") for e in events if e.get("type") == "delta"] == [1, 2, 3]
    assert events[-2] == {"type": "done", "stats": {}}


def test_a_waiting_viewer_hears_its_place_and_counts_as_present() -> None:
    message = make_message(status=Message.Status.QUEUED)

    async def scenario() -> tuple[dict, float | None, float | None, float | None]:
        before = await asyncio.to_thread(presence.last_seen, message.pk)
        socket = communicator(message)
        await socket.connect()
        event = json.loads((await socket.receive_output(3))["text"])
        joined = await asyncio.to_thread(presence.last_seen, message.pk)
        await asyncio.sleep(0.05)
        await socket.disconnect()
        await asyncio.sleep(0.1)
        left = await asyncio.to_thread(presence.last_seen, message.pk)
        return event, before, joined, left

    event, before, joined, left = asyncio.run(scenario())

    assert {k: v for k, v in event.items() if k != "as_of"} == {
        "type": "queued",
        "position": 1,
        "eta_seconds": 0.0,
        "on_hold": False,
    }
    assert event["as_of"] > 0
    assert before is None
    assert joined is not None and abs(joined - time.time()) < 5, "seen when the socket opened"
    assert left is not None and left > joined, "and again when it closed: the grace starts then"


def test_an_open_socket_keeps_its_viewer_present_without_a_poll() -> None:
    # The tender marks every watched message seen each heartbeat, so a visitor holding only
    # a socket is never taken for gone, even after Redis lost the marks (a restart).
    message = make_message(status=Message.Status.QUEUED)

    async def scenario() -> float | None:
        socket = communicator(message)
        await socket.connect()
        await socket.receive_output(3)
        await asyncio.to_thread(redis_clients.redis_client().delete, presence.seen_key(message.pk))
        await viewers.tender().beat()
        seen = await asyncio.to_thread(presence.last_seen, message.pk)
        await socket.disconnect()
        return seen

    seen = asyncio.run(scenario())

    assert seen is not None and abs(seen - time.time()) < 5


def test_a_place_in_line_computed_earlier_but_delivered_later_is_dropped() -> None:
    message = make_message(status=Message.Status.QUEUED)

    async def scenario() -> list[dict]:
        socket = communicator(message)
        await socket.connect()
        first = json.loads((await socket.receive_output(3))["text"])
        fresh = {"type": "queued", "position": 1, "eta_seconds": 5.0, "as_of": first["as_of"] + 2}
        stale = {"type": "queued", "position": 3, "eta_seconds": 9.0, "as_of": first["as_of"] + 1}
        for event in (fresh, stale, {"type": "cancelled"}):
            await asyncio.to_thread(channel_groups.publish, message.pk, event)
        return [first, *await receive_all(socket)]

    events = asyncio.run(scenario())

    assert [e.get("position") for e in events if e.get("type") == "queued"] == [1, 1]
    assert events[-2] == {"type": "cancelled"}


def test_a_higher_place_with_a_newer_stamp_is_an_older_reading_and_is_dropped() -> None:
    # Two processes stamp their readings of the line before reading it, so a reading that
    # finished first can carry the newer stamp; a waiting visitor's place only falls.
    message = make_message(status=Message.Status.QUEUED)

    async def scenario() -> list[dict]:
        socket = communicator(message)
        await socket.connect()
        first = json.loads((await socket.receive_output(3))["text"])
        higher = {"type": "queued", "position": 2, "eta_seconds": 9.0, "as_of": first["as_of"] + 1}
        same = {"type": "queued", "position": 1, "eta_seconds": 4.0, "as_of": first["as_of"] + 2}
        for event in (higher, same, {"type": "cancelled"}):
            await asyncio.to_thread(channel_groups.publish, message.pk, event)
        return [first, *await receive_all(socket)]

    events = asyncio.run(scenario())

    queued = [e for e in events if e.get("type") == "queued"]
    assert [e["position"] for e in queued] == [1, 1]
    assert queued[-1]["eta_seconds"] == 4.0
    assert events[-2] == {"type": "cancelled"}


def test_a_reserved_slot_given_back_is_told_as_a_place_in_line_again() -> None:
    # Place 0 is a slot reserved; a worker that stops before the answer begins puts it back
    # in its place in line, and that place is news, not a stale reading.
    message = make_message(status=Message.Status.QUEUED)

    async def scenario() -> list[dict]:
        socket = communicator(message)
        await socket.connect()
        first = json.loads((await socket.receive_output(3))["text"])
        reserved = {
            "type": "queued",
            "position": 0,
            "eta_seconds": 0.0,
            "as_of": first["as_of"] + 1,
        }
        back = {"type": "queued", "position": 3, "eta_seconds": 20.0, "as_of": first["as_of"] + 2}
        for event in (reserved, back, {"type": "cancelled"}):
            await asyncio.to_thread(channel_groups.publish, message.pk, event)
        return [first, *await receive_all(socket)]

    events = asyncio.run(scenario())

    assert [e["position"] for e in events if e.get("type") == "queued"] == [1, 0, 3]


def test_events_are_published_on_the_channel_the_layer_subscribes_viewers_to() -> None:
    # Publishers write to the layer's group channel directly (channel_groups.group_channel); a layer
    # that named its channels differently would leave every viewer waiting in silence.
    from channels.layers import get_channel_layer

    async def layer_channels() -> tuple[str, str]:
        layer = get_channel_layer()
        return (
            layer._get_group_channel_name(channel_groups.group_name("m-1")),
            layer._get_group_channel_name(channel_groups.LINE_GROUP),
        )

    assert (channel_groups.group_channel("m-1"), channel_groups.line_channel()) == asyncio.run(
        layer_channels()
    )


def line_event(as_of: float, places: dict[str, int]) -> dict[str, Any]:
    return {
        "type": "line",
        "as_of": as_of,
        "on_hold": False,
        "places": {message_id: [place, place * 3.0] for message_id, place in places.items()},
    }


def test_a_waiting_viewer_is_told_its_place_from_the_event_the_whole_line_shares(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consumers, "PLACE_INTERVAL", 0.3)
    ahead = [make_message(status=Message.Status.QUEUED, session=f"ahead-{n}") for n in range(2)]
    message = make_message(status=Message.Status.QUEUED)

    async def scenario() -> list[tuple[float, dict]]:
        socket = communicator(message)
        await socket.connect()
        first = json.loads((await socket.receive_output(3))["text"])
        heard = [(time.monotonic(), first)]
        # Within the interval of the first place: held back, the newer replacing the older.
        for step, place in enumerate((2, 1), start=1):
            places = {ahead[1].pk: 1, message.pk: place} if place == 2 else {message.pk: 1}
            event = line_event(first["as_of"] + step, places)
            await asyncio.to_thread(channel_groups.publish_to_line, event)
            await asyncio.sleep(0.02)
        later = json.loads((await socket.receive_output(3))["text"])
        heard.append((time.monotonic(), later))
        # Nothing more is due: the held place was the last news.
        assert await socket.receive_nothing(0.4)
        await socket.disconnect()
        return heard

    (told_at, first), (later_at, later) = asyncio.run(scenario())

    assert first["position"] == 3
    assert later == {
        "type": "queued",
        "position": 1,
        "eta_seconds": 3.0,
        "as_of": later["as_of"],
        "on_hold": False,
    }
    assert later["as_of"] == first["as_of"] + 2
    assert later_at - told_at >= 0.25, "a second place within the interval waited for it"


def test_a_reserved_slot_from_the_line_event_is_told_at_once() -> None:
    message = make_message(status=Message.Status.QUEUED)

    async def scenario() -> tuple[float, dict]:
        socket = communicator(message)
        await socket.connect()
        first = json.loads((await socket.receive_output(3))["text"])
        started = time.monotonic()
        event = line_event(first["as_of"] + 1, {message.pk: 0})
        await asyncio.to_thread(channel_groups.publish_to_line, event)
        reserved = json.loads((await socket.receive_output(3))["text"])
        await socket.disconnect()
        return time.monotonic() - started, reserved

    took, reserved = asyncio.run(scenario())

    assert reserved["position"] == 0
    assert took < consumers.PLACE_INTERVAL


def test_a_started_answers_viewer_hears_nothing_more_from_the_line() -> None:
    message = make_message(status=Message.Status.QUEUED)
    elsewhere = make_message(status=Message.Status.QUEUED, session=SOMEONE_ELSE)

    async def scenario() -> list[dict]:
        socket = communicator(message)
        await socket.connect()
        first = json.loads((await socket.receive_output(3))["text"])
        # A line event without this answer (it was read before this answer joined) says
        # nothing to it.
        await asyncio.to_thread(
            channel_groups.publish_to_line, line_event(first["as_of"] + 1, {elsewhere.pk: 1})
        )
        assert await socket.receive_nothing(0.2)
        await asyncio.to_thread(channel_groups.publish, message.pk, {"type": "started"})
        await asyncio.sleep(0.1)
        await asyncio.to_thread(
            channel_groups.publish_to_line, line_event(first["as_of"] + 5, {message.pk: 1})
        )
        await asyncio.sleep(0.1)
        await asyncio.to_thread(channel_groups.publish, message.pk, {"type": "cancelled"})
        return [first, *await receive_all(socket)]

    events = asyncio.run(scenario())

    assert [e.get("type") for e in events] == ["queued", "started", "cancelled", None]


class ViewerWhoLeaves:
    """The server side of a socket as uvicorn behaves once the viewer has closed it: a send
    raises (uvicorn's ClientDisconnected is an OSError) and a close after the peer's own close
    is refused with a RuntimeError. The viewer leaves on the first event named `leaves_on`."""

    def __init__(self, scope: dict[str, Any], leaves_on: str) -> None:
        self.scope = scope
        self.leaves_on = leaves_on
        self.gone = asyncio.Event()
        self.received: list[dict] = []
        self.connect_sent = False

    async def receive(self) -> dict[str, Any]:
        if not self.connect_sent:
            self.connect_sent = True
            return {"type": "websocket.connect"}
        await self.gone.wait()
        # Read only after the server's current handler has run into the closed socket.
        await asyncio.sleep(0.5)
        return {"type": "websocket.disconnect", "code": 1005}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.close" and self.gone.is_set():
            raise RuntimeError("Unexpected ASGI message 'websocket.close', after sending it")
        if message["type"] == "websocket.send":
            if self.gone.is_set():
                raise OSError("the viewer is gone")
            event = json.loads(message["text"])
            self.received.append(event)
            if event.get("type") == self.leaves_on:
                self.gone.set()

    async def run(self) -> None:
        app = MessageStreamConsumer.as_asgi()
        await asyncio.wait_for(app(self.scope, self.receive, self.send), 5)


def scope_for(message: Message) -> dict[str, Any]:
    return {
        "type": "websocket",
        "path": f"/ws/messages/{message.pk}/",
        "query_string": b"",
        "headers": [],
        "url_route": {"args": (), "kwargs": {"message_id": message.pk}},
        "session": session_store(OWNER),
    }


def test_a_viewer_who_closes_on_the_final_event_before_the_server_does_is_no_error() -> None:
    message = make_message(deltas=[delta(1)])
    viewer = ViewerWhoLeaves(scope_for(message), leaves_on="done")

    asyncio.run(viewer.run())  # raised the refused close before

    assert [event["type"] for event in viewer.received] == ["delta", "done"]


def test_a_viewer_gone_mid_stream_is_let_go_of_without_waiting_for_its_disconnect() -> None:
    message = make_message(status=Message.Status.RUNNING)
    viewer = ViewerWhoLeaves(scope_for(message), leaves_on="started")

    async def scenario() -> int:
        consumer = asyncio.create_task(viewer.run())
        await asyncio.wait_for(viewer.gone.wait(), 3)
        await asyncio.sleep(0.1)  # the consumer is subscribed and counted as watching
        await asyncio.to_thread(channel_groups.publish, message.pk, delta(1))
        await consumer
        return len(viewers.tender()._viewers)

    assert asyncio.run(scenario()) == 0, "the tender let go of it"
    assert [event["type"] for event in viewer.received] == ["started"]


def test_a_server_without_lifespan_starts_listening_with_its_first_viewer() -> None:
    # Under daphne (no lifespan protocol) the first viewer subscribes the standing channel
    # that keeps the layer reading between viewers (tests/playground/test_realtime_pipes.py).
    message = make_message(deltas=[delta(1)])

    async def scenario() -> tuple[str | None, str | None]:
        before = channel_groups.standing_channel()
        socket = communicator(message)
        connected, _ = await socket.connect()
        assert connected
        await receive_all(socket)
        return before, channel_groups.standing_channel()

    before, after = asyncio.run(scenario())

    assert before is None
    assert after is not None and after.startswith("asgistanding.")
