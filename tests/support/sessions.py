"""Visitor sessions the server created, for tests that open a stream as a page would."""

from __future__ import annotations

from datetime import timedelta
from importlib import import_module

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.models import Session
from django.utils import timezone

from playground.visitors import VISITOR_FLAG


def visitor_session(key: str | None = None) -> SessionBase:
    """A stored visitor session (under `key`, if given, else a fresh one), as the scope of a
    WebSocket opened with its cookie carries it."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if key is None:
        session = store()
        session[VISITOR_FLAG] = True
        session.save()
        key = session.session_key
    elif not Session.objects.filter(session_key=key).exists():
        # A key of the test's choosing: written straight to the store, since a session
        # object forgets a key the store does not know as soon as it loads.
        Session.objects.create(
            session_key=key,
            session_data=store().encode({VISITOR_FLAG: True}),
            expire_date=timezone.now() + timedelta(days=1),
        )
    return store(key)
