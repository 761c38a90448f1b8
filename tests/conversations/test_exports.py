"""Exporting a conversation (issue 4.6): Markdown to read, JSON with sections, stats and model.

Through the API (`/api/v1/conversations/<id>/export?format=json|md`) and the page links
(`/c/<id>/export.md`, `/c/<id>/export.json`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from django.http import HttpResponse
from django.test import Client
from django.utils import timezone

from playground import services
from playground.models import Conversation, Message, SamplePrompt
from playground.realtime import delta_log, redis_clients
from tests.conversations.answers import finish
from tests.support.simulator import running_simulator

VisitorFactory = Callable[[], Client]

SECTIONS = {"thinking", "reflections", "output", "text"}
STATS = {
    "queue_seconds",
    "ttft_seconds",
    "duration_seconds",
    "tokens",
    "tokens_per_second",
    "finish_reason",
}


def ask(client: Client, prompt: str) -> dict[str, Any]:
    response = client.post(
        "/api/v1/conversations",
        data=json.dumps({"prompt": prompt}),
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def follow_up(client: Client, conversation_id: str, prompt: str) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        data=json.dumps({"prompt": prompt}),
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return response.json()["message"]


def a_conversation(client: Client) -> dict[str, Any]:
    """Two turns: a full Reflection answer, then a short follow-up answer."""
    created = ask(client, "Which is larger, 9.11 or 9.9?")
    finish(
        created["message"]["id"],
        thinking="Compare the decimals digit by digit.\nTenths first.",
        reflections=("Wait: 0.9 > 0.11, so 9.9 wins.",),
        output="9.9 is larger.",
        model_id="test/model",
        model_info={"model_id": "test/model", "max_input_tokens": 8000},
        sampling={"temperature": 0.7, "history_turns_dropped": 0},
    )
    second = follow_up(client, created["id"], "By how much?")
    finish(second["id"], thinking="Subtract.", output="By 0.79.")
    return {**created, "second": second["id"]}


def export(client: Client, conversation_id: str, kind: str) -> HttpResponse:
    return client.get(f"/api/v1/conversations/{conversation_id}/export?format={kind}")


def export_data(client: Client, conversation_id: str) -> dict[str, Any]:
    response = export(client, conversation_id, "json")
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def assert_error(response: HttpResponse, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == code


def attachment_name(response: HttpResponse) -> str:
    match = re.fullmatch(r'attachment; filename="([^"]+)"', response["Content-Disposition"])
    assert match, response["Content-Disposition"]
    return match.group(1)


# --- JSON ---------------------------------------------------------------------------------------


def test_the_json_export_is_an_attachment_with_the_whole_conversation(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = a_conversation(visitor)

    response = export(visitor, created["id"], "json")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert attachment_name(response) == "which-is-larger-911-or-99.json"
    data = json.loads(response.content)
    assert data["format"] == "reflection-playground.conversation/1"
    assert data["id"] == created["id"]
    assert data["title"] == "Which is larger, 9.11 or 9.9?"
    datetime.fromisoformat(data["created"])
    datetime.fromisoformat(data["exported"])
    assert [(m["role"], m["prompt"]) for m in data["messages"]] == [
        ("user", "Which is larger, 9.11 or 9.9?"),
        ("assistant", "Which is larger, 9.11 or 9.9?"),
        ("user", "By how much?"),
        ("assistant", "By how much?"),
    ]


def test_the_json_export_carries_sections_stats_and_model(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = a_conversation(visitor)

    messages = export_data(visitor, created["id"])["messages"]

    question, answer = messages[0], messages[1]
    assert set(question) >= {"id", "role", "created", "prompt"}
    assert "sections" not in question
    assert answer["id"] == created["message"]["id"]
    assert answer["reply_to"] == question["id"]
    assert answer["status"] == "done"
    assert set(answer["sections"]) >= SECTIONS
    assert answer["sections"] == {
        "thinking": "Compare the decimals digit by digit.\nTenths first.",
        "reflections": ["Wait: 0.9 > 0.11, so 9.9 wins."],
        "output": "9.9 is larger.",
        "text": "",
    }
    assert set(answer["stats"]) >= STATS
    assert answer["stats"]["tokens"] == 40
    assert answer["stats"]["duration_seconds"] == 2.0
    assert answer["stats"]["finish_reason"] == "eos_token"
    assert answer["error"] is None
    assert answer["model"]["model_id"] == "test/model"
    assert answer["model"]["max_input_tokens"] == 8000
    assert answer["model"]["backend"] == "backend-1", "its public name, not its address"
    assert answer["sampling"]["temperature"] == 0.7


def test_the_json_export_carries_the_error_of_a_failed_answer(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor, "Fails")
    finish(
        created["message"]["id"],
        output="Partial",
        status="error",
        error_code="generation",
        error_message="The model server failed.",
    )

    answer = export_data(visitor, created["id"])["messages"][1]

    assert answer["status"] == "error"
    assert answer["error"] == {"code": "generation", "message": "The model server failed."}
    assert answer["sections"]["output"] == "Partial"


def test_the_json_export_of_a_running_answer_has_the_text_written_so_far(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor, "Running")
    message_id = created["message"]["id"]
    Message.objects.filter(pk=message_id).update(status="running", started_at=timezone.now())
    written = {"type": "delta", "seq": 1, "section": "thinking", "text": "So far."}
    redis_clients.redis_client().rpush(delta_log.delta_log_key(message_id), json.dumps(written))

    answer = export_data(visitor, created["id"])["messages"][1]

    assert answer["status"] == "running"
    assert answer["sections"]["thinking"] == "So far."
    assert answer["stats"] is None


def test_the_export_keeps_alternatives_and_leaves_out_edited_turns(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = a_conversation(visitor)
    response = visitor.post(f"/api/v1/messages/{created['message']['id']}/regenerate")
    assert response.status_code == 201
    finish(response.json()["message"]["id"], output="Regenerated output")
    edit = visitor.post(
        f"/api/v1/conversations/{created['id']}/edit",
        data=json.dumps({"prompt": "By how much, exactly?"}),
        content_type="application/json",
    )
    assert edit.status_code == 201

    data = export_data(visitor, created["id"])

    prompts = [(m["role"], m["prompt"]) for m in data["messages"]]
    assert ("user", "By how much?") not in prompts
    assert ("user", "By how much, exactly?") in prompts
    outputs = [m["sections"]["output"] for m in data["messages"] if m["role"] == "assistant"]
    assert outputs[:2] == ["9.9 is larger.", "Regenerated output"]
    assert "By 0.79." not in json.dumps(data)
    markdown = export(visitor, created["id"], "md").content.decode()
    assert "By 0.79." not in markdown and "By how much?" not in markdown


# --- Markdown -----------------------------------------------------------------------------------


def test_the_markdown_export_has_question_thinking_reflection_and_output(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = a_conversation(visitor)

    response = export(visitor, created["id"], "md")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert attachment_name(response) == "which-is-larger-911-or-99.md"
    text = response.content.decode()
    assert text.startswith("# Which is larger, 9.11 or 9.9?\n")
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert "## Question\n\nWhich is larger, 9.11 or 9.9?" in text
    assert "**Thinking**\n\n> Compare the decimals digit by digit.\n> Tenths first." in text
    assert "**Reflection 1**\n\n> Wait: 0.9 > 0.11, so 9.9 wins." in text
    assert "**Output**\n\n9.9 is larger." in text
    assert "_model: test/model · 40 tokens · 2.0 s_" in text
    assert text.count("## Question") == 2 and text.count("## Answer") == 2
    order = [text.index(part) for part in ("9.9 is larger.", "By how much?", "By 0.79.")]
    assert order == sorted(order)


def test_the_markdown_export_says_when_an_answer_did_not_finish(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor, "Stopped")
    finish(created["message"]["id"], thinking="Half a thought", status="cancelled")

    text = export(visitor, created["id"], "md").content.decode()

    assert "> Half a thought" in text
    assert "cancelled" in text
    assert "**Output**" not in text


def test_the_markdown_export_notes_an_answer_cut_off_at_the_length_limit(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor, "Long")
    finish(created["message"]["id"], output="Truncated", finish_reason="length")

    assert "cut off at the length limit" in export(visitor, created["id"], "md").content.decode()


@pytest.mark.parametrize(
    ("title", "filename"),
    [
        ('Quotes " and ; semicolons\r\nX-Injected: 1', "quotes-and-semicolons-x-injected-1"),
        ("Что такое 42?", "42"),
        ("日本語", "conversation"),
        ("x" * 150, "x" * 60),
    ],
    ids=["header-characters", "mostly-non-ascii", "all-non-ascii", "long"],
)
def test_the_download_name_is_a_safe_slug_of_the_title(
    visitor: Client, backend: str, enqueued: list[str], title: str, filename: str
) -> None:
    created = ask(visitor, "Something")
    Conversation.objects.filter(pk=created["id"]).update(title=title)

    for kind in ("json", "md"):
        response = export(visitor, created["id"], kind)
        assert response.status_code == 200
        assert attachment_name(response) == f"{filename}.{kind}"
        assert "X-Injected" not in response


def test_the_export_format_defaults_to_json(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = a_conversation(visitor)
    response = visitor.get(f"/api/v1/conversations/{created['id']}/export")
    assert response.status_code == 200
    assert json.loads(response.content)["id"] == created["id"]


@pytest.mark.parametrize("kind", ["xml", "MD", "", "json%00"])
def test_an_unknown_export_format_is_refused(
    visitor: Client, backend: str, enqueued: list[str], kind: str
) -> None:
    created = a_conversation(visitor)
    assert_error(export(visitor, created["id"], kind), 400, "invalid_params")


def test_only_the_owner_can_export(
    visitor: Client, make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    created = a_conversation(visitor)
    token = Conversation.objects.get(pk=created["id"]).share_token

    for stranger in (make_visitor(), Client()):
        assert_error(export(stranger, created["id"], "json"), 404, "not_found")
        assert_error(export(stranger, created["id"], "md"), 404, "not_found")
        for kind in ("md", "json"):
            response = stranger.get(f"/c/{created['id']}/export.{kind}")
            assert response.status_code == 404
            assert response["Content-Type"].startswith("text/html")
    assert_error(export(visitor, str(token), "json"), 404, "not_found")
    assert_error(export(visitor, "noSuchConversation", "json"), 404, "not_found")


def test_export_only_accepts_get(visitor: Client, backend: str, enqueued: list[str]) -> None:
    created = a_conversation(visitor)
    response = visitor.post(f"/api/v1/conversations/{created['id']}/export?format=json")
    assert_error(response, 405, "method_not_allowed")


# --- the page links -----------------------------------------------------------------------------


def test_the_conversation_page_links_both_exports(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = a_conversation(visitor)

    html = visitor.get(f"/c/{created['id']}/").content.decode()

    assert f'href="/c/{created["id"]}/export.md"' in html
    assert f'href="/c/{created["id"]}/export.json"' in html


def test_the_page_exports_match_the_api_exports(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = a_conversation(visitor)

    markdown = visitor.get(f"/c/{created['id']}/export.md")
    data = visitor.get(f"/c/{created['id']}/export.json")

    assert markdown.status_code == data.status_code == 200
    assert attachment_name(markdown).endswith(".md")
    assert attachment_name(data).endswith(".json")
    api_markdown = export(visitor, created["id"], "md").content.decode()
    assert markdown.content.decode() == api_markdown
    page_data, api_data = json.loads(data.content), export_data(visitor, created["id"])
    page_data.pop("exported")
    api_data.pop("exported")
    assert page_data == api_data
    assert visitor.get(f"/c/{created['id']}/export.txt").status_code == 404


# --- a real answer ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_export_of_a_real_answer_names_the_model_and_its_stats(
    visitor: Client, settings: Any, samples: list[SamplePrompt], enqueued: list[str]
) -> None:
    with running_simulator() as url:
        settings.TGI_URLS = [url]
        response = visitor.post(
            "/api/v1/conversations",
            data=json.dumps({"sample": "strawberry"}),
            content_type="application/json",
        )
        created = response.json()
        services.run_generation(created["message"]["id"])

    data = export_data(visitor, created["id"])
    answer = data["messages"][1]
    stored = Message.objects.get(pk=created["message"]["id"])
    assert answer["status"] == "done"
    assert answer["sections"] == stored.sections
    assert answer["sections"]["output"] and answer["sections"]["reflections"]
    assert answer["model"]["model_id"] == "reflection-playground/simulator"
    assert answer["model"]["backend"] == "backend-1"
    assert url not in json.dumps(data), "the backend's address is for operators"
    assert answer["model"]["max_input_tokens"] > 0
    assert answer["stats"]["tokens"] > 50
    assert answer["stats"]["finish_reason"] == "eos_token"
    assert answer["sampling"]["history_turns_dropped"] == 0
    markdown = export(visitor, created["id"], "md").content.decode()
    assert stored.sections["output"].strip() in markdown
    assert "model: reflection-playground/simulator" in markdown
    assert "**Reflection 1**" in markdown
