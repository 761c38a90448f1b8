"""Rows that tests build directly, without a visitor's request: the ORM only."""

from __future__ import annotations

from typing import Any

from playground.models import Conversation, Message


def stored_answer(session: str, status: str, **fields: Any) -> Message:
    """An assistant message and the question it answers, in a conversation of their own."""
    conversation = Conversation.objects.create(session_key=session, title="t")
    question = Message.objects.create(
        conversation=conversation, role="user", prompt="q", status="done", session_key=session
    )
    return Message.objects.create(
        conversation=conversation,
        role="assistant",
        reply_to=question,
        prompt="q",
        status=status,
        session_key=session,
        **fields,
    )
