"""Shape conversations for the templates: turns, answer segments and status lines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from playground import services
from playground.models import Conversation, Message


@dataclass
class Segment:
    kind: str  # "thinking" or "reflection"
    text: str
    index: int | None = None


@dataclass
class Answer:
    message: Message
    payload: dict[str, Any]
    thinking: list[Segment] = field(default_factory=list)
    output: str = ""
    text: str = ""


@dataclass
class Turn:
    question: Message
    answers: list[Answer]
    shown: Answer | None = None

    @property
    def position(self) -> int:
        return self.answers.index(self.shown) + 1 if self.shown else 0

    @property
    def previous(self) -> Answer | None:
        index = self.position - 2
        return self.answers[index] if index >= 0 else None

    @property
    def next(self) -> Answer | None:
        index = self.position
        return self.answers[index] if 0 < index < len(self.answers) else None


def thinking_segments(events: list[dict[str, Any]]) -> list[Segment]:
    """Thinking text with each reflection in the place where the model wrote it."""
    segments: list[Segment] = []
    for event in events:
        if event["section"] not in ("thinking", "reflection"):
            continue
        index = event.get("index")
        last = segments[-1] if segments else None
        if last and last.kind == event["section"] and last.index == index:
            last.text += event["text"]
        else:
            segments.append(Segment(event["section"], event["text"], index))
    return segments


def answer(message: Message, share_token: str | None = None) -> Answer:
    payload = services.message_payload(message, share_token=share_token)
    events = message.deltas if message.is_final else services.live.read_delta_log(message.pk)
    return Answer(
        message=message,
        payload=payload,
        thinking=thinking_segments(events),
        output=payload["sections"]["output"],
        text=payload["sections"]["text"],
    )


def turns(conversation: Conversation, share_token: str | None = None) -> list[Turn]:
    messages = services.visible_messages(conversation)
    result: list[Turn] = []
    by_question: dict[str, Turn] = {}
    for message in messages:
        if message.role == Message.Role.USER:
            turn = Turn(question=message, answers=[])
            by_question[message.pk] = turn
            result.append(turn)
        elif message.reply_to_id in by_question:
            by_question[message.reply_to_id].answers.append(answer(message, share_token))
    for turn in result:
        chosen = services.chosen_answer(turn.question, [a.message for a in turn.answers])
        turn.shown = next((a for a in turn.answers if a.message is chosen), None)
    return result


def page_preview(conversation: Conversation) -> dict[str, str]:
    """Title and description for link previews (OpenGraph / Twitter cards)."""
    shown = [turn for turn in turns(conversation) if turn.shown]
    title = conversation.title or "A conversation"
    description = ""
    if shown:
        sections = shown[0].shown.payload["sections"] if shown[0].shown else {}
        description = " ".join((sections.get("output") or sections.get("thinking") or "").split())
    if len(description) > 200:
        description = description[:199].rstrip() + "…"
    return {"title": title, "description": description or "Watch a reasoning model think."}
