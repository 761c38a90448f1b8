"""Stopping an answer at its owner's request."""

from __future__ import annotations

import logging
import time

from playground.models import Message
from playground.realtime import cancel_flags, channel_groups, delta_log
from playground.services.errors import OPERATOR_STOP_REASON, in_english
from playground.services.line import (
    publish_queue_positions,
)
from playground.services.payloads import final_event, sections_of

log = logging.getLogger(__name__)


CANCEL_WAIT_SECONDS = 3.0


def cancel(message: Message, *, by_operator: bool = False, reason: str = "") -> Message:
    """Stop a message; `by_operator`: the site stops it, not its visitor, who is told so
    (with `reason` when one is given).

    Queued: it leaves the line at once. Running: the worker notices within a fraction of a
    second, closes the backend stream (freeing the GPU slot), stores the text
    written so far and announces the end; this waits for that, so the answer returned (and
    what any viewer sees) is the final one. A worker that does not respond in time (it died)
    is overruled from the persisted delta log."""
    if message.role != Message.Role.ASSISTANT or message.is_final:
        return message
    if by_operator:
        message.note_stopped_by_operator(reason.strip() or in_english(OPERATOR_STOP_REASON))
    cancel_flags.request_cancel(message.pk)
    if message.status == Message.Status.QUEUED and message.cancel():
        channel_groups.publish(message.pk, final_event(message))
        publish_queue_positions()
    else:
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        while time.monotonic() < deadline:
            message.refresh_from_db()
            if message.is_final:
                return message
            time.sleep(0.05)
        events = delta_log.read_delta_log(message.pk)
        if message.cancel(sections=sections_of(events), deltas=events):
            channel_groups.publish(message.pk, final_event(message))
    message.refresh_from_db()
    return message
