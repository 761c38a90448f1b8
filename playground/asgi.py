"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")
django_application = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from playground.routing import websocket_urlpatterns  # noqa: E402
from playground.security import BrowserOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_application,
        # A page of another site must not open a visitor's stream with the visitor's cookies:
        # a browser's Origin must name one of ALLOWED_HOSTS (playground/security.py).
        "websocket": BrowserOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
