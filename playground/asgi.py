"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")
django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402

from playground.handlers import PacedASGIHandler, lifespan  # noqa: E402

django_application = PacedASGIHandler(settings.WEB_VIEWS_AT_ONCE)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.sessions import SessionMiddlewareStack  # noqa: E402  (needs the app registry)

from playground.routing import websocket_urlpatterns  # noqa: E402
from playground.security import BrowserOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_application,
        # A page of another site must not open a visitor's stream with the visitor's cookies:
        # a browser's Origin must name one of ALLOWED_HOSTS (playground/security.py).
        # The stream needs the visitor's session key, not their user: no user lookup per socket.
        "websocket": BrowserOriginValidator(
            SessionMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
        "lifespan": lifespan,
    }
)
