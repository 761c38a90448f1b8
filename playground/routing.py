from __future__ import annotations

from django.urls import re_path

from playground.consumers import MessageStreamConsumer

websocket_urlpatterns = [
    re_path(r"^ws/messages/(?P<message_id>[A-Za-z0-9_-]{1,32})/$", MessageStreamConsumer.as_asgi()),
]
