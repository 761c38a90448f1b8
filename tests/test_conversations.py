"""Conversations worth keeping (issue 4): multi-turn context, regenerate and select, edit and
resend, history, rename, delete, share links and their previews, retention.

Most tests finish answers by writing the row directly (status, sections and the delta log the
sections come from), the way a worker would; the ones marked `transaction=True` run real
generations against the in-process simulator or drive the WebSocket consumer.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from io import StringIO
from types import SimpleNamespace
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.http import HttpResponse
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from inference.prompt import DEFAULT_SYSTEM_PROMPT, Turn, build_prompt, estimate_tokens
from playground import rotation, services, slots
from playground.consumers import MessageStreamConsumer
from playground.models import Conversation, Message, SamplePrompt
from playground.realtime import cancel_flags, channel_groups, delta_log, redis_clients
from tests.answers import finish
from tests.simulator import running_simulator

VisitorFactory = Callable[..., Client]

CONTEXT_NOTE = "did not fit the model's context"
SUMMARY_FIELDS = {"id", "title", "created", "updated", "share_url"}
TOKEN = re.compile(r"[A-Za-z0-9_-]+")


@pytest.fixture
def sim(settings: Any) -> Iterator[str]:
    with running_simulator() as url:
        settings.TGI_URLS = [url]
        settings.GENERATION_CONCURRENCY = 2
        yield url


# --- helpers ----------------------------------------------------------------------------------


def post_json(client: Client, path: str, data: Any) -> HttpResponse:
    return client.post(path, data=json.dumps(data), content_type="application/json")


def patch_json(client: Client, path: str, data: Any) -> HttpResponse:
    return client.patch(path, data=json.dumps(data), content_type="application/json")


def ask(client: Client, prompt: str = "Which is larger, 9.11 or 9.9?") -> dict[str, Any]:
    response = post_json(client, "/api/v1/conversations", {"prompt": prompt})
    assert response.status_code == 201, response.content
    return response.json()


def follow_up(client: Client, conversation_id: str, prompt: str) -> dict[str, Any]:
    response = post_json(
        client, f"/api/v1/conversations/{conversation_id}/messages", {"prompt": prompt}
    )
    assert response.status_code == 201, response.content
    return response.json()["message"]


def set_running(message_id: str) -> None:
    Message.objects.filter(pk=message_id).update(status="running", started_at=timezone.now())


def answered(client: Client, prompt: str, output: str, thinking: str = "") -> dict[str, Any]:
    """A new conversation whose first answer is already written."""
    created = ask(client, prompt)
    finish(created["message"]["id"], output=output, thinking=thinking or f"Thinking: {prompt}")
    return created


def conversation_json(client: Client, conversation_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/conversations/{conversation_id}")
    assert response.status_code == 200, response.content
    return response.json()


def page(client: Client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/html")
    return response.content.decode()


def assert_error(response: HttpResponse, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def assert_not_found_page(response: HttpResponse) -> None:
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert "Nothing here" in response.content.decode()


def token_of(share_url: str) -> str:
    match = re.fullmatch(r"/s/([A-Za-z0-9_-]+)/", share_url)
    assert match, share_url
    return match.group(1)


def counts() -> tuple[int, int]:
    return Conversation.objects.count(), Message.objects.count()


def regenerate(client: Client, message_id: str) -> dict[str, Any]:
    response = client.post(f"/api/v1/messages/{message_id}/regenerate")
    assert response.status_code == 201, response.content
    return response.json()["message"]


def model_prompt_for(message_id: str, budget: int = 8000) -> tuple[str, int]:
    message = Message.objects.select_related("conversation").get(pk=message_id)
    return services.build_model_prompt(message, {"max_input_tokens": budget})


def stream(message_id: str, query: str, session: str | None = None) -> WebsocketCommunicator:
    path = f"/ws/messages/{message_id}/?{query}"
    socket = WebsocketCommunicator(MessageStreamConsumer.as_asgi(), path)
    socket.scope["url_route"] = {"kwargs": {"message_id": message_id}}
    socket.scope["query_string"] = query.encode()
    socket.scope["session"] = SimpleNamespace(session_key=session)
    return socket


async def receive_until_closed(socket: WebsocketCommunicator) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while True:
        output = await socket.receive_output(3)
        if output["type"] == "websocket.close":
            events.append({"closed": output.get("code", 1000)})
            return events
        events.append(json.loads(output["text"]))


# --- multi-turn: what goes back to the model --------------------------------------------------


def test_a_follow_up_carries_only_the_earlier_output_in_the_llama_format(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "First question", "First output", thinking="Private musing")
    answer = follow_up(visitor, created["id"], "Second question")

    prompt, dropped = model_prompt_for(answer["id"])

    assert dropped == 0
    assert prompt.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>")
    assert (
        "<|start_header_id|>user<|end_header_id|>\n\nFirst question<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nFirst output<|eot_id|>"
    ) in prompt
    assert "Private musing" not in prompt
    assert prompt.endswith(
        "Second question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_an_unfinished_earlier_answer_is_not_sent_back(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor, "First question")
    finish(created["message"]["id"], output="Half an answer", status="cancelled")
    answer = follow_up(visitor, created["id"], "Second question")

    prompt, _ = model_prompt_for(answer["id"])

    assert "Half an answer" not in prompt
    assert "First question" not in prompt


def test_a_tight_context_budget_drops_the_oldest_turns_first(
    visitor: Client, backend: str, enqueued: list[str], settings: Any
) -> None:
    created = answered(visitor, "Oldest question " + "word " * 60, "Oldest output")
    second = follow_up(visitor, created["id"], "Middle question")
    finish(second["id"], output="Middle output")
    last = follow_up(visitor, created["id"], "Last question")

    system = settings.SYSTEM_PROMPT or DEFAULT_SYSTEM_PROMPT
    middle = [Turn(user="Middle question", assistant="Middle output")]
    budget = estimate_tokens(build_prompt("Last question", middle, system))

    prompt, dropped = model_prompt_for(last["id"], budget=budget)

    assert dropped == 1
    assert "Oldest" not in prompt
    assert "Middle question" in prompt and "Middle output" in prompt
    assert "Last question" in prompt


def test_the_page_says_when_old_turns_did_not_fit_the_context(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "First question", "First output")
    answer = follow_up(visitor, created["id"], "Second question")
    finish(answer["id"], output="Second output")
    Message.objects.filter(pk=answer["id"]).update(sampling={"history_turns_dropped": 2})

    html = page(visitor, f"/c/{created['id']}/")

    assert CONTEXT_NOTE in html
    assert "The 2 oldest turns of this conversation" in html
    assert "were left out" in html
    assert html.count(CONTEXT_NOTE) == 1
    messages = conversation_json(visitor, created["id"])["messages"]
    assert [m["history_turns_dropped"] for m in messages if m["role"] == "assistant"] == [0, 2]


def test_the_page_has_no_context_note_when_everything_fit(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "First question", "First output")
    answer = follow_up(visitor, created["id"], "Second question")
    finish(answer["id"], output="Second output")
    Message.objects.filter(pk=answer["id"]).update(sampling={"history_turns_dropped": 0})

    assert CONTEXT_NOTE not in page(visitor, f"/c/{created['id']}/")


@pytest.mark.django_db(transaction=True)
def test_a_real_generation_with_a_tiny_context_drops_history_and_says_so(
    visitor: Client,
    sim: str,
    samples: list[SamplePrompt],
    enqueued: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created = post_json(visitor, "/api/v1/conversations", {"sample": "strawberry"}).json()
    services.run_generation(created["message"]["id"])
    assert Message.objects.get(pk=created["message"]["id"]).status == "done"
    assert CONTEXT_NOTE not in page(visitor, f"/c/{created['id']}/")

    answer = follow_up(visitor, created["id"], "Why?")
    real_info = rotation.backend_info
    monkeypatch.setattr(
        rotation, "backend_info", lambda url: {**real_info(url), "max_input_tokens": 120}
    )
    services.run_generation(answer["id"])

    finished = Message.objects.get(pk=answer["id"])
    assert finished.status == "done"
    assert finished.sampling["history_turns_dropped"] == 1
    body = visitor.get(f"/api/v1/messages/{answer['id']}").json()
    assert body["history_turns_dropped"] == 1
    html = page(visitor, f"/c/{created['id']}/")
    assert "The 1 oldest turn of this conversation did not fit the model's context" in html
    assert "was left out" in html


# --- regenerate ---------------------------------------------------------------------------------


def test_regenerate_keeps_the_old_answer_and_lists_both_newest_last(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "A question", "Old output")
    old_id = created["message"]["id"]

    new = regenerate(visitor, old_id)

    assert new["id"] != old_id
    assert new["role"] == "assistant"
    assert new["status"] == "queued"
    assert new["prompt"] == "A question"
    assert new["reply_to"] == Message.objects.get(pk=old_id).reply_to_id
    assert enqueued == [old_id, new["id"]]
    messages = conversation_json(visitor, created["id"])["messages"]
    assert [(m["role"], m["id"]) for m in messages] == [
        ("user", messages[0]["id"]),
        ("assistant", old_id),
        ("assistant", new["id"]),
    ]
    assert messages[1]["sections"]["output"] == "Old output"
    assert Message.objects.filter(conversation_id=created["id"]).count() == 3


def test_the_page_shows_the_newest_answer_after_regenerating(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "A question", "Old output")
    new = regenerate(visitor, created["message"]["id"])
    finish(new["id"], output="New output")

    html = page(visitor, f"/c/{created['id']}/")

    assert "New output" in html
    assert "Old output" not in html
    assert "Answer 2 of 2" in html
    assert f'action="/m/{created["message"]["id"]}/select"' in html
    assert f'action="/m/{new["id"]}/regenerate"' in html


def test_regenerate_while_the_answer_is_generating_is_refused(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor)
    before = counts()

    assert_error(
        visitor.post(f"/api/v1/messages/{created['message']['id']}/regenerate"),
        409,
        "already_generating",
    )
    set_running(created["message"]["id"])
    assert_error(
        visitor.post(f"/api/v1/messages/{created['message']['id']}/regenerate"),
        409,
        "already_generating",
    )
    assert counts() == before
    assert enqueued == [created["message"]["id"]]


def test_regenerating_an_old_answer_while_its_replacement_runs_is_refused(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "A question", "Old output")
    regenerate(visitor, created["message"]["id"])
    before = counts()

    response = visitor.post(f"/api/v1/messages/{created['message']['id']}/regenerate")

    assert_error(response, 409, "already_generating")
    assert counts() == before


def test_regenerating_a_question_or_someone_elses_answer_is_not_found(
    visitor: Client, make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "A question", "Output")
    question_id = conversation_json(visitor, created["id"])["messages"][0]["id"]
    before = counts()

    assert_error(visitor.post(f"/api/v1/messages/{question_id}/regenerate"), 404, "not_found")
    assert_error(
        make_visitor().post(f"/api/v1/messages/{created['message']['id']}/regenerate"),
        404,
        "not_found",
    )
    assert_error(visitor.post("/api/v1/messages/noSuchMessage/regenerate"), 404, "not_found")
    assert counts() == before


def test_regenerate_needs_a_csrf_token(visitor: Client, backend: str, enqueued: list[str]) -> None:
    created = answered(visitor, "A question", "Output")
    del visitor.defaults["HTTP_X_CSRFTOKEN"]
    before = counts()

    assert_error(
        visitor.post(f"/api/v1/messages/{created['message']['id']}/regenerate"), 403, "csrf"
    )
    assert counts() == before


def test_regenerate_from_the_page_redirects_back(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "A question", "Output")

    response = visitor.post(f"/m/{created['message']['id']}/regenerate")

    assert response.status_code == 302
    assert response["Location"] == f"/c/{created['id']}/"
    assert Message.objects.filter(conversation_id=created["id"], role="assistant").count() == 2


def test_regenerate_from_the_page_while_generating_shows_a_409_page(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor)

    response = visitor.post(f"/m/{created['message']['id']}/regenerate")

    assert response.status_code == 409
    assert "One at a time." in response.content.decode()
    assert Message.objects.filter(conversation_id=created["id"], role="assistant").count() == 1


def test_regenerating_someone_elses_answer_from_the_page_is_a_404_page(
    visitor: Client, make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "A question", "Output")
    before = counts()

    assert_not_found_page(make_visitor().post(f"/m/{created['message']['id']}/regenerate"))
    assert counts() == before


@pytest.mark.django_db(transaction=True)
def test_a_real_regeneration_keeps_both_finished_answers(
    visitor: Client, sim: str, samples: list[SamplePrompt], enqueued: list[str]
) -> None:
    created = post_json(visitor, "/api/v1/conversations", {"sample": "strawberry"}).json()
    services.run_generation(created["message"]["id"])
    new = regenerate(visitor, created["message"]["id"])
    services.run_generation(new["id"])

    answers = conversation_json(visitor, created["id"])["messages"][1:]
    assert [a["id"] for a in answers] == [created["message"]["id"], new["id"]]
    assert [a["status"] for a in answers] == ["done", "done"]
    assert all(a["sections"]["output"] for a in answers)
    assert "Answer 2 of 2" in page(visitor, f"/c/{created['id']}/")


def test_regenerating_an_earlier_answer_keeps_it_with_its_question(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "First question", "First output")
    second = follow_up(visitor, created["id"], "Second question")
    finish(second["id"], output="Second output")

    again = regenerate(visitor, created["message"]["id"])
    finish(again["id"], output="First output, again")

    messages = conversation_json(visitor, created["id"])["messages"]
    assert [m["id"] for m in messages[1:3]] == [created["message"]["id"], again["id"]]
    assert [(m["role"], m["prompt"]) for m in messages] == [
        ("user", "First question"),
        ("assistant", "First question"),
        ("assistant", "First question"),
        ("user", "Second question"),
        ("assistant", "Second question"),
    ]
    html = page(visitor, f"/c/{created['id']}/")
    assert html.index("First output, again") < html.index("Second question")
    later = follow_up(visitor, created["id"], "Third question")
    prompt, _ = model_prompt_for(later["id"])
    assert "First output, again" in prompt and "Second output" in prompt


# --- select -------------------------------------------------------------------------------------


def two_answers(client: Client) -> tuple[dict[str, Any], str, str]:
    """A conversation whose question has an old and a new finished answer."""
    created = answered(client, "A question", "Old output")
    new = regenerate(client, created["message"]["id"])
    finish(new["id"], output="New output")
    return created, created["message"]["id"], new["id"]


def test_select_switches_the_shown_answer(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created, old_id, new_id = two_answers(visitor)

    response = visitor.post(f"/api/v1/messages/{old_id}/select")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == old_id
    assert body["sections"]["output"] == "Old output"
    html = page(visitor, f"/c/{created['id']}/")
    assert "Old output" in html and "New output" not in html
    assert "Answer 1 of 2" in html
    assert f'action="/m/{new_id}/select"' in html

    visitor.post(f"/api/v1/messages/{new_id}/select")
    html = page(visitor, f"/c/{created['id']}/")
    assert "New output" in html and "Old output" not in html
    assert "Answer 2 of 2" in html


def test_a_follow_up_uses_the_newest_answer_by_default(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created, _, _ = two_answers(visitor)
    answer = follow_up(visitor, created["id"], "And then?")

    prompt, _ = model_prompt_for(answer["id"])

    assert "New output" in prompt
    assert "Old output" not in prompt


def test_a_follow_up_uses_the_selected_answers_output(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created, old_id, _ = two_answers(visitor)
    assert visitor.post(f"/api/v1/messages/{old_id}/select").status_code == 200
    answer = follow_up(visitor, created["id"], "And then?")

    prompt, _ = model_prompt_for(answer["id"])

    assert "Old output" in prompt
    assert "New output" not in prompt
    assert prompt.count("A question") == 1


def test_a_regeneration_shows_the_new_answer_even_after_an_earlier_selection(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created, old_id, _ = two_answers(visitor)
    visitor.post(f"/api/v1/messages/{old_id}/select")

    third = regenerate(visitor, old_id)
    finish(third["id"], output="Third output")

    html = page(visitor, f"/c/{created['id']}/")
    assert "Third output" in html and "Answer 3 of 3" in html


def test_the_conversation_api_reflects_the_selected_answer(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created, old_id, new_id = two_answers(visitor)

    def selected() -> dict[str, bool]:
        messages = conversation_json(visitor, created["id"])["messages"]
        return {m["id"]: m["selected"] for m in messages if m["role"] == "assistant"}

    assert selected() == {old_id: False, new_id: True}

    visitor.post(f"/api/v1/messages/{old_id}/select")

    assert selected() == {old_id: True, new_id: False}


def test_selecting_a_question_or_someone_elses_answer_is_not_found(
    visitor: Client, make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    created, old_id, _ = two_answers(visitor)
    question_id = conversation_json(visitor, created["id"])["messages"][0]["id"]

    assert_error(visitor.post(f"/api/v1/messages/{question_id}/select"), 404, "not_found")
    assert_error(make_visitor().post(f"/api/v1/messages/{old_id}/select"), 404, "not_found")
    assert_not_found_page(make_visitor().post(f"/m/{old_id}/select"))
    assert Message.objects.get(pk=question_id).selected_answer_id is None


def test_select_from_the_page_redirects_back(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created, old_id, _ = two_answers(visitor)

    response = visitor.post(f"/m/{old_id}/select")

    assert response.status_code == 302
    assert response["Location"] == f"/c/{created['id']}/"
    question = Message.objects.get(pk=Message.objects.get(pk=old_id).reply_to_id)
    assert question.selected_answer_id == old_id


# --- edit and resend ----------------------------------------------------------------------------


def test_edit_replaces_the_last_turn(visitor: Client, backend: str, enqueued: list[str]) -> None:
    created = answered(visitor, "First question", "First output")
    second = follow_up(visitor, created["id"], "Typo questoin")
    finish(second["id"], output="Typo output")

    response = post_json(
        visitor, f"/api/v1/conversations/{created['id']}/edit", {"prompt": "  Fixed question  "}
    )

    assert response.status_code == 201, response.content
    message = response.json()["message"]
    assert message["role"] == "assistant"
    assert message["status"] == "queued"
    assert message["prompt"] == "Fixed question"
    assert enqueued[-1] == message["id"]
    messages = conversation_json(visitor, created["id"])["messages"]
    assert [(m["role"], m["prompt"]) for m in messages] == [
        ("user", "First question"),
        ("assistant", "First question"),
        ("user", "Fixed question"),
        ("assistant", "Fixed question"),
    ]
    html = page(visitor, f"/c/{created['id']}/")
    assert "Typo questoin" not in html and "Typo output" not in html
    assert "Fixed question" in html
    shared = Client().get(f"/api/v1/shared/{token_of(created['share_url'])}").json()
    assert "Typo" not in json.dumps(shared)


def test_an_edited_away_question_is_not_sent_to_the_model(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "First question", "First output")
    second = follow_up(visitor, created["id"], "Typo questoin")
    finish(second["id"], output="Typo output")
    edited = post_json(
        visitor, f"/api/v1/conversations/{created['id']}/edit", {"prompt": "Fixed question"}
    ).json()["message"]

    prompt, _ = model_prompt_for(edited["id"])
    assert "Typo" not in prompt
    assert "First output" in prompt
    assert prompt.endswith(
        "Fixed question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )

    finish(edited["id"], output="Fixed output")
    later = follow_up(visitor, created["id"], "Third question")
    prompt, _ = model_prompt_for(later["id"])
    assert "Typo" not in prompt
    assert "Fixed question" in prompt and "Fixed output" in prompt


def test_edit_is_refused_while_the_last_answer_is_generating(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor, "Original")
    before = counts()
    path = f"/api/v1/conversations/{created['id']}/edit"

    assert_error(post_json(visitor, path, {"prompt": "Edited"}), 409, "already_generating")
    set_running(created["message"]["id"])
    assert_error(post_json(visitor, path, {"prompt": "Edited"}), 409, "already_generating")
    assert counts() == before
    assert not Message.objects.filter(superseded=True).exists()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"prompt": ""}, "empty_prompt"),
        ({"prompt": "   \n "}, "empty_prompt"),
        ({}, "invalid_params"),
        ({"prompt": None}, "invalid_params"),
        ({"prompt": 42}, "invalid_params"),
        ({"prompt": ["a"]}, "invalid_params"),
        ({"prompt": "nul\x00char"}, "invalid_params"),
        ({"prompt": "x" * 4001}, "prompt_too_long"),
    ],
    ids=["empty", "blank", "missing", "null", "number", "list", "nul", "too-long"],
)
def test_a_bad_edit_is_refused_and_changes_nothing(
    visitor: Client, backend: str, enqueued: list[str], body: dict[str, Any], code: str
) -> None:
    created = answered(visitor, "Original", "Output")
    before = counts()

    assert_error(post_json(visitor, f"/api/v1/conversations/{created['id']}/edit", body), 400, code)
    assert counts() == before
    assert not Message.objects.filter(superseded=True).exists()


@pytest.mark.parametrize(
    ("raw", "code"),
    [("{oops", "invalid_json"), ("[1]", "invalid_params"), ('"x"', "invalid_params")],
)
def test_a_malformed_edit_body_is_refused(
    visitor: Client, backend: str, enqueued: list[str], raw: str, code: str
) -> None:
    created = answered(visitor, "Original", "Output")
    response = visitor.post(
        f"/api/v1/conversations/{created['id']}/edit", data=raw, content_type="application/json"
    )
    assert_error(response, 400, code)


def test_editing_someone_elses_conversation_is_not_found(
    visitor: Client, make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Original", "Output")
    before = counts()

    response = post_json(
        make_visitor(), f"/api/v1/conversations/{created['id']}/edit", {"prompt": "Mine now"}
    )

    assert_error(response, 404, "not_found")
    assert_not_found_page(make_visitor().post(f"/c/{created['id']}/edit", {"prompt": "Mine"}))
    assert counts() == before


def test_edit_from_the_page_redirects_and_shows_the_new_question(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Original wording", "Output")
    html = page(visitor, f"/c/{created['id']}/")
    assert f'action="/c/{created["id"]}/edit"' in html

    response = visitor.post(f"/c/{created['id']}/edit", {"prompt": "Better wording"})

    assert response.status_code == 302
    assert response["Location"] == f"/c/{created['id']}/"
    html = page(visitor, f"/c/{created['id']}/")
    assert "Better wording" in html
    assert "<p>Original wording</p>" not in html


def test_the_page_offers_no_edit_while_the_answer_is_generating(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor, "Original")
    assert "/edit" not in page(visitor, f"/c/{created['id']}/")

    response = visitor.post(f"/c/{created['id']}/edit", {"prompt": "Edited"})

    assert response.status_code == 409
    assert "One at a time." in response.content.decode()


def test_an_empty_edit_from_the_page_shows_the_error(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Original", "Output")
    before = counts()

    response = visitor.post(f"/c/{created['id']}/edit", {"prompt": "  "})

    assert response.status_code == 400
    assert "Write a prompt first." in response.content.decode()
    assert counts() == before


def test_editing_the_only_question_leaves_no_trace_of_the_old_text(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "My password is hunter2", "Output")
    post_json(visitor, f"/api/v1/conversations/{created['id']}/edit", {"prompt": "Hello"})

    shared_html = page(Client(), created["share_url"])
    listed = visitor.get("/api/v1/conversations").json()

    assert "hunter2" not in shared_html
    assert "hunter2" not in json.dumps(listed)


# --- history ------------------------------------------------------------------------------------


def test_history_lists_the_visitors_conversations_newest_first(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    first = answered(visitor, "First conversation", "Output")
    second = answered(visitor, "Second conversation", "Output")

    response = visitor.get("/api/v1/conversations")

    assert response.status_code == 200
    listed = response.json()["conversations"]
    assert [c["id"] for c in listed] == [second["id"], first["id"]]
    for summary in listed:
        assert set(summary) >= SUMMARY_FIELDS
        assert isinstance(summary["created"], str) and isinstance(summary["updated"], str)
    assert listed[0]["title"] == "Second conversation"
    assert listed[0]["share_url"] == second["share_url"]


def test_a_follow_up_moves_a_conversation_to_the_top_of_the_history(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    first = answered(visitor, "First conversation", "Output")
    second = answered(visitor, "Second conversation", "Output")
    follow_up(visitor, first["id"], "More on the first")

    listed = visitor.get("/api/v1/conversations").json()["conversations"]

    assert [c["id"] for c in listed] == [first["id"], second["id"]]


def test_history_holds_only_the_visitors_own_conversations(
    visitor: Client, make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    mine = answered(visitor, "My conversation", "Output")
    other = make_visitor()
    theirs = answered(other, "Their conversation", "Output")

    assert [c["id"] for c in visitor.get("/api/v1/conversations").json()["conversations"]] == [
        mine["id"]
    ]
    assert [c["id"] for c in other.get("/api/v1/conversations").json()["conversations"]] == [
        theirs["id"]
    ]
    assert Client().get("/api/v1/conversations").json() == {"conversations": []}
    html = page(visitor, f"/c/{mine['id']}/")
    assert "Your conversations" in html
    assert "Their conversation" not in html and theirs["id"] not in html
    home = page(visitor, "/")
    assert "My conversation" in home and "Their conversation" not in home


def test_the_history_on_the_page_links_each_conversation(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    first = answered(visitor, "First conversation", "Output")
    second = answered(visitor, "Second conversation", "Output")

    html = page(visitor, f"/c/{first['id']}/")

    nav = html[html.index('class="history"') :]
    assert nav.index(f'href="/c/{second["id"]}/"') < nav.index(f'href="/c/{first["id"]}/"')
    assert '<li aria-current="page"><a href="/c/' + first["id"] in nav


def test_history_is_capped(visitor: Client) -> None:
    session = visitor.session.session_key
    start = timezone.now()
    Conversation.objects.bulk_create(
        Conversation(session_key=session, title=f"c{n}", updated=start + timedelta(seconds=n))
        for n in range(services.HISTORY_LIMIT + 5)
    )

    listed = visitor.get("/api/v1/conversations").json()["conversations"]

    assert len(listed) == services.HISTORY_LIMIT
    assert listed[0]["title"] == f"c{services.HISTORY_LIMIT + 4}"


def test_the_history_only_accepts_get_and_post(visitor: Client) -> None:
    assert_error(visitor.delete("/api/v1/conversations"), 405, "method_not_allowed")


# --- rename -------------------------------------------------------------------------------------


def test_rename_returns_the_summary_and_tidies_whitespace(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Original", "Output")

    response = patch_json(
        visitor, f"/api/v1/conversations/{created['id']}", {"title": "  My \n  title  "}
    )

    assert response.status_code == 200
    body = response.json()
    assert set(body) >= SUMMARY_FIELDS
    assert body["id"] == created["id"]
    assert body["title"] == "My title"
    assert body["share_url"] == created["share_url"]
    assert conversation_json(visitor, created["id"])["title"] == "My title"
    assert visitor.get("/api/v1/conversations").json()["conversations"][0]["title"] == "My title"


def test_a_title_of_exactly_200_characters_is_accepted(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Original", "Output")
    response = patch_json(visitor, f"/api/v1/conversations/{created['id']}", {"title": "t" * 200})
    assert response.status_code == 200
    assert Conversation.objects.get(pk=created["id"]).title == "t" * 200


@pytest.mark.parametrize(
    "body",
    [
        {"title": ""},
        {"title": "   \t\n"},
        {"title": "t" * 201},
        {"title": 5},
        {"title": None},
        {"title": ["a"]},
        {"title": {"a": 1}},
        {"title": True},
        {"title": "nul\x00"},
        {},
    ],
    ids=["empty", "blank", "too-long", "int", "null", "list", "object", "bool", "nul", "missing"],
)
def test_a_bad_title_is_refused_and_changes_nothing(
    visitor: Client, backend: str, enqueued: list[str], body: dict[str, Any]
) -> None:
    created = answered(visitor, "Original", "Output")

    response = patch_json(visitor, f"/api/v1/conversations/{created['id']}", body)

    assert_error(response, 400, "invalid_params")
    assert Conversation.objects.get(pk=created["id"]).title == "Original"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{oops", "invalid_json"),
        ("[1]", "invalid_params"),
        ('{"title": "\\ud800"}', "invalid_params"),
    ],
    ids=["malformed", "array", "lone-surrogate"],
)
def test_a_malformed_rename_body_is_refused(
    visitor: Client, backend: str, enqueued: list[str], raw: str, code: str
) -> None:
    created = answered(visitor, "Original", "Output")
    response = visitor.patch(
        f"/api/v1/conversations/{created['id']}", data=raw, content_type="application/json"
    )
    assert_error(response, 400, code)
    assert Conversation.objects.get(pk=created["id"]).title == "Original"


def test_a_huge_rename_body_is_a_400_not_a_500(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Original", "Output")
    response = patch_json(
        visitor, f"/api/v1/conversations/{created['id']}", {"title": "t" * 3_000_000}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"invalid_params", "prompt_too_long"}
    assert Conversation.objects.get(pk=created["id"]).title == "Original"


def test_renaming_someone_elses_conversation_is_not_found(
    visitor: Client, make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Original", "Output")

    assert_error(
        patch_json(make_visitor(), f"/api/v1/conversations/{created['id']}", {"title": "Mine"}),
        404,
        "not_found",
    )
    assert_not_found_page(make_visitor().post(f"/c/{created['id']}/rename", {"title": "Mine"}))
    assert_error(
        patch_json(visitor, "/api/v1/conversations/nope", {"title": "x"}), 404, "not_found"
    )
    assert Conversation.objects.get(pk=created["id"]).title == "Original"


def test_rename_needs_a_csrf_token(visitor: Client, backend: str, enqueued: list[str]) -> None:
    created = answered(visitor, "Original", "Output")
    del visitor.defaults["HTTP_X_CSRFTOKEN"]

    response = patch_json(visitor, f"/api/v1/conversations/{created['id']}", {"title": "New"})

    assert_error(response, 403, "csrf")
    assert Conversation.objects.get(pk=created["id"]).title == "Original"


def test_rename_from_the_page_redirects_and_the_title_is_escaped(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Original", "Output")
    hostile = '<script>alert(1)</script> "quoted" & <b>bold</b>'

    response = visitor.post(f"/c/{created['id']}/rename", {"title": hostile})

    assert response.status_code == 302
    assert response["Location"] == f"/c/{created['id']}/"
    assert Conversation.objects.get(pk=created["id"]).title == hostile
    html = page(visitor, f"/c/{created['id']}/")
    assert "<script>alert(1)</script>" not in html and "<b>bold</b>" not in html
    assert f"<title>{escape(hostile)} · Reflection Playground</title>" in html
    assert f'<h1 class="conversation-title">{escape(hostile)}</h1>' in html
    assert f'value="{escape(hostile)}"' in html
    assert html.count(escape(hostile)) >= 4  # title, heading, the rename field, the history
    shared = page(Client(), created["share_url"])
    assert "<script>alert(1)</script>" not in shared
    assert f'<meta property="og:title" content="{escape(hostile)}">' in shared


@pytest.mark.parametrize("title", ["", "   ", "t" * 201], ids=["empty", "blank", "too-long"])
def test_a_bad_title_from_the_page_shows_the_error(
    visitor: Client, backend: str, enqueued: list[str], title: str
) -> None:
    created = answered(visitor, "Original", "Output")

    response = visitor.post(f"/c/{created['id']}/rename", {"title": title})

    assert response.status_code == 400
    assert "That did not work." in response.content.decode()
    assert Conversation.objects.get(pk=created["id"]).title == "Original"


def test_rename_from_the_page_only_accepts_post(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Original", "Output")
    assert visitor.get(f"/c/{created['id']}/rename").status_code == 405
    assert Conversation.objects.get(pk=created["id"]).title == "Original"


# --- delete -------------------------------------------------------------------------------------


def test_delete_removes_the_conversation_and_its_share_link(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Doomed", "Output")
    token = token_of(created["share_url"])
    kept = answered(visitor, "Kept", "Output")

    response = visitor.delete(f"/api/v1/conversations/{created['id']}")

    assert response.status_code == 200
    assert response.json() == {"deleted": created["id"]}
    assert not Conversation.objects.filter(pk=created["id"]).exists()
    assert not Message.objects.filter(conversation_id=created["id"]).exists()
    assert_error(visitor.get(f"/api/v1/conversations/{created['id']}"), 404, "not_found")
    assert_error(Client().get(f"/api/v1/shared/{token}"), 404, "not_found")
    assert_not_found_page(Client().get(f"/s/{token}/"))
    assert_not_found_page(visitor.get(f"/c/{created['id']}/"))
    listed = visitor.get("/api/v1/conversations").json()["conversations"]
    assert [c["id"] for c in listed] == [kept["id"]]
    assert_error(visitor.delete(f"/api/v1/conversations/{created['id']}"), 404, "not_found")


def test_deleting_cancels_a_running_answer(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor)
    message_id = created["message"]["id"]
    set_running(message_id)

    assert visitor.delete(f"/api/v1/conversations/{created['id']}").status_code == 200

    assert redis_clients.redis_client().get(cancel_flags.cancel_key(message_id)) == b"1"
    assert not Message.objects.filter(pk=message_id).exists()
    # Nothing of that visitor is generating any more.
    assert ask(visitor, "A new question")["message"]["status"] == "queued"


def test_deleting_takes_a_waiting_answer_out_of_line(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    for _ in range(2):
        ask(make_visitor())
    waiting_visitor, later_visitor = make_visitor(), make_visitor()
    waiting = ask(waiting_visitor)
    later = ask(later_visitor)
    assert (waiting["message"]["position"], later["message"]["position"]) == (1, 2)

    waiting_visitor.delete(f"/api/v1/conversations/{waiting['id']}")

    assert (
        redis_clients.redis_client().get(cancel_flags.cancel_key(waiting["message"]["id"])) == b"1"
    )
    assert later_visitor.get(f"/api/v1/messages/{later['message']['id']}").json()["position"] == 1
    assert waiting["message"]["id"] not in enqueued


def test_deleting_someone_elses_conversation_is_not_found(
    visitor: Client, make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor)
    message_id = created["message"]["id"]

    assert_error(make_visitor().delete(f"/api/v1/conversations/{created['id']}"), 404, "not_found")
    assert_not_found_page(make_visitor().post(f"/c/{created['id']}/delete"))
    assert Conversation.objects.filter(pk=created["id"]).exists()
    assert Message.objects.get(pk=message_id).status == "queued"
    assert not redis_clients.redis_client().exists(cancel_flags.cancel_key(message_id))


def test_delete_needs_a_csrf_token(visitor: Client, backend: str, enqueued: list[str]) -> None:
    created = answered(visitor, "Original", "Output")
    del visitor.defaults["HTTP_X_CSRFTOKEN"]

    assert_error(visitor.delete(f"/api/v1/conversations/{created['id']}"), 403, "csrf")
    assert Conversation.objects.filter(pk=created["id"]).exists()


def test_delete_from_the_page_goes_home(visitor: Client, backend: str, enqueued: list[str]) -> None:
    created = answered(visitor, "Doomed conversation", "Output")

    response = visitor.post(f"/c/{created['id']}/delete")

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert not Conversation.objects.filter(pk=created["id"]).exists()
    assert "Doomed conversation" not in page(visitor, "/")


def test_cancelling_a_dispatched_answer_hands_its_slot_to_the_next_in_line(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    first_visitor = make_visitor()
    first = ask(first_visitor)
    ask(make_visitor())
    waiting = ask(make_visitor())
    assert waiting["message"]["id"] not in enqueued

    first_visitor.post(f"/api/v1/messages/{first['message']['id']}/cancel")
    services.run_generation(first["message"]["id"])  # the task arrives after the cancel

    assert waiting["message"]["id"] in enqueued
    assert slots.slots_in_use(backend) == 2


def test_deleting_a_dispatched_answer_hands_its_slot_to_the_next_in_line(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    first_visitor = make_visitor()
    first = ask(first_visitor)
    ask(make_visitor())
    waiting = ask(make_visitor())
    assert waiting["message"]["id"] not in enqueued

    first_visitor.delete(f"/api/v1/conversations/{first['id']}")
    services.run_generation(first["message"]["id"])  # the task arrives after the delete

    assert waiting["message"]["id"] in enqueued
    assert slots.slots_in_use(backend) == 2


@pytest.mark.django_db(transaction=True)
def test_deleting_during_a_real_generation_stops_it_and_frees_the_slot(
    visitor: Client, settings: Any, samples: list[SamplePrompt], enqueued: list[str]
) -> None:
    with running_simulator(tokens_per_second=50) as url:
        settings.TGI_URLS = [url]
        created = post_json(visitor, "/api/v1/conversations", {"sample": "agatha"}).json()
        message_id = created["message"]["id"]
        worker = threading.Thread(target=services.run_generation, args=(message_id,))
        worker.start()
        deadline = time.monotonic() + 10
        while len(delta_log.read_delta_log(message_id)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert delta_log.read_delta_log(message_id), "the generation never started"

        response = visitor.delete(f"/api/v1/conversations/{created['id']}")
        worker.join(5)
        in_use = slots.slots_in_use(url)

    assert response.status_code == 200
    assert not worker.is_alive()
    assert in_use == 0
    assert not Conversation.objects.filter(pk=created["id"]).exists()
    assert not Message.objects.filter(pk=message_id).exists()
    assert ask(visitor, "Next question")["message"]["status"] == "queued"


@pytest.mark.django_db(transaction=True)
def test_a_live_viewer_hears_the_cancel_when_the_owner_deletes(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor)
    message_id = created["message"]["id"]
    set_running(message_id)
    token = token_of(created["share_url"])

    async def scenario() -> list[dict[str, Any]]:
        socket = stream(message_id, f"share={token}")
        connected, _ = await socket.connect()
        assert connected
        first = json.loads((await socket.receive_output(3))["text"])
        response = await asyncio.to_thread(visitor.delete, f"/api/v1/conversations/{created['id']}")
        assert response.status_code == 200
        return [first, *await receive_until_closed(socket)]

    events = asyncio.run(scenario())

    assert events[0]["type"] == "started"
    assert events[-2:] == [{"type": "cancelled"}, {"closed": 1000}]


# --- share links --------------------------------------------------------------------------------


def test_revoking_the_link_makes_the_old_token_a_404_everywhere(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Shared question", "Output")
    token = token_of(created["share_url"])
    assert Client().get(f"/api/v1/shared/{token}").status_code == 200

    response = visitor.delete(f"/api/v1/conversations/{created['id']}/share")

    assert response.status_code == 200
    assert response.json() == {"share_url": None}
    assert_error(Client().get(f"/api/v1/shared/{token}"), 404, "not_found")
    assert_not_found_page(Client().get(f"/s/{token}/"))
    assert conversation_json(visitor, created["id"])["share_url"] is None
    assert visitor.get("/api/v1/conversations").json()["conversations"][0]["share_url"] is None
    html = page(visitor, f"/c/{created['id']}/")
    assert "The share link is revoked." in html
    assert token not in html
    # Revoking twice is harmless.
    assert visitor.delete(f"/api/v1/conversations/{created['id']}/share").status_code == 200


def test_a_new_link_works_and_replaces_the_old_one(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Shared question", "Output")
    old_token = token_of(created["share_url"])

    response = visitor.post(f"/api/v1/conversations/{created['id']}/share")

    assert response.status_code == 200
    new_url = response.json()["share_url"]
    new_token = token_of(new_url)
    assert new_token != old_token and new_token != created["id"]
    assert conversation_json(visitor, created["id"])["share_url"] == new_url
    assert_error(Client().get(f"/api/v1/shared/{old_token}"), 404, "not_found")
    assert_not_found_page(Client().get(f"/s/{old_token}/"))
    shared = Client().get(f"/api/v1/shared/{new_token}")
    assert shared.status_code == 200
    assert shared.json()["messages"][0]["prompt"] == "Shared question"
    assert "Shared question" in page(Client(), new_url)


def test_a_new_link_after_revoking_works(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Shared question", "Output")
    visitor.delete(f"/api/v1/conversations/{created['id']}/share")

    new_url = visitor.post(f"/api/v1/conversations/{created['id']}/share").json()["share_url"]

    assert new_url != created["share_url"]
    assert Client().get(f"/api/v1/shared/{token_of(new_url)}").status_code == 200


def test_share_tokens_carry_at_least_128_bits_and_never_repeat(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Shared question", "Output")
    seen = {token_of(created["share_url"])}
    for _ in range(20):
        url = visitor.post(f"/api/v1/conversations/{created['id']}/share").json()["share_url"]
        token = token_of(url)
        # URL-safe base64 carries 6 bits a character: 22 characters hold at least 128 bits.
        assert TOKEN.fullmatch(token) and len(token) >= 22
        assert token not in seen
        seen.add(token)


def test_share_link_changes_need_the_owner_and_a_csrf_token(
    visitor: Client, make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Shared question", "Output")
    path = f"/api/v1/conversations/{created['id']}/share"

    assert_error(make_visitor().post(path), 404, "not_found")
    assert_error(make_visitor().delete(path), 404, "not_found")
    assert_not_found_page(make_visitor().post(f"/c/{created['id']}/share/new"))
    assert_not_found_page(make_visitor().post(f"/c/{created['id']}/share/revoke"))
    del visitor.defaults["HTTP_X_CSRFTOKEN"]
    assert_error(visitor.delete(path), 403, "csrf")
    assert_error(visitor.post(path), 403, "csrf")
    assert Conversation.objects.get(pk=created["id"]).share_token == token_of(created["share_url"])


def test_share_links_from_the_page(visitor: Client, backend: str, enqueued: list[str]) -> None:
    created = answered(visitor, "Shared question", "Output")
    old_token = token_of(created["share_url"])

    response = visitor.post(f"/c/{created['id']}/share/revoke")
    assert response.status_code == 302
    assert response["Location"] == f"/c/{created['id']}/"
    assert Conversation.objects.get(pk=created["id"]).share_token is None
    html = page(visitor, f"/c/{created['id']}/")
    assert f'action="/c/{created["id"]}/share/new"' in html

    response = visitor.post(f"/c/{created['id']}/share/new")
    assert response.status_code == 302
    new_token = Conversation.objects.get(pk=created["id"]).share_token
    assert new_token and new_token != old_token
    html = page(visitor, f"/c/{created['id']}/")
    assert f"/s/{new_token}/" in html
    assert f'action="/c/{created["id"]}/share/revoke"' in html
    assert "Shared question" in page(Client(), f"/s/{new_token}/")


@pytest.mark.django_db(transaction=True)
def test_the_stream_refuses_a_revoked_token_and_accepts_the_new_one(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Shared question", "Output")
    message_id = created["message"]["id"]
    old_token = token_of(created["share_url"])
    new_url = visitor.post(f"/api/v1/conversations/{created['id']}/share").json()["share_url"]

    async def scenario(query: str) -> list[dict[str, Any]]:
        socket = stream(message_id, query)
        await socket.connect()
        return await receive_until_closed(socket)

    refused = asyncio.run(scenario(f"share={old_token}"))
    assert refused == [
        {"type": "error", "code": "not_found", "message": "No such message."},
        {"closed": 4404},
    ]
    accepted = asyncio.run(scenario(f"share={token_of(new_url)}"))
    assert [e.get("type") for e in accepted][-2:] == ["done", None]
    assert any(e.get("text") == "Output" for e in accepted)

    visitor.delete(f"/api/v1/conversations/{created['id']}/share")
    assert asyncio.run(scenario(f"share={token_of(new_url)}"))[-1] == {"closed": 4404}


@pytest.mark.django_db(transaction=True)
def test_share_viewers_watch_a_running_answer_live(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor, "Live question")
    message_id = created["message"]["id"]
    set_running(message_id)
    token = token_of(created["share_url"])
    shared = Client().get(f"/api/v1/shared/{token}").json()
    assert shared["messages"][1]["status"] == "running"
    assert shared["messages"][1]["stream_url"] == f"/ws/messages/{message_id}/?share={token}"
    delta = {"type": "delta", "seq": 1, "section": "output", "text": "Live text"}

    async def scenario() -> list[dict[str, Any]]:
        socket = stream(message_id, f"share={token}")
        await socket.connect()
        first = json.loads((await socket.receive_output(3))["text"])
        redis_clients.redis_client().rpush(delta_log.delta_log_key(message_id), json.dumps(delta))
        await asyncio.to_thread(channel_groups.publish, message_id, delta)
        second = json.loads((await socket.receive_output(3))["text"])
        await socket.disconnect()
        return [first, second]

    events = asyncio.run(scenario())

    assert events[0]["type"] == "started"
    assert events[1] == delta
    assert "Live text" in page(Client(), f"/s/{token}/")


def viewer_attempts(conversation_id: str, answer_id: str) -> list[tuple[str, str, Any]]:
    return [
        ("patch", f"/api/v1/conversations/{conversation_id}", {"title": "Hijacked"}),
        ("delete", f"/api/v1/conversations/{conversation_id}", None),
        ("get", f"/api/v1/conversations/{conversation_id}", None),
        ("post", f"/api/v1/conversations/{conversation_id}/messages", {"prompt": "Hijack"}),
        ("post", f"/api/v1/conversations/{conversation_id}/edit", {"prompt": "Hijack"}),
        ("post", f"/api/v1/conversations/{conversation_id}/share", None),
        ("delete", f"/api/v1/conversations/{conversation_id}/share", None),
        ("get", f"/api/v1/conversations/{conversation_id}/export?format=json", None),
        ("get", f"/api/v1/messages/{answer_id}", None),
        ("post", f"/api/v1/messages/{answer_id}/regenerate", None),
        ("post", f"/api/v1/messages/{answer_id}/select", None),
        ("post", f"/api/v1/messages/{answer_id}/cancel", None),
    ]


def test_a_share_viewer_can_change_nothing_through_the_api(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor, "Shared question")
    answer_id = created["message"]["id"]
    token = token_of(created["share_url"])
    viewer = Client()  # no CSRF checks: a refusal here is about ownership, not the token
    viewer.get(f"/s/{token}/")
    before = counts()

    for method, path, body in viewer_attempts(created["id"], answer_id):
        kwargs = {"data": json.dumps(body), "content_type": "application/json"} if body else {}
        assert_error(getattr(viewer, method)(path, **kwargs), 404, "not_found")

    conversation = Conversation.objects.get(pk=created["id"])
    assert (conversation.title, conversation.share_token) == ("Shared question", token)
    assert Message.objects.get(pk=answer_id).status == "queued"
    assert not redis_clients.redis_client().exists(cancel_flags.cancel_key(answer_id))
    assert counts() == before
    assert enqueued == [answer_id]


def test_a_share_viewer_can_change_nothing_through_the_pages(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Shared question", "Output")
    answer_id = created["message"]["id"]
    viewer = Client()
    viewer.get(created["share_url"])
    before = counts()

    for path, form in [
        (f"/c/{created['id']}/rename", {"title": "Hijacked"}),
        (f"/c/{created['id']}/delete", {}),
        (f"/c/{created['id']}/edit", {"prompt": "Hijack"}),
        (f"/c/{created['id']}/send", {"prompt": "Hijack"}),
        (f"/c/{created['id']}/share/new", {}),
        (f"/c/{created['id']}/share/revoke", {}),
        (f"/m/{answer_id}/regenerate", {}),
        (f"/m/{answer_id}/select", {}),
        (f"/m/{answer_id}/cancel", {}),
    ]:
        assert_not_found_page(viewer.post(path, form))
    for path in (f"/c/{created['id']}/", f"/c/{created['id']}/export.md"):
        assert_not_found_page(viewer.get(path))

    conversation = Conversation.objects.get(pk=created["id"])
    assert (conversation.title, conversation.share_token) == (
        "Shared question",
        token_of(created["share_url"]),
    )
    assert counts() == before


def test_the_shared_view_never_shows_the_owners_other_conversations(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    other = answered(visitor, "Private other conversation", "Private other output")
    created = answered(visitor, "Shared question", "Shared output")
    token = token_of(created["share_url"])

    body = Client().get(f"/api/v1/shared/{token}").json()
    html = page(Client(), f"/s/{token}/")
    owner_view = page(visitor, f"/s/{token}/")

    text = json.dumps(body)
    assert [m["prompt"] for m in body["messages"]] == ["Shared question", "Shared question"]
    for secret in ("Private other", other["id"], other["message"]["id"], created["id"]):
        assert secret not in text
        assert secret not in html
        assert secret not in owner_view
    assert token_of(other["share_url"]) not in text + html + owner_view
    assert "Your conversations" not in html and "Your conversations" not in owner_view
    for action in ("/rename", "/delete", "/edit", "/regenerate", "/select", "/cancel", "/share"):
        assert action not in html


def test_the_shared_page_shows_alternatives_read_only(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Shared question", "Old output")
    new = regenerate(visitor, created["message"]["id"])
    finish(new["id"], output="New output")

    html = page(Client(), created["share_url"])

    assert "New output" in html and "Old output" not in html
    assert "Answer 2 of 2" in html
    assert "/select" not in html and "/regenerate" not in html


# --- link previews ------------------------------------------------------------------------------


def meta(html: str, attribute: str, name: str) -> str:
    match = re.search(rf'<meta {attribute}="{re.escape(name)}" content="([^"]*)">', html)
    assert match, f"no {name} meta tag"
    return match.group(1)


def test_the_shared_page_has_link_preview_tags_and_noindex(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "How many r's are in strawberry?", "There are three r's.")

    html = page(Client(), created["share_url"])

    assert '<meta name="robots" content="noindex">' in html
    assert meta(html, "property", "og:title") == escape("How many r's are in strawberry?")
    assert meta(html, "property", "og:description") == escape("There are three r's.")
    assert meta(html, "name", "twitter:card") == "summary"
    assert meta(html, "name", "twitter:title") == escape("How many r's are in strawberry?")
    assert meta(html, "name", "twitter:description") == escape("There are three r's.")
    assert meta(html, "property", "og:type") == "article"


def test_link_previews_escape_markup_in_prompts_and_answers(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    prompt = 'Is "5" > 3? <script>alert(1)</script>'
    output = "<img src=x onerror=alert(2)> yes & \"no\" 'maybe'"
    created = answered(visitor, prompt, output)

    html = page(Client(), created["share_url"])

    assert "<script>alert(1)</script>" not in html
    assert "<img src=x" not in html
    assert meta(html, "property", "og:title") == escape(prompt)
    assert meta(html, "property", "og:description") == escape(output)
    assert meta(html, "name", "twitter:description") == escape(output)


def test_the_preview_description_is_the_shown_answer_whitespace_tidied_and_short(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Long one", "word\n\n  " * 100)

    description = meta(page(Client(), created["share_url"]), "property", "og:description")

    assert "\n" not in description and "  " not in description
    assert len(description) <= 200
    assert description.endswith("…")


def test_the_preview_has_a_description_before_any_answer(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor, "Still thinking")

    html = page(Client(), created["share_url"])

    assert meta(html, "property", "og:title") == "Still thinking"
    assert meta(html, "property", "og:description")


def test_the_owners_page_is_noindex_too(visitor: Client, backend: str, enqueued: list[str]) -> None:
    created = answered(visitor, "Private", "Output")
    html = page(visitor, f"/c/{created['id']}/")
    assert '<meta name="robots" content="noindex">' in html


@pytest.mark.parametrize("token", ["notARealToken", "a" * 48, "x"])
def test_a_bad_share_token_is_a_404_page_and_json(db: None, token: str) -> None:
    assert_not_found_page(Client().get(f"/s/{token}/"))
    assert_error(Client().get(f"/api/v1/shared/{token}"), 404, "not_found")


# --- retention ----------------------------------------------------------------------------------


def aged(client: Client, prompt: str, days: float) -> dict[str, Any]:
    created = answered(client, prompt, "Output")
    Conversation.objects.filter(pk=created["id"]).update(
        updated=timezone.now() - timedelta(days=days)
    )
    return created


def test_purge_deletes_only_conversations_past_the_retention(
    visitor: Client, backend: str, enqueued: list[str], settings: Any
) -> None:
    settings.CONVERSATION_RETENTION_DAYS = 30
    old = aged(visitor, "Old", 31)
    recent = aged(visitor, "Recent", 29)
    fresh = answered(visitor, "Fresh", "Output")

    assert services.purge_expired() == 1

    remaining = set(Conversation.objects.values_list("pk", flat=True))
    assert remaining == {recent["id"], fresh["id"]}
    assert not Message.objects.filter(conversation_id=old["id"]).exists()
    assert_not_found_page(Client().get(old["share_url"]))
    assert services.purge_expired() == 0


def test_a_retention_of_zero_keeps_every_conversation(
    visitor: Client, backend: str, enqueued: list[str], settings: Any
) -> None:
    settings.CONVERSATION_RETENTION_DAYS = 0
    aged(visitor, "Ancient", 3650)
    aged(visitor, "Old", 31)

    assert services.purge_expired() == 0
    assert Conversation.objects.count() == 2


def test_the_retention_follows_the_setting(
    visitor: Client, backend: str, enqueued: list[str], settings: Any
) -> None:
    aged(visitor, "Two days", 2)
    settings.CONVERSATION_RETENTION_DAYS = 3
    assert services.purge_expired() == 0
    settings.CONVERSATION_RETENTION_DAYS = 1
    assert services.purge_expired() == 1
    assert Conversation.objects.count() == 0


def test_the_purge_command_deletes_expired_conversations(
    visitor: Client, backend: str, enqueued: list[str], settings: Any
) -> None:
    settings.CONVERSATION_RETENTION_DAYS = 7
    aged(visitor, "Old", 8)
    recent = aged(visitor, "Recent", 1)
    out = StringIO()

    call_command("purge_conversations", stdout=out)

    assert "deleted 1 conversations" in out.getvalue()
    assert list(Conversation.objects.values_list("pk", flat=True)) == [recent["id"]]


def test_the_purge_runs_periodically(
    visitor: Client, backend: str, enqueued: list[str], settings: Any
) -> None:
    from playground import tasks
    from playground.celery import app

    tasks_scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert "playground.tasks.purge_expired" in tasks_scheduled
    settings.CONVERSATION_RETENTION_DAYS = 7
    aged(visitor, "Old", 8)
    assert tasks.purge_expired() == 1
    assert Conversation.objects.count() == 0


def test_purging_a_conversation_with_a_running_answer_cancels_it(
    visitor: Client, backend: str, enqueued: list[str], settings: Any
) -> None:
    settings.CONVERSATION_RETENTION_DAYS = 1
    created = ask(visitor)
    set_running(created["message"]["id"])
    Conversation.objects.filter(pk=created["id"]).update(updated=timezone.now() - timedelta(days=2))

    assert services.purge_expired() == 1
    assert (
        redis_clients.redis_client().get(cancel_flags.cancel_key(created["message"]["id"])) == b"1"
    )
