"""Browser-facing protections Django does not ship: the Content-Security-Policy header and the
check of a WebSocket's Origin.

The policy itself lives in settings.CONTENT_SECURITY_POLICY; this module sends it on every
response (a view may set its own header instead) and adds the page's own host to connect-src
for its WebSocket, which CSP Level 2 browsers do not count as 'self'.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import ParseResult

from asgiref.sync import iscoroutinefunction
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

HEADER = "Content-Security-Policy"
# A host-source may only be a DNS name or IPv4 address with an optional port; an IPv6 literal
# would make the browser report the whole directive as invalid, so it is left to 'self'.
_HOST_SOURCE = re.compile(r"[A-Za-z0-9.-]+(:\d{1,5})?")


def content_security_policy(request: HttpRequest) -> str:
    directives = {name: list(sources) for name, sources in settings.CONTENT_SECURITY_POLICY.items()}
    try:
        host = request.get_host()
    except DisallowedHost:
        host = ""  # the 400 page for a foreign Host header gets the policy without it
    if _HOST_SOURCE.fullmatch(host) and "connect-src" in directives:
        directives["connect-src"] += [f"ws://{host}", f"wss://{host}"]
    return "; ".join(" ".join([name, *sources]) for name, sources in directives.items())


def _add_policy(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    if HEADER not in response:
        response[HEADER] = content_security_policy(request)
    return response


Handler = Callable[[HttpRequest], Any]


@sync_and_async_middleware
def content_security_policy_middleware(get_response: Handler) -> Handler:
    """Adds the policy without a thread switch under ASGI (it only formats a string)."""
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponseBase:
            response = await get_response(request)
            return _add_policy(request, response)

        return middleware

    def sync_middleware(request: HttpRequest) -> HttpResponseBase:
        return _add_policy(request, get_response(request))

    return sync_middleware


class BrowserOriginValidator(OriginValidator):
    """Refuses a WebSocket opened by a page of another site (cross-site WebSocket hijacking).

    A browser always sends Origin with a WebSocket handshake, and a page cannot forge it; the
    origin's host must be one of settings.ALLOWED_HOSTS (read on each connection, so tests and
    settings overrides apply). A handshake without Origin does not come from a browser page: it
    is an API client (the JSON API and its streams are public, DESIGN 4), which could send any
    Origin it liked, so refusing it would protect no one. Channels' AllowedHostsOriginValidator
    refuses those, and takes ALLOWED_HOSTS once at import.
    """

    def __init__(self, application: Callable[..., Awaitable[Any]]) -> None:
        super().__init__(application, allowed_origins=[])  # settings.ALLOWED_HOSTS instead

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        if parsed_origin is None:
            return True
        allowed = settings.ALLOWED_HOSTS
        if settings.DEBUG and not allowed:
            allowed = ["localhost", "127.0.0.1", "[::1]"]  # what Django's host check allows
        return any(
            pattern == "*" or self.match_allowed_origin(parsed_origin, pattern)
            for pattern in allowed
        )
