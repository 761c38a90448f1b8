"""Refusals a visitor can act on, the messages of the errors an answer can end with, and
Redis chores that must not fail an answer when Redis is away.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from kombu.exceptions import OperationalError as BrokerUnavailable

from playground.realtime import redis_clients

log = logging.getLogger(__name__)


# What a Redis that cannot be reached raises, as the broker (Celery) or as itself.
OUTAGE_ERRORS = (*redis_clients.REDIS_DOWN, BrokerUnavailable)


# Lazy: a failed answer's message is stored in English (the worker has no visitor), and each
# page and API response says it again in its reader's language (error_text).
ERROR_MESSAGES = {
    "overloaded": _("The model server is overloaded right now. Please try again in a minute."),
    "validation": _("The model server rejected this request."),
    "generation": _("The model server failed while writing this answer."),
    "incomplete_stream": _(
        "The connection to the model server broke off before the answer was complete."
    ),
    "backend_unavailable": _("The model server could not be reached."),
    "backend_timeout": _("The model server stopped responding."),
    "bad_stream": _("The model server sent an answer the playground could not read."),
    "backend_error": _("The model server reported an error."),
    "worker_lost": _("The worker writing this answer stopped before it finished."),
    "worker_error": _("The playground failed while writing this answer."),
    "revoked": _("This share link was turned off by its owner."),
    "no_backend": _("No model server is available."),
}
ANSWER_FAILED = _("The answer failed.")
OPERATOR_STOP_REASON = _("The site's operators stopped this answer.")


def in_english(message: str | Promise) -> str:
    """What the database keeps: one language, whoever's request or worker wrote it."""
    with translation.override("en"):
        return str(message)


def error_text(code: str | None, stored: str | None) -> str:
    """A stored failure's message in the reader's language: one of our own sentences (stored
    in English) is said again in the reader's; anything else, an operator's own words, stays
    as it was written. No message at all: the sentence for its code, else a generic one."""
    if not stored:
        return str(ERROR_MESSAGES.get(code or "", ANSWER_FAILED))
    ours = _our_sentences().get(stored)
    return str(ours) if ours is not None else stored


@functools.cache
def _our_sentences() -> dict[str, Promise]:
    """Our own sentences by their English, as the database keeps them."""
    sentences = (*ERROR_MESSAGES.values(), ANSWER_FAILED, OPERATOR_STOP_REASON)
    return {in_english(sentence): sentence for sentence in sentences}


class PlaygroundError(Exception):
    """A refusal a visitor can act on: rendered as JSON by the API and as text on pages."""

    def __init__(
        self, code: str, message: str | Promise, status: int = 400, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        # Translated when it is raised, inside the request: the reader's language is active.
        self.message = str(message)
        self.status = status
        self.retry_after = retry_after


NO_SUCH_MESSAGE = _("No such message.")


class NotFound(PlaygroundError):
    def __init__(self, what: str = "conversation") -> None:
        text = NO_SUCH_MESSAGE if what == "message" else _("No such conversation.")
        super().__init__("not_found", text, status=404)


ALREADY_GENERATING = _("You already have an answer being written. Wait for it or stop it first.")


def quietly(chore: Callable[[], Any], what: str) -> None:
    """Do a Redis chore that must not fail an answer when Redis is away: a slot whose release
    is lost comes back when its lease expires, and the reconciler dispatches the line and
    tells everyone waiting their place once Redis answers again."""
    try:
        chore()
    except OUTAGE_ERRORS as exc:
        log.warning("could not %s, Redis is unreachable: %s: %s", what, type(exc).__name__, exc)
