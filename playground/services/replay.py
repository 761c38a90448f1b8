"""What a stream viewer gets: the state on connect, and the stored end of an answer whose
final event it missed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone

from playground import answer_checks
from playground.models import Message
from playground.services.line import (
    eta_for_position,
    position_of,
    queued_event,
    recent_queue_snapshot,
)
from playground.services.payloads import (
    attempt_shown,
    final_event,
    started_event,
)
from playground.services.queries import (
    can_view,
)
from playground.services.stored_logs import WITHOUT_LOG, log_of

log = logging.getLogger(__name__)


@dataclass
class StreamState:
    final_event: dict[str, Any] | None
    stored_events: list[dict[str, Any]]
    status_event: dict[str, Any] | None
    # Sent first when the viewer's text belongs to an earlier attempt of the answer.
    restarted_event: dict[str, Any] | None = None


def stream_state(
    message_id: str,
    *,
    session_key: str | None,
    share_token: str | None,
    after: int = 0,
    attempt: int | None = None,
) -> StreamState | None:
    """What a WebSocket viewer needs on connect, or None if they may not see the message.

    `after` and `attempt`: the last seq the viewer has, and the attempt it belongs to (sent by
    pages; a client that does not say is taken to have the current attempt's text)."""
    message = (
        Message.objects.select_related("conversation")
        .defer(*WITHOUT_LOG)
        .filter(pk=message_id)
        .first()
    )
    if message is None or not can_view(message, session_key=session_key, share_token=share_token):
        return None
    restarted = None
    if after > 0 and attempt is not None and attempt < attempt_shown(message):
        restarted = {"type": "restarted", "attempt": attempt_shown(message)}
    if message.is_final:
        events = log_of(message) if message.role == Message.Role.ASSISTANT else []
        return StreamState(final_event(message), events, None, restarted)
    if message.status == Message.Status.RUNNING:
        status_event = started_event(message)
    else:
        as_of = round(time.time(), 6)
        position = position_of(message) or 0
        snapshot = recent_queue_snapshot()
        eta = eta_for_position(position, snapshot)
        status_event = queued_event(position, eta, as_of, snapshot.on_hold)
    return StreamState(None, [], status_event, restarted)


def ended_and_shared(
    message_ids: set[str], ended_for: float
) -> tuple[set[str], dict[str, str | None]]:
    """Which of these messages ended at least `ended_for` seconds ago (or are gone), and the
    share token of each one's conversation now: what the web processes' sweep checks their
    open streams against (playground/viewers.py)."""
    rows = Message.objects.filter(pk__in=message_ids).values_list(
        "pk", "status", "finished_at", "conversation__share_token"
    )
    cutoff = timezone.now() - timedelta(seconds=ended_for)
    found = {pk: (status, finished, token) for pk, status, finished, token in rows}
    ended = {
        pk
        for pk in message_ids
        if pk not in found
        or (found[pk][0] in Message.FINAL and (found[pk][1] is None or found[pk][1] < cutoff))
    }
    return ended, {pk: token for pk, (_, _, token) in found.items()}


def final_replay(message_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
    """The stored deltas and the final event of a message that has ended, else None."""
    message = Message.objects.defer(*WITHOUT_LOG).filter(pk=message_id).first()
    if message is None:
        return [], {"type": "cancelled", "seq": 0}
    if not message.is_final:
        return None
    events = log_of(message) if message.role == Message.Role.ASSISTANT else []
    return events, final_event(message)


def answer_check(message_id: str) -> dict[str, Any] | None:
    """The check of a stored answer, its note in the active language (None: nothing to check)."""
    message = Message.objects.defer(*WITHOUT_LOG).filter(pk=message_id).first()
    return answer_checks.check(message) if message is not None else None
