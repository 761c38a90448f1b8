"""Who is asking: the anonymous visitor's session and network address."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest

# Set in every session this site creates for a visitor. A session key is an identity only when
# the server holds a session with this flag under it.
VISITOR_FLAG = "visitor"

# The per-address budgets' name for a client whose address cannot be read: everyone without a
# readable address shares one budget, rather than escaping the budgets altogether.
UNKNOWN_ADDRESS = "unknown"


def session_key(request: HttpRequest) -> str:
    """The visitor's session key, creating the session (and its cookie) on first contact.

    Reading the flag loads the session from the store first: a cookie that names no stored
    session (planted by someone else, forged, or expired) loads nothing and loses its key, so
    the visitor gets a fresh session of the server's making instead of the planted identity.
    """
    session = request.session
    if not session.get(VISITOR_FLAG):
        session[VISITOR_FLAG] = True
        session.save()
    return session.session_key or ""


def stored_session_key(session: SessionBase | None) -> str | None:
    """The key of a visitor's session that the server created, else None (a socket's cookie
    is checked against the store like a page's; see `session_key`)."""
    if session is None or not session.session_key or not session.get(VISITOR_FLAG):
        return None
    return session.session_key


def client_ip(request: HttpRequest) -> str | None:
    """The client address; X-Forwarded-For is used only behind NUM_PROXIES trusted proxies."""
    return address_from(
        request.META.get("REMOTE_ADDR", ""), request.META.get("HTTP_X_FORWARDED_FOR", "")
    )


def socket_client_ip(scope: dict[str, Any]) -> str | None:
    """The client address of a WebSocket (an ASGI scope), by the same rules as `client_ip`."""
    remote = (scope.get("client") or ("",))[0] or ""
    return address_from(str(remote), _header(scope.get("headers") or (), b"x-forwarded-for"))


def address_from(remote_addr: str, forwarded_for: str) -> str | None:
    """The client address from the socket's peer and the X-Forwarded-For header.

    Each proxy appends the address it received the request from, so with N proxies of our own
    the client is the N-th entry from the right; anything further left is client-supplied.
    None when the address cannot be read (see `limit_key`).
    """
    candidate = remote_addr
    if settings.NUM_PROXIES:
        forwarded = [part.strip() for part in forwarded_for.split(",")]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= settings.NUM_PROXIES:
            candidate = forwarded[-settings.NUM_PROXIES]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def limit_key(address: str | None) -> str:
    """The name a client's per-address budgets go by."""
    return address or UNKNOWN_ADDRESS


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str:
    values = [value.decode("latin-1") for key, value in headers if key.lower() == name]
    return ", ".join(values)
