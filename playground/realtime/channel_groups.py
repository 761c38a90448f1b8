"""The channel-layer group of each message: its name, publishing events to it from any code,
and keeping the process's layer listening between viewers.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from playground.realtime.redis_clients import (
    redis_client,
)

log = logging.getLogger(__name__)


# The line's group: one event tells the whole line its places. Each web process has one channel
# in it, which hands the event to its waiting viewers' sockets (realtime/line_listener.py).
LINE_GROUP = "line"


def group_name(message_id: str) -> str:
    return f"msg.{message_id}"


def group_channel(message_id: str) -> str:
    """The Redis pub/sub channel behind a message's group: the name the channel layer
    subscribes viewers to (tests/playground/test_consumers.py holds the layer to it).

    Events are published straight to it with the layer's own serializer, in pipelined round
    trips of the publisher's own: from synchronous code without borrowing the web process's
    event loop (busy with every socket under a rush), and from the generation loop without
    queueing on the layer's single lock-guarded connection.
    """
    return _channel_of(group_name(message_id))


def line_channel() -> str:
    """The Redis pub/sub channel behind LINE_GROUP."""
    return _channel_of(LINE_GROUP)


def _channel_of(group: str) -> str:
    prefix = settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix", "asgi")
    return f"{prefix}__group__{group}"


# The channel layer's reader (channels_redis's pub/sub layer) reads only while the process is
# subscribed to something; subscribed to nothing, it looks again every 100 ms. On an idle site
# every viewer's subscriptions end with their answer, so the next visitor's first events waited
# for that look, up to 100 ms. A channel of the process's own, which nobody sends to, keeps the
# reader reading.
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


def publish_to_line(event: dict[str, Any]) -> None:
    """Send one event to every viewer of a waiting answer, from synchronous code."""
    redis_client().publish(line_channel(), wire_message(event))
