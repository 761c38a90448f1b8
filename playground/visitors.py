"""Who is asking: the anonymous visitor's session and network address."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def session_key(request: HttpRequest) -> str:
    """The visitor's session key, creating the session (and its cookie) on first contact."""
    if not request.session.session_key:
        request.session["visitor"] = True
        request.session.save()
    return request.session.session_key or ""


def client_ip(request: HttpRequest) -> str | None:
    """The client address; X-Forwarded-For is used only behind NUM_PROXIES trusted proxies.

    Each proxy appends the address it received the request from, so with N proxies of our own
    the client is the N-th entry from the right; anything further left is client-supplied.
    """
    candidate = request.META.get("REMOTE_ADDR", "")
    if settings.NUM_PROXIES:
        forwarded = [
            part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        ]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= settings.NUM_PROXIES:
            candidate = forwarded[-settings.NUM_PROXIES]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None
