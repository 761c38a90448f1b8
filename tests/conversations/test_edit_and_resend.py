"""Edit and resend (issue 4): the last question replaced, what the model is sent afterwards,
and the refusals, through the API and the pages."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from playground.models import Message
from tests.conversations.answers import finish
from tests.conversations.helpers import (
    VisitorFactory,
    answered,
    ask,
    assert_error,
    assert_not_found_page,
    conversation_json,
    counts,
    follow_up,
    model_prompt_for,
    page,
    post_json,
    set_running,
    token_of,
)

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
    new_answer = Message.objects.filter(role="assistant").latest("created")
    assert new_answer.pk != created["message"]["id"]
    assert response["Location"] == f"/c/{created['id']}/#answer-{new_answer.pk}", "opens at it"
    html = page(visitor, f"/c/{created['id']}/")
    assert f'id="answer-{new_answer.pk}"' in html
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
