"""The WebSocket stream of one message: authorize, replay, then relay (DESIGN 4.3).

The socket only ever carries server → client events. On connect the consumer subscribes to the
message's group *before* reading what was already written, then relays live events, dropping
any seq it already sent and filling any gap from the persisted log, so the viewer sees every
delta exactly once and in order.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import DatabaseSyncToAsync
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from playground import live, metrics, services

FINAL_EVENTS = {"done", "error", "cancelled"}
CLOSE_NOT_FOUND = 4404
CLOSE_GONE = 1006  # abnormal closure: what a vanished peer amounts to


def _parse_after(values: list[str]) -> int:
    try:
        return max(0, int(values[0]))
    except (IndexError, ValueError):
        return 0


class MessageStreamConsumer(AsyncJsonWebsocketConsumer):
    message_id: str
    last_seq: int
    subscribed: bool = False
    closed: bool = False
    started_sent: bool = False
    queue_as_of: float = 0.0
    watching: bool = False
    counted: bool = False

    async def connect(self) -> None:
        self.message_id = self.scope["url_route"]["kwargs"]["message_id"]
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.last_seq = _parse_after(query.get("after", []))
        share_token = (query.get("share") or [None])[0]
        session = self.scope.get("session")
        session_key = session.session_key if session is not None else None

        # A server without the lifespan protocol (daphne) starts listening here instead.
        await live.keep_listening()
        await self.accept()
        self.counted = True
        await metrics.websocket_opened()
        await self.channel_layer.group_add(live.group_name(self.message_id), self.channel_name)
        self.subscribed = True
        # Not thread-sensitive: outside Django's HTTP handler, every thread-sensitive call of
        # the process runs on one shared thread, and a burst of viewers connecting would
        # queue on it one by one.
        state = await DatabaseSyncToAsync(services.stream_state, thread_sensitive=False)(
            self.message_id, session_key=session_key, share_token=share_token
        )
        if state is None:
            await self.send_json(
                {"type": "error", "code": "not_found", "message": "No such message."}
            )
            await self._finish(CLOSE_NOT_FOUND)
            return
        if state.final_event is not None:
            for event in live.delta_events(state.stored_events, self.last_seq):
                await self.send_json(event)
            await self.send_json(state.final_event)
            await self._finish()
            return
        await live.watch_started(self.message_id)
        self.watching = True
        await self._send_missing()
        if state.status_event is not None:
            await self._send_status(state.status_event)

    async def disconnect(self, code: int) -> None:
        if self.counted:
            self.counted = False
            await metrics.websocket_closed()
        if self.watching:
            self.watching = False
            await live.watch_ended(self.message_id)
        if self.subscribed:
            self.subscribed = False
            await self.channel_layer.group_discard(
                live.group_name(self.message_id), self.channel_name
            )

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # Prompts and controls arrive over HTTP (CSRF, rate limits); the socket is one-way.
        return None

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        return None

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' own dispatch first closes stale database connections, through a hop to
        # the process's single synchronous thread, before *every* message: one hop per delta
        # per viewer, all queued on that one thread. None of this consumer's handlers touches
        # the database (connect reads it through DatabaseSyncToAsync, which cleans up itself),
        # so events go straight to their handler.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        try:
            await handler(message)
        except OSError:
            # The viewer's connection is gone and the server (uvicorn) refuses the send, before
            # the consumer has read the disconnect that is waiting for it: let go of the group,
            # the presence count and the gauge now, as the disconnect would have.
            await self.disconnect(CLOSE_GONE)
            raise StopConsumer() from None

    async def stream_event(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        event = message["event"]
        kind = event.get("type")
        if kind == "delta":
            seq = event["seq"]
            if seq <= self.last_seq:
                return
            if seq > self.last_seq + 1:
                await self._send_missing()
                if seq <= self.last_seq:
                    return
            await self.send_json(event)
            self.last_seq = seq
            return
        if kind in FINAL_EVENTS:
            await self._send_missing()
            await self.send_json(event)
            await self._finish()
            return
        await self._send_status(event)

    async def _send_status(self, event: dict[str, Any]) -> None:
        # The started event may reach a viewer twice (the snapshot on connect and the live
        # publish racing it); once is enough. Places in line are published by several
        # processes at once, so one computed earlier can arrive later: only news is passed on,
        # and nothing about the line once the answer has started.
        kind = event.get("type")
        if kind == "started":
            if self.started_sent:
                return
            self.started_sent = True
        elif kind == "queued":
            as_of = float(event.get("as_of", 0.0))
            if self.started_sent or self.last_seq > 0 or as_of < self.queue_as_of:
                return
            self.queue_as_of = as_of
        await self.send_json(event)

    async def _send_missing(self) -> None:
        for event in await live.aread_delta_log(self.message_id, self.last_seq):
            if event["seq"] == self.last_seq + 1:
                await self.send_json(event)
                self.last_seq = event["seq"]

    async def _finish(self, code: int = 1000) -> None:
        self.closed = True
        await self.disconnect(code)
        # A page closes its socket as soon as the final event arrives, often before the
        # server's own close goes out; uvicorn then refuses the second close with a
        # RuntimeError. Both sides agree the stream is over: nothing is lost.
        with contextlib.suppress(RuntimeError):
            await self.close(code=code)
