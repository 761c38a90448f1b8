"""The public JSON shapes of DESIGN 4.2 and the stream events of 4.3, built from the rows
(the API, the pages, the consumer and the worker all use these).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from inference.parser import Delta, Sections
from playground import answer_checks, eta, rotation
from playground.models import Conversation, Message
from playground.realtime import delta_log
from playground.services.errors import error_text
from playground.services.line import (
    eta_for_position,
    position_of,
    queue_snapshot,
    recent_queue_snapshot,
)
from playground.services.queries import (
    shown_answers,
    turn_versions,
    visible_messages,
)
from playground.services.stored_logs import log_of

log = logging.getLogger(__name__)


def provenance_of(info: dict) -> dict:
    keys = ("model_id", "model_sha", "version", "max_input_tokens", "max_total_tokens")
    return {key: info.get(key) for key in keys if key in info}


SAMPLING_KEYS = (
    "temperature", "top_p", "top_k", "typical_p", "repetition_penalty", "frequency_penalty",
    "max_new_tokens", "do_sample", "seed", "stop",
)  # fmt: skip


def message_provenance(message: Message) -> dict[str, Any] | None:
    """Which backend and model served an answer (TGI /info) and how it sampled; None before a
    backend took it. The simulator names itself in /info's model_id."""
    if message.role != Message.Role.ASSISTANT or not (message.model_id or message.model_info):
        return None
    info = message.model_info or {}
    model_id = str(info.get("model_id") or message.model_id or "")
    sampling = message.sampling or {}
    return {
        "backend": rotation.public_name(message.backend),
        "model_id": model_id or None,
        "model_sha": info.get("model_sha"),
        "version": info.get("version"),
        "simulated": "simulator" in model_id.lower(),
        "sampling": {key: sampling[key] for key in SAMPLING_KEYS if key in sampling},
    }


def final_event(message: Message) -> dict[str, Any]:
    """The event that ends a message's stream. Each carries `seq`, the last seq of the
    answer, so a viewer can tell whether it has every delta (see the consumer)."""
    seq = len(log_of(message)) if message.role == Message.Role.ASSISTANT else 0
    if message.status == Message.Status.DONE:
        # "check" and "provenance" extend DESIGN 4.3 (see README, Public contracts).
        return {
            "type": "done",
            "stats": message_stats(message),
            "check": answer_checks.check(message),
            "provenance": message_provenance(message),
            "seq": seq,
        }
    if message.status == Message.Status.CANCELLED:
        return {"type": "cancelled", "seq": seq, **stopped_by(message)}
    return {
        "type": "error",
        "code": message.error_code or "error",
        "message": error_text(message.error_code, message.error_message),
        "seq": seq,
    }


def stopped_by(message: Message) -> dict[str, str]:
    """Who stopped a cancelled answer, where its visitor did not: "by" and "message" extend
    DESIGN 4.3's cancelled event (README, Public contracts)."""
    if message.stopped_by_operator:
        return {"by": "operator", "message": error_text(None, message.error_message)}
    return {}


def restarted_event(message: Message) -> dict[str, Any]:
    """An answer that had started is back in line and will be written again from the
    beginning, as attempt `attempt`: viewers drop what they have of it (seq starts at 1)."""
    return {"type": "restarted", "attempt": message.attempts + 1}


def sections_of(events: list[dict[str, Any]]) -> dict[str, Any]:
    sections = Sections()
    for event in events:
        sections.apply(Delta(event["section"], event["text"], event.get("index")))
    return sections.as_dict()


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def message_stats(message: Message) -> dict[str, Any] | None:
    if message.role != Message.Role.ASSISTANT or message.started_at is None:
        return None
    if not message.is_final:
        return None
    generating = _seconds(message.first_token_at, message.finished_at)
    tokens = message.tokens or 0
    return {
        "queue_seconds": _seconds(message.created, message.started_at),
        "ttft_seconds": _seconds(message.started_at, message.first_token_at),
        "duration_seconds": _seconds(message.started_at, message.finished_at),
        "tokens": tokens,
        "tokens_per_second": round(tokens / generating, 1) if generating else None,
        "finish_reason": message.finish_reason or None,
    }


def message_events(message: Message) -> list[dict[str, Any]]:
    """The delta log of an answer: from the row when final, else from the live log in Redis.
    A queued answer has no text yet (an earlier attempt's, if any, is not its own)."""
    if message.role != Message.Role.ASSISTANT or message.status == Message.Status.QUEUED:
        return []
    return log_of(message) if message.is_final else delta_log.read_delta_log(message.pk)


def live_sections(
    message: Message, events: list[dict[str, Any]] | None = None
) -> tuple[dict[str, Any], int]:
    """Sections and last seq of a message, from one reading of its delta log."""
    events = message_events(message) if events is None else events
    if message.is_final and message.sections:
        # Built from this same log when the answer ended (services/generation.py, stopping.py):
        # not built again for every viewer of a finished answer.
        return {**Sections().as_dict(), **message.sections}, len(events)
    return sections_of(events), len(events)


def stream_url(message: Message, share_token: str | None = None) -> str:
    url = f"/ws/messages/{message.pk}/"
    return f"{url}?share={share_token}" if share_token else url


def message_payload(
    message: Message,
    *,
    share_token: str | None = None,
    snapshot: eta.QueueSnapshot | None = None,
    events: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`events`: the delta log already read by the caller, so that the sections, the seq and
    whatever else the caller renders from the log all describe the same moment."""
    if message.role == Message.Role.USER:
        sections, seq = Sections().as_dict(), 0
    else:
        sections, seq = live_sections(message, events)
    position = position_of(message)
    on_hold = False
    if position is None:
        eta = None
    elif position > 0:
        snapshot = snapshot or recent_queue_snapshot()
        eta = eta_for_position(position, snapshot)
        on_hold = snapshot.on_hold
    else:
        eta = 0.0
    error = (
        {
            "code": message.error_code,
            "message": error_text(message.error_code, message.error_message),
        }
        if message.status == Message.Status.ERROR
        else None
    )
    return {
        "id": message.pk,
        "role": message.role,
        "status": message.status,
        "position": position,
        "eta_seconds": eta,
        "on_hold": on_hold,
        "stream_url": stream_url(message, share_token),
        "prompt": message.prompt,
        "sections": sections,
        "stats": message_stats(message),
        "error": error,
        "seq": seq,
        "attempt": attempt_shown(message),
        "sample": message.sample_slug or None,
        "reply_to": message.reply_to_id,
        "history_turns_dropped": (message.sampling or {}).get("history_turns_dropped", 0),
        "backend": rotation.public_name(message.backend),
        "model": message.model_id or None,
        "created": message.created.isoformat(),
        "provenance": message_provenance(message),
        "check": answer_checks.check(message),
        "stopped": stopped_by(message) or None,
    }


def share_url(conversation: Conversation) -> str | None:
    return f"/s/{conversation.share_token}/" if conversation.share_token else None


def conversation_payload(conversation: Conversation) -> dict[str, Any]:
    messages = visible_messages(conversation)
    waiting = any(m.status == Message.Status.QUEUED for m in messages)
    snapshot = queue_snapshot() if waiting else None
    shown = shown_answers(messages)
    versions = turn_versions(conversation, messages)
    payloads = []
    for message in messages:
        payload = message_payload(message, snapshot=snapshot)
        if message.role == Message.Role.ASSISTANT:
            payload["selected"] = message.pk in shown
        else:
            payload["versions"] = [version.pk for version in versions[message.pk]]
        payloads.append(payload)
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "share_url": share_url(conversation),
        "messages": payloads,
    }


def shared_payload(conversation: Conversation) -> dict[str, Any]:
    return {
        "title": conversation.title,
        "messages": [
            message_payload(m, share_token=conversation.share_token)
            for m in visible_messages(conversation)
        ],
    }


def conversation_summary(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "created": conversation.created.isoformat(),
        "updated": conversation.updated.isoformat(),
        "share_url": share_url(conversation),
    }


def attempt_shown(message: Message) -> int:
    """The attempt whose text the stream carries now: while an answer that had started waits
    in line again, the next one (which has no text yet)."""
    if message.status == Message.Status.QUEUED and message.attempts:
        return message.attempts + 1
    return message.attempts


def started_event(message: Message) -> dict[str, Any]:
    return {
        "type": "started",
        "backend": rotation.public_name(message.backend),
        "model": message.model_id,
        "attempt": message.attempts,
    }
