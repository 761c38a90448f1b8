"""The WebSocket stream of one message: authorize, replay, then relay (DESIGN 4.3).

The socket only ever carries server → client events. On connect the consumer subscribes to the
message's group *before* reading what was already written, then relays live events, dropping
any seq it already sent and filling any gap from the persisted log, so the viewer sees every
delta exactly once and in order. Its web process's tender (playground/viewers.py) keeps it
counted as present, and tells it from the database what the channel layer may have lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import DatabaseSyncToAsync
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy

from playground import services, viewers
from playground.ops import metrics
from playground.realtime import (
    channel_groups,
    consumer_loop,
    delta_log,
    line_listener,
    redis_clients,
)
from playground.visitors import limit_key, socket_client_ip, stored_session_key

FINAL_EVENTS = {"done", "error", "cancelled"}
CLOSE_NOT_FOUND = 4404
CLOSE_REVOKED = 4403
CLOSE_TRY_AGAIN = 1013  # RFC 6455: try again later
CLOSE_GONE = 1006  # abnormal closure: what a vanished peer amounts to
UNAVAILABLE_RETRY_SECONDS = 5
# A waiting viewer is told a new place at most this often: the line changes at every hand-off,
# thirty times a second under a launch-day rush, and nobody reads their place that fast.
PLACE_INTERVAL = 1.0

TOO_MANY_STREAMS = gettext_lazy(
    "Too many live streams are open from your network. Close some pages and try again."
)
STREAM_UNAVAILABLE = gettext_lazy(
    "The live stream is unavailable for a moment. The page tries again by itself."
)


def _parse_int(values: list[str]) -> int | None:
    try:
        return max(0, int(values[0]))
    except (IndexError, ValueError):
        return None


def viewer_language(scope: dict[str, Any]) -> str:
    """The language of the page that opened the stream, chosen as LocaleMiddleware chooses a
    page's: the language cookie, else the browser's Accept-Language (the handshake has both)."""
    headers = dict(scope.get("headers") or [])
    accept = headers.get(b"accept-language", b"").decode("latin-1")
    request = SimpleNamespace(
        COOKIES=scope.get("cookies") or {}, META={"HTTP_ACCEPT_LANGUAGE": accept}
    )
    return translation.get_language_from_request(request)


def _stream_state(
    session: Any, message_id: str, share_token: str | None, after: int, attempt: int | None
) -> services.StreamState | None:
    # The session is read in the same thread hop as the message: a cookie naming no session
    # the server created is nobody (playground/visitors.py).
    return services.stream_state(
        message_id,
        session_key=stored_session_key(session),
        share_token=share_token,
        after=after,
        attempt=attempt,
    )


def _in_language(language: str, read: Callable[..., Any], *args: Any) -> Any:
    with translation.override(language):
        return read(*args)


class MessageStreamConsumer(AsyncJsonWebsocketConsumer):
    message_id: str
    share_token: str | None
    last_seq: int
    subscribed: bool = False
    closed: bool = False
    started_sent: bool = False
    queue_as_of: float = 0.0
    # The last place in line this viewer was told (None: none yet, or the answer started over).
    place: int | None = None
    # Hearing the line's events (realtime.line_listener), while the answer waits.
    in_line: bool = False
    # When a place was last sent (the loop's clock), and a newer one held back until
    # PLACE_INTERVAL after that.
    place_told_at: float = -math.inf
    held_place: dict[str, Any] | None = None
    correction: asyncio.Task[None] | None = None
    joined: bool = False
    counted: bool = False
    language: str = settings.LANGUAGE_CODE

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # As channels' AsyncConsumer, with a loop that costs one task step per message
        # instead of a new task and an asyncio.wait (realtime.consumer_loop).
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.base_send = send
        self.line_mailbox = line_listener.Mailbox()
        sources = [receive, self.channel_receive, self._hear_line_mailbox]
        with contextlib.suppress(StopConsumer):
            await consumer_loop.dispatch_each(sources, self.dispatch)

    async def connect(self) -> None:
        self.message_id = self.scope["url_route"]["kwargs"]["message_id"]
        self.language = viewer_language(self.scope)
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.last_seq = _parse_int(query.get("after", [])) or 0
        self.attempt = _parse_int(query.get("attempt", []))
        self.share_token = (query.get("share") or [None])[0]
        # Serialised with the tender's sweep: both send deltas, and each checks what the
        # other already sent.
        self.sending = asyncio.Lock()
        try:
            # A server without the lifespan protocol (daphne) starts listening here instead.
            await channel_groups.keep_listening()
            address = limit_key(socket_client_ip(self.scope))
            if not await viewers.tender().join(self, address):
                await self._deny(429, "rate_limited", TOO_MANY_STREAMS, retry_after=30)
                return
            self.joined = True
            await self.channel_layer.group_add(
                channel_groups.group_name(self.message_id), self.channel_name
            )
            self.subscribed = True
        except redis_clients.REDIS_DOWN:
            await self._leave()
            await self._deny(
                503, "unavailable", STREAM_UNAVAILABLE, retry_after=UNAVAILABLE_RETRY_SECONDS
            )
            return
        await self.accept()
        self.counted = True
        await metrics.websocket_opened()
        try:
            await self._start()
        except redis_clients.REDIS_DOWN:
            # Redis went away between the handshake and the replay: the page reconnects
            # from what it has once Redis is back.
            await self._finish(CLOSE_TRY_AGAIN)

    async def _read(self, read: Callable[..., Any], *args: Any) -> Any:
        """`read(*args)` from the database, with the viewer's language active: a final event or
        check built there speaks it (its error message, its check's note). Not thread-sensitive:
        outside Django's HTTP handler, every thread-sensitive call of the process runs on one
        shared thread, and a burst of viewers connecting would queue on it one by one."""
        return await DatabaseSyncToAsync(_in_language, thread_sensitive=False)(
            self.language, read, *args
        )

    async def _start(self) -> None:
        state = await self._read(
            _stream_state,
            self.scope.get("session"),
            self.message_id,
            self.share_token,
            self.last_seq,
            self.attempt,
        )
        if state is None:
            message = self.say(services.NO_SUCH_MESSAGE)
            await self.send_json({"type": "error", "code": "not_found", "message": message})
            await self._finish(CLOSE_NOT_FOUND)
            return
        if state.restarted_event is not None:
            await self._restart(state.restarted_event)
        if state.final_event is not None:
            async with self.sending:
                for event in delta_log.delta_events(state.stored_events, self.last_seq):
                    await self.send_json(event)
                await self.send_json(state.final_event)
            await self._finish()
            return
        async with self.sending:
            await self._send_missing()
        if state.status_event is not None:
            if state.status_event["type"] == "queued":
                await self._join_line()
            await self._send_status(state.status_event)

    def say(self, text: Promise) -> str:
        """A sentence of ours in the viewer's language."""
        with translation.override(self.language):
            return str(text)

    async def in_viewer_language(self, event: dict[str, Any]) -> dict[str, Any]:
        """A final event as its viewer reads it. The worker that publishes it has no visitor
        and writes it in the site's language; the sentences in it are said again in the
        viewer's: the failure's message by its code, the check's note from the stored answer."""
        if self.language == settings.LANGUAGE_CODE:
            return event
        kind = event.get("type")
        if kind == "error":
            with translation.override(self.language):
                message = services.error_text(event.get("code"), event.get("message"))
            return {**event, "message": message}
        if kind == "cancelled" and event.get("message"):
            with translation.override(self.language):
                return {**event, "message": services.error_text(None, event["message"])}
        if kind == "done" and event.get("check"):
            check = await self._read(services.answer_check, self.message_id)
            return {**event, "check": check or event["check"]}
        return event

    async def _deny(
        self, status: int, code: str, message: Promise, *, retry_after: int | None = None
    ) -> None:
        """Refuse the handshake with an HTTP answer a client can act on, where the server
        can send one (uvicorn); else by closing before accepting (daphne answers 403)."""
        if "websocket.http.response" not in self.scope.get("extensions", {}):
            await self.close(code=CLOSE_TRY_AGAIN)
            return
        headers = [(b"content-type", b"application/json")]
        if retry_after is not None:
            headers.append((b"retry-after", str(retry_after).encode()))
        body = json.dumps({"error": {"code": code, "message": self.say(message)}}).encode()
        await self.base_send(
            {"type": "websocket.http.response.start", "status": status, "headers": headers}
        )
        await self.base_send({"type": "websocket.http.response.body", "body": body})

    async def disconnect(self, code: int) -> None:
        if self.counted:
            self.counted = False
            await metrics.websocket_closed()
        await self._leave()

    async def _leave(self) -> None:
        await self._leave_line()
        if self.joined:
            self.joined = False
            await viewers.tender().leave(self)
        if self.subscribed:
            self.subscribed = False
            with contextlib.suppress(*redis_clients.REDIS_DOWN):
                await self.channel_layer.group_discard(
                    channel_groups.group_name(self.message_id), self.channel_name
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
        except redis_clients.REDIS_DOWN:
            # A gap could not be filled from the log: the page reconnects from what it has.
            await self._finish(CLOSE_TRY_AGAIN)

    async def stream_event(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        event = message["event"]
        kind = event.get("type")
        if kind == "delta":
            async with self.sending:
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
            async with self.sending:
                if self.closed:
                    return
                if self.last_seq < event.get("seq", 0):
                    await self._send_missing()
                if self.last_seq < event.get("seq", 0):
                    # The log is gone (Redis lost it): the stored answer has every delta.
                    ended = await self._catch_up_from_database()
                else:
                    await self.send_json(await self.in_viewer_language(event))
                    ended = True
            if ended:
                await self._finish()
            return
        if kind == "revoked":
            if self.share_token is not None and self.share_token == event.get("share"):
                await self.revoke()
            return
        if kind == "restarted":
            await self._restart(event)
            return
        if kind == "line":
            await self._hear_the_line(event)
            return
        await self._send_status(event)

    async def _hear_line_mailbox(self) -> dict[str, Any]:
        # The line's events come through the process's one reader of them (line_listener),
        # dispatched like the channel layer's messages.
        return {"type": "stream.event", "event": await self.line_mailbox.take()}

    async def _join_line(self) -> None:
        if not self.in_line:
            self.in_line = True
            await line_listener.join(self.line_mailbox)

    async def _leave_line(self) -> None:
        self.held_place = None
        if self.in_line:
            self.in_line = False
            line_listener.leave(self.line_mailbox)

    async def _hear_the_line(self, event: dict[str, Any]) -> None:
        """This viewer's place, out of the event that tells the whole line: sent at once if
        none was sent in the last PLACE_INTERVAL, else held back and sent when it is up (a
        newer event meanwhile replaces it)."""
        queued = services.place_in(event, self.message_id)
        if queued is None or self.closed:
            return
        wait = self.place_told_at + PLACE_INTERVAL - asyncio.get_running_loop().time()
        if wait <= 0 or self.place is None or queued["position"] == 0:
            self.held_place = None
            await self._send_status(queued)
            return
        if self.held_place is None and (self.correction is None or self.correction.done()):
            self.correction = asyncio.ensure_future(self._tell_held_place(wait))
        self.held_place = queued

    async def _tell_held_place(self, after: float) -> None:
        await asyncio.sleep(after)
        async with self.sending:
            held, self.held_place = self.held_place, None
            if held is None or self.closed:
                return
            # The viewer may have gone meanwhile: its disconnect is on its way.
            with contextlib.suppress(OSError, RuntimeError):
                await self._send_status(held)

    async def _restart(self, event: dict[str, Any]) -> None:
        # The answer starts over: what the viewer has belongs to an attempt that is gone.
        async with self.sending:
            self.last_seq = 0
            self.started_sent = False
            self.queue_as_of = 0.0
            self.place = None
            await self.send_json(event)
        # It waits in line again (its place follows in the next line event).
        await self._join_line()

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
            await self._leave_line()
        elif kind == "queued":
            as_of = float(event.get("as_of", 0.0))
            if self.started_sent or self.last_seq > 0 or as_of < self.queue_as_of:
                return
            # `as_of` is taken before the line is read, and two readings can finish in the
            # other order: a newer stamp on an older reading. A waiting visitor's place only
            # falls, so a higher one is such a reading (under a launch-day rush, 1 to 2 in
            # 1,000 visitors were told a place one higher than the one before). Place 0, a
            # slot reserved, is the exception: an answer whose worker stopped before it began
            # goes back to its place in line, and its viewer must hear it.
            place = event.get("position")
            if isinstance(place, int) and self.place and place > self.place:
                return
            self.queue_as_of = as_of
            self.place = place if isinstance(place, int) else self.place
            self.place_told_at = asyncio.get_running_loop().time()
        await self.send_json(event)

    async def _send_missing(self) -> None:
        for event in await delta_log.aread_delta_log(self.message_id, self.last_seq):
            if event["seq"] == self.last_seq + 1:
                await self.send_json(event)
                self.last_seq = event["seq"]

    async def catch_up(self) -> None:
        """The answer ended a while ago and its final event never came (the tender's sweep):
        send what the viewer misses from the stored answer, then the end."""
        async with self.sending:
            ended = not self.closed and await self._catch_up_from_database()
        if ended:
            await self._finish()

    async def _catch_up_from_database(self) -> bool:
        """Send the stored deltas after `last_seq` and the final event; False if the answer
        has not ended after all. Called with `sending` held."""
        replay = await self._read(services.final_replay, self.message_id)
        if replay is None:
            return False
        events, final = replay
        for event in delta_log.delta_events(events, self.last_seq):
            await self.send_json(event)
            self.last_seq = event["seq"]
        await self.send_json(final)
        self.closed = True
        return True

    async def revoke(self) -> None:
        """The share link this stream was opened with was turned off: the stream ends now."""
        async with self.sending:
            if self.closed:
                return
            await self.send_json(
                {
                    "type": "error",
                    "code": "revoked",
                    "message": self.say(services.ERROR_MESSAGES["revoked"]),
                }
            )
            self.closed = True
        await self._finish(CLOSE_REVOKED)

    async def _finish(self, code: int = 1000) -> None:
        self.closed = True
        await self.disconnect(code)
        # A page closes its socket as soon as the final event arrives, often before the
        # server's own close goes out; uvicorn then refuses the second close with a
        # RuntimeError. Both sides agree the stream is over: nothing is lost.
        with contextlib.suppress(RuntimeError):
            await self.close(code=code)
