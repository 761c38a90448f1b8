"""Who is asking: client_ip behind 0, 1 or 2 trusted proxies, and the lazily created session."""

from __future__ import annotations

from importlib import import_module
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.sessions.models import Session
from django.http import HttpRequest
from django.test import RequestFactory

from playground.visitors import client_ip, session_key


def request_from(remote_addr: str, forwarded_for: str | None = None) -> HttpRequest:
    extra: dict[str, str] = {"REMOTE_ADDR": remote_addr}
    if forwarded_for is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return RequestFactory().get("/", **extra)


@pytest.mark.parametrize(
    ("remote_addr", "forwarded_for", "expected"),
    [
        ("203.0.113.9", None, "203.0.113.9"),
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),
        ("203.0.113.9", "198.51.100.1, 10.0.0.1", "203.0.113.9"),
        ("2001:db8::1", "198.51.100.1", "2001:db8::1"),
    ],
    ids=["no-header", "one-entry-ignored", "two-entries-ignored", "ipv6"],
)
def test_without_proxies_x_forwarded_for_is_ignored(
    settings: Any, remote_addr: str, forwarded_for: str | None, expected: str
) -> None:
    settings.NUM_PROXIES = 0
    assert client_ip(request_from(remote_addr, forwarded_for)) == expected


@pytest.mark.parametrize(
    ("forwarded_for", "expected"),
    [
        ("198.51.100.1", "198.51.100.1"),
        ("1.2.3.4, 198.51.100.1", "198.51.100.1"),
        ("forged, 1.2.3.4,198.51.100.1", "198.51.100.1"),
        (" 198.51.100.1 ", "198.51.100.1"),
        ("2001:db8::7", "2001:db8::7"),
        ("2001:DB8:0:0::7", "2001:db8::7"),
    ],
    ids=["single", "right-most", "spoofed-left-entries", "spaces", "ipv6", "ipv6-normalised"],
)
def test_behind_one_proxy_the_right_most_entry_is_the_client(
    settings: Any, forwarded_for: str, expected: str
) -> None:
    settings.NUM_PROXIES = 1
    assert client_ip(request_from("10.0.0.1", forwarded_for)) == expected


@pytest.mark.parametrize(
    ("forwarded_for", "expected"),
    [
        ("198.51.100.1, 10.0.0.2", "198.51.100.1"),
        ("forged, 198.51.100.1, 10.0.0.2", "198.51.100.1"),
        ("1.1.1.1,198.51.100.1,10.0.0.2", "198.51.100.1"),
    ],
    ids=["exact", "spoofed-left-entry", "no-spaces"],
)
def test_behind_two_proxies_the_second_entry_from_the_right_is_the_client(
    settings: Any, forwarded_for: str, expected: str
) -> None:
    settings.NUM_PROXIES = 2
    assert client_ip(request_from("10.0.0.1", forwarded_for)) == expected


def test_behind_proxies_a_missing_header_falls_back_to_the_peer(settings: Any) -> None:
    settings.NUM_PROXIES = 1
    assert client_ip(request_from("10.0.0.1")) == "10.0.0.1"
    settings.NUM_PROXIES = 2
    assert client_ip(request_from("10.0.0.1", "198.51.100.1")) == "10.0.0.1"


@pytest.mark.parametrize(
    "forwarded_for",
    ["garbage", "198.51.100.1:4444", "999.1.1.1", "<script>", "unknown", "[2001:db8::1]"],
)
def test_behind_a_proxy_a_garbage_entry_gives_no_address(settings: Any, forwarded_for: str) -> None:
    settings.NUM_PROXIES = 1
    assert client_ip(request_from("10.0.0.1", forwarded_for)) is None


@pytest.mark.parametrize("remote_addr", ["", "not-an-ip", "300.0.0.1"])
def test_a_garbage_peer_address_gives_no_address(settings: Any, remote_addr: str) -> None:
    settings.NUM_PROXIES = 0
    assert client_ip(request_from(remote_addr)) is None


def _with_session(request: HttpRequest) -> HttpRequest:
    engine = import_module(django_settings.SESSION_ENGINE)
    request.session = engine.SessionStore()
    return request


def test_session_key_creates_the_session_once(db: None) -> None:
    request = _with_session(request_from("203.0.113.9"))
    assert Session.objects.count() == 0
    first = session_key(request)
    assert first
    assert Session.objects.count() == 1
    second = session_key(request)
    assert second == first
    assert Session.objects.count() == 1
    assert Session.objects.get().session_key == first


def test_session_key_keeps_an_existing_session(db: None) -> None:
    engine = import_module(django_settings.SESSION_ENGINE)
    existing = engine.SessionStore()
    existing["visitor"] = True
    existing.save()
    request = request_from("203.0.113.9")
    request.session = engine.SessionStore(session_key=existing.session_key)
    assert session_key(request) == existing.session_key
    assert Session.objects.count() == 1


def test_different_visitors_get_different_session_keys(db: None) -> None:
    keys = {session_key(_with_session(request_from("203.0.113.9"))) for _ in range(3)}
    assert len(keys) == 3
