"""A conversation as a file to keep: Markdown to read, JSON with everything to reuse."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext, ngettext, pgettext, pgettext_lazy

from playground import rotation, services
from playground.models import Conversation, Message


def export_json(conversation: Conversation) -> dict[str, Any]:
    messages = services.visible_messages(conversation)
    turns = []
    for message in messages:
        entry: dict[str, Any] = {
            "id": message.pk,
            "role": message.role,
            "created": message.created.isoformat(),
            "prompt": message.prompt,
        }
        if message.role == Message.Role.ASSISTANT:
            sections, _ = services.live_sections(message)
            entry.update(
                reply_to=message.reply_to_id,
                status=message.status,
                sections=sections,
                stats=services.message_stats(message),
                error=(
                    {"code": message.error_code, "message": message.error_message}
                    if message.status == Message.Status.ERROR
                    else None
                ),
                model={
                    "backend": rotation.public_name(message.backend),
                    "model_id": message.model_id or None,
                    **{k: v for k, v in (message.model_info or {}).items() if k != "model_id"},
                },
                sampling=message.sampling or {},
            )
        turns.append(entry)
    return {
        "format": "reflection-playground.conversation/1",
        "id": conversation.pk,
        "title": conversation.title,
        "created": conversation.created.isoformat(),
        "exported": timezone.now().isoformat(),
        "messages": turns,
    }


def download(conversation: Conversation, kind: str) -> HttpResponse:
    """The export as a file download (`kind` is "json" or "md")."""
    stem = slugify(conversation.title)[:60] or "conversation"
    if kind == "md":
        response = HttpResponse(
            export_markdown(conversation), content_type="text/markdown; charset=utf-8"
        )
    else:
        response = JsonResponse(export_json(conversation), json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="{stem}.{kind}"'
    return response


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.strip().splitlines())


# The Markdown is for people, in its reader's language; the JSON export is for programs and
# keeps the stored values.
STATUS_WORDS = {
    Message.Status.QUEUED: pgettext_lazy("an answer's status", "queued"),
    Message.Status.RUNNING: pgettext_lazy("an answer's status", "running"),
    Message.Status.ERROR: pgettext_lazy("an answer's status", "error"),
    Message.Status.CANCELLED: pgettext_lazy("an answer's status", "cancelled"),
}


def export_markdown(conversation: Conversation) -> str:
    data = export_json(conversation)
    title = conversation.title or gettext("Conversation")
    lines = [f"# {title}", ""]
    exported = gettext("Exported from Reflection Playground on %(date)s.") % {
        "date": data["exported"][:10]
    }
    lines.append(f"_{exported}_")
    for entry in data["messages"]:
        lines.append("")
        if entry["role"] == Message.Role.USER:
            question = gettext("Question")
            lines += [f"## {question}", "", entry["prompt"].strip()]
            continue
        sections = entry["sections"]
        answer = pgettext("the heading of the model's final answer", "Answer")
        lines.append(f"## {answer}")
        if sections["thinking"].strip():
            title = pgettext("the panel with the model's thinking", "Thinking")
            lines += ["", f"**{title}**", "", _quote(sections["thinking"])]
        for number, reflection in enumerate(sections["reflections"], start=1):
            title = gettext("Reflection %(number)s") % {"number": number}
            lines += ["", f"**{title}**", "", _quote(reflection)]
        if sections["output"].strip():
            output = gettext("Output")
            lines += ["", f"**{output}**", "", sections["output"].strip()]
        if sections["text"].strip():
            lines += ["", sections["text"].strip()]
        lines += ["", _status_line(entry)]
    return "\n".join(lines).rstrip() + "\n"


def _status_line(entry: dict[str, Any]) -> str:
    model = entry["model"].get("model_id") or gettext("unknown model")
    stats = entry["stats"] or {}
    parts = [gettext("model: %(model)s") % {"model": model}]
    if stats.get("tokens"):
        count = stats["tokens"]
        parts.append(ngettext("%(count)s token", "%(count)s tokens", count) % {"count": count})
    if stats.get("duration_seconds") is not None:
        parts.append(gettext("%(seconds)s s") % {"seconds": f"{stats['duration_seconds']:.1f}"})
    if entry["status"] != Message.Status.DONE:
        parts.append(str(STATUS_WORDS.get(entry["status"], entry["status"])))
    if stats.get("finish_reason") == "length":
        parts.append(gettext("cut off at the length limit"))
    return "_" + " · ".join(parts) + "_"
