"""Refusals a visitor can act on, the messages of the errors an answer can end with, and
Redis chores that must not fail an answer when Redis is away.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kombu.exceptions import OperationalError as BrokerUnavailable

from playground.realtime import redis_clients

log = logging.getLogger(__name__)


# What a Redis that cannot be reached raises, as the broker (Celery) or as itself.
OUTAGE_ERRORS = (*redis_clients.REDIS_DOWN, BrokerUnavailable)


ERROR_MESSAGES = {
    "overloaded": "The model server is overloaded right now. Please try again in a minute.",
    "validation": "The model server rejected this request.",
    "generation": "The model server failed while writing this answer.",
    "incomplete_stream": "The connection to the model server broke off before the answer "
    "was complete.",
    "backend_unavailable": "The model server could not be reached.",
    "backend_timeout": "The model server stopped responding.",
    "bad_stream": "The model server sent an answer the playground could not read.",
    "backend_error": "The model server reported an error.",
    "worker_lost": "The worker writing this answer stopped before it finished.",
    "revoked": "This share link was turned off by its owner.",
    "no_backend": "No model server is available.",
}


class PlaygroundError(Exception):
    """A refusal a visitor can act on: rendered as JSON by the API and as text on pages."""

    def __init__(
        self, code: str, message: str, status: int = 400, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after


class NotFound(PlaygroundError):
    def __init__(self, what: str = "conversation") -> None:
        super().__init__("not_found", f"No such {what}.", status=404)


ALREADY_GENERATING = "You already have an answer being written. Wait for it or stop it first."


def quietly(chore: Callable[[], Any], what: str) -> None:
    """Do a Redis chore that must not fail an answer when Redis is away: a slot whose release
    is lost comes back when its lease expires, and the reconciler dispatches the line and
    tells everyone waiting their place once Redis answers again."""
    try:
        chore()
    except OUTAGE_ERRORS as exc:
        log.warning("could not %s, Redis is unreachable: %s: %s", what, type(exc).__name__, exc)
