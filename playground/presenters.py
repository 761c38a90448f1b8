"""Shape conversations for the templates: turns, answer segments, phases, stats, provenance.

The page renders everything server-side first (and for visitors without JavaScript, that is
all they get): the output as escaped text, the thinking with each reflection where it was
written, the phase the answer is in, the final stats, the provenance and the answer check.
static/js/stream.js then renders the output as Markdown and keeps all of it live; the formats
below (seconds, stats, sampling) are mirrored there, so both render the same text.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils.translation import gettext, gettext_lazy, ngettext, pgettext_lazy

from playground import services
from playground.durations import format_measured, format_wait
from playground.models import Conversation, Message
from playground.preview_image import PreviewCard

# Lazy, like every label below: they are read while a page renders, in its reader's language.
PHASES = (
    ("queued", pgettext_lazy("a phase of an answer", "Queued")),
    ("thinking", pgettext_lazy("a phase of an answer", "Thinking")),
    ("reflecting", pgettext_lazy("a phase of an answer", "Reflecting")),
    ("answering", pgettext_lazy("a phase of an answer", "Answering")),
    ("done", pgettext_lazy("a phase of an answer", "Done")),
)
FINISH_REASONS = {
    "length": gettext_lazy("cut off at the length limit"),
    "eos_token": gettext_lazy("finished normally"),
    "stop_sequence": gettext_lazy("stopped at a stop sequence"),
}
# top_p, top_k and typical_p are the parameters' own names, the same in every language.
SAMPLING_LABELS = (
    ("temperature", pgettext_lazy("a sampling parameter", "temperature")),
    ("top_p", "top_p"),
    ("top_k", "top_k"),
    ("typical_p", "typical_p"),
    ("repetition_penalty", pgettext_lazy("a sampling parameter", "repetition penalty")),
    ("frequency_penalty", pgettext_lazy("a sampling parameter", "frequency penalty")),
    ("max_new_tokens", pgettext_lazy("a sampling parameter", "max new tokens")),
    ("seed", pgettext_lazy("a sampling parameter", "seed")),
)


def tokens_per_second(speed: Any) -> str:
    return gettext("%(speed)s tokens/s") % {"speed": speed}


def stat_parts(stats: dict[str, Any] | None) -> list[str]:
    """The stats line under an answer, piece by piece."""
    if not stats:
        return []
    parts = []
    if stats.get("queue_seconds") is not None:
        measured = format_measured(stats["queue_seconds"])
        parts.append(gettext("Queue %(time)s") % {"time": measured})
    if stats.get("ttft_seconds") is not None:
        measured = format_measured(stats["ttft_seconds"])
        parts.append(gettext("First token %(time)s") % {"time": measured})
    if stats.get("tokens") is not None:
        count = stats["tokens"]
        parts.append(ngettext("%(count)s token", "%(count)s tokens", count) % {"count": count})
    if stats.get("tokens_per_second"):
        parts.append(tokens_per_second(stats["tokens_per_second"]))
    if stats.get("duration_seconds") is not None:
        measured = format_measured(stats["duration_seconds"])
        parts.append(gettext("%(time)s in all") % {"time": measured})
    reason = stats.get("finish_reason")
    if reason:
        known = FINISH_REASONS.get(reason)
        # An unknown reason is the backend's own word, shown as it came.
        parts.append(str(known) if known else gettext("finished: %(reason)s") % {"reason": reason})
    return parts


def facts_line(stats: dict[str, Any] | None, provenance: dict[str, Any] | None) -> str:
    """The one line a finished answer shows of its facts (the model's short name, the time it
    took, its speed); the rest is a click away."""
    parts = []
    model = (provenance or {}).get("model_id") or ""
    if model:
        parts.append(model.rsplit("/", 1)[-1])
    if stats and stats.get("duration_seconds") is not None:
        parts.append(format_measured(stats["duration_seconds"]))
    if stats and stats.get("tokens_per_second"):
        parts.append(tokens_per_second(stats["tokens_per_second"]))
    return " · ".join(parts)


def sampling_parts(provenance: dict[str, Any] | None) -> list[str]:
    sampling = (provenance or {}).get("sampling") or {}
    return [f"{label} {sampling[key]}" for key, label in SAMPLING_LABELS if key in sampling]


def _epoch(moment: datetime | None) -> str:
    return f"{moment.timestamp():.3f}" if moment else ""


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
    phase: str = "queued"
    # While it waits for a sample: how the model answered that sample before, to read meanwhile.
    meanwhile: str = ""

    @property
    def active(self) -> bool:
        return not self.message.is_final

    @property
    def thinking_open(self) -> bool:
        """Open while it is being written; folded away once there is an answer to read."""
        return not self.output.strip()

    @property
    def stats(self) -> list[str]:
        return stat_parts(self.payload["stats"])

    @property
    def facts(self) -> str:
        return facts_line(self.payload["stats"], self.payload["provenance"])

    @property
    def eta_text(self) -> str:
        """The wait still expected, written as the page's script writes it ("2 min 05 s")."""
        eta = self.payload["eta_seconds"]
        return format_wait(eta) if eta else ""

    @property
    def cut_off(self) -> bool:
        return bool(self.payload["stats"]) and self.payload["stats"]["finish_reason"] == "length"

    @property
    def sampling(self) -> list[str]:
        return sampling_parts(self.payload["provenance"])

    @property
    def max_new_tokens(self) -> Any:
        return ((self.payload["provenance"] or {}).get("sampling") or {}).get("max_new_tokens")

    @property
    def server_now(self) -> str:
        return f"{time.time():.3f}"

    @property
    def created_epoch(self) -> str:
        return _epoch(self.message.created)

    @property
    def started_epoch(self) -> str:
        return _epoch(self.message.started_at)

    @property
    def shows_phases(self) -> bool:
        """While it is written, and once done when its phases were timed (answers finished
        before the timing was kept have none to show)."""
        return self.active or (self.phase == "done" and bool(self.message.phase_seconds))

    @property
    def phases(self) -> list[dict[str, Any]]:
        """Each phase with its state (past, current, future, or skipped by a finished answer)
        and, where the server knows it, the time spent: the queue always, the thinking while
        nothing else came yet, and every phase of a finished answer."""
        now = time.time()
        created = self.message.created.timestamp()
        started = self.message.started_at.timestamp() if self.message.started_at else None
        order = [name for name, _ in PHASES]
        current = order.index(self.phase) if self.phase in order else len(order) - 1
        seconds: dict[str, float] = {"queued": (started or now) - created}
        if self.phase == "thinking" and started is not None and not self.output:
            seconds["thinking"] = now - started
        if self.phase == "done":
            seconds |= self.message.phase_seconds
        done = self.phase == "done"

        def state(i: int, name: str) -> str:
            if i == current:
                return "past" if done else "current"
            if i > current:
                return "future"
            return "past" if not done or name in seconds else "skipped"

        return [
            {
                "name": name,
                "label": str(label),
                "state": state(i, name),
                "time": format_measured(seconds[name]) if name in seconds else "",
            }
            for i, (name, label) in enumerate(PHASES)
        ]


class TurnList(list):
    """The turns of a conversation; `active` says whether an answer is still being written."""

    @property
    def active(self) -> bool:
        return any(turn.shown and turn.shown.active for turn in self)


@dataclass
class Turn:
    question: Message
    answers: list[Answer]
    shown: Answer | None = None
    # The versions of this turn's question (itself among them), oldest first.
    versions: list[Message] = field(default_factory=list)

    @property
    def version(self) -> int:
        return self.versions.index(self.question) + 1 if self.question in self.versions else 1

    @property
    def previous_version(self) -> Message | None:
        return _beside(self.versions, self.question, -1)

    @property
    def next_version(self) -> Message | None:
        return _beside(self.versions, self.question, 1)

    @property
    def position(self) -> int:
        return self.answers.index(self.shown) + 1 if self.shown else 0

    @property
    def previous(self) -> Answer | None:
        return _beside(self.answers, self.shown, -1)

    @property
    def next(self) -> Answer | None:
        return _beside(self.answers, self.shown, 1)


def _beside(items: list[Any], item: Any, step: int) -> Any:
    """The item `step` places from `item` in `items`: None past either end, or when `item` is
    not among them."""
    if item is None or item not in items:
        return None
    index = items.index(item) + step
    return items[index] if 0 <= index < len(items) else None


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
    for segment in segments:
        # Each piece opens with the newline after a tag (static/js/stream/dom.js drops it the
        # same way).
        segment.text = segment.text.lstrip()
    return [segment for segment in segments if segment.text]


def phase_of(message: Message, events: list[dict[str, Any]]) -> str:
    """queued → thinking → reflecting → answering → done (or cancelled, error)."""
    if message.is_final:
        return message.status
    if message.status == Message.Status.QUEUED:
        return "queued"
    sections = [event["section"] for event in events if event["section"] != "text"]
    if "output" in sections:
        return "answering"
    return "reflecting" if sections and sections[-1] == "reflection" else "thinking"


def answer(message: Message, share_token: str | None = None) -> Answer:
    # One reading of the log for the text and its seq: were they read apart, the page could
    # show deltas past data-seq and the stream would then append them a second time.
    events = services.message_events(message)
    payload = services.message_payload(message, share_token=share_token, events=events)
    return Answer(
        message=message,
        payload=payload,
        thinking=thinking_segments(events),
        # A section opens with the newline after its tag: not a blank first line on the page.
        output=payload["sections"]["output"].lstrip(),
        text=payload["sections"]["text"],
        phase=phase_of(message, events),
        meanwhile=earlier_answer_text(message),
    )


MEANWHILE_CHARS = 600


def earlier_answer_text(message: Message) -> str:
    """For an answer to a sample still waiting in line: the sample's last answer, in plain
    words, so the wait is spent reading something (empty for free prompts and otherwise)."""
    waiting = message.status == Message.Status.QUEUED and message.dispatched_at is None
    if not waiting or not message.sample_slug:
        return ""
    earlier = services.earlier_answer_to_sample(
        message.sample_slug, message.prompt, excluding=message.pk
    )
    if earlier is None:
        return ""
    output = (earlier.sections or {}).get("output") or ""
    return services.shortened(plain_text(output), MEANWHILE_CHARS)


def turns(conversation: Conversation, share_token: str | None = None) -> TurnList:
    messages = services.visible_messages(conversation)
    versions = services.turn_versions(conversation, messages)
    result = TurnList()
    by_question: dict[str, Turn] = {}
    for message in messages:
        if message.role == Message.Role.USER:
            turn = Turn(question=message, answers=[], versions=versions[message.pk])
            by_question[message.pk] = turn
            result.append(turn)
        elif message.reply_to_id in by_question:
            by_question[message.reply_to_id].answers.append(answer(message, share_token))
    for turn in result:
        chosen = services.chosen_answer(turn.question, [a.message for a in turn.answers])
        turn.shown = next((a for a in turn.answers if a.message is chosen), None)
    return result


def title_repeats_question(conversation: Conversation, shown_turns: list[Turn]) -> bool:
    """Whether the title is just the first question's words (not a rename)."""
    if not shown_turns:
        return False
    return conversation.title == services.title_for(shown_turns[0].question.prompt)


def page_preview(conversation: Conversation, shown_turns: list[Turn]) -> dict[str, str]:
    """Title and description for link previews (OpenGraph / Twitter cards), from the turns
    the page already built: the final answer as plain text once there is one, never half a
    sentence of thinking."""
    title = conversation.title or gettext("A conversation")
    first = next((turn.shown for turn in shown_turns if turn.shown), None)
    description = ""
    if first is not None and first.message.status == Message.Status.DONE:
        description = plain_text(first.payload["sections"].get("output") or "")
    elif first is not None and first.active:
        description = gettext("A reasoning model is answering this live: watch it think.")
    description = services.shortened(description, 200)
    return {
        "title": title,
        "description": description or gettext("Watch a reasoning model think."),
    }


def preview_card(conversation: Conversation, shown_turns: list[Turn]) -> PreviewCard:
    """What the link preview's picture says: the first question, and how it was answered (the
    check's verdict for a sample, else the facts, or that it is being answered live)."""
    if not shown_turns:
        return PreviewCard(conversation.title, gettext("Watch a reasoning model think."), "neutral")
    first = shown_turns[0]
    question = " ".join(first.question.prompt.split())
    answer = first.shown
    if answer is None or answer.active:
        return PreviewCard(question, gettext("Being answered live"), "live")
    check = answer.payload["check"]
    if check and check["verdict"] == "correct":
        verdict = gettext("Correct: %(found)s") % {"found": check["found"] or check["expected"]}
        if check["reflection_changed"]:
            verdict += " · " + gettext("a reflection changed the outcome")
        return PreviewCard(question, verdict, "correct")
    if check:
        verdict = gettext("Not right (expected %(expected)s)") % {"expected": check["expected"]}
        return PreviewCard(question, verdict, "incorrect")
    if answer.message.status == Message.Status.DONE:
        return PreviewCard(question, answer.facts or gettext("Answered"), "neutral")
    return PreviewCard(question, gettext("Not answered"), "neutral")


# Markdown's marks, which a link preview would show as typed.
MARKDOWN_MARKS = (
    # Links and images: their text.
    (re.compile(r"!?\[([^\]]*)\]\([^)]*\)"), r"\1"),
    # Headings, quotes and list bullets at the start of a line.
    (re.compile(r"^\s{0,3}(#{1,6}|>|[-*+]|\d+[.)])\s+", re.MULTILINE), ""),
    # Bold, strike-through, code fences and display math.
    (re.compile(r"(\*\*|__|~~|`+|\$\$)"), ""),
    # *Italic* and $inline math$ (a lone "$5" stays a price).
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (re.compile(r"\$(?=\S)([^$\n]+?)(?<=\S)\$"), r"\1"),
)


def plain_text(markdown: str) -> str:
    """Markdown as the words a reader sees, on one line."""
    text = markdown
    for pattern, replacement in MARKDOWN_MARKS:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())
