"""Test support: finish an answer in the database the way a worker would."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from playground import slots
from playground.models import Message


def finish(
    message_id: str,
    *,
    output: str = "",
    thinking: str = "",
    reflections: tuple[str, ...] = (),
    status: str = "done",
    **changes: Any,
) -> None:
    """End an answer as a worker does: sections, their delta log, timings; free its slot."""
    deltas: list[dict[str, Any]] = []
    if thinking:
        deltas.append({"section": "thinking", "text": thinking})
    for index, reflection in enumerate(reflections):
        deltas.append({"section": "reflection", "index": index, "text": reflection})
    if output:
        deltas.append({"section": "output", "text": output})
    for seq, delta in enumerate(deltas, start=1):
        delta.update(type="delta", seq=seq)
    now = timezone.now()
    values: dict[str, Any] = {
        "status": status,
        "sections": {
            "thinking": thinking,
            "reflections": list(reflections),
            "output": output,
            "text": "",
        },
        "deltas": deltas,
        "started_at": now,
        "first_token_at": now,
        "finished_at": now + timedelta(seconds=2),
        "tokens": 40,
        "finish_reason": "eos_token",
        **changes,
    }
    Message.objects.filter(pk=message_id).update(**values)
    slots.release_slot(Message.objects.get(pk=message_id).backend, message_id)
