"""Editing a question: the last one or any earlier one becomes a new version of its turn, the
old version stays switchable with the turns that followed it, what the model is sent on each
branch, and the refusals, through the API and the pages."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from playground.models import Message, SamplePrompt
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


def test_edit_shows_a_new_version_of_the_last_turn(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
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


# --- branches: editing any question, switching versions --------------------------------------


def edit(client: Client, conversation_id: str, prompt: str, question: str | None = None) -> Any:
    body = {"prompt": prompt} if question is None else {"prompt": prompt, "message": question}
    return post_json(client, f"/api/v1/conversations/{conversation_id}/edit", body)


def shown(client: Client, conversation_id: str) -> list[tuple[str, str]]:
    messages = conversation_json(client, conversation_id)["messages"]
    return [(m["role"], m["prompt"]) for m in messages]


def question_ids(client: Client, conversation_id: str) -> list[str]:
    messages = conversation_json(client, conversation_id)["messages"]
    return [m["id"] for m in messages if m["role"] == "user"]


def three_turns(client: Client) -> tuple[str, list[str]]:
    """A conversation of three answered turns; its id and its questions' ids."""
    created = answered(client, "One", "Output one")
    for prompt in ("Two", "Three"):
        answer = follow_up(client, created["id"], prompt)
        finish(answer["id"], output=f"Output {prompt.lower()}")
    return created["id"], question_ids(client, created["id"])


def test_editing_an_earlier_question_starts_a_branch_and_keeps_the_old_one(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    conversation_id, (one, two, three) = three_turns(visitor)

    response = edit(visitor, conversation_id, "Two, better", question=two)

    assert response.status_code == 201, response.content
    new_answer = response.json()["message"]
    assert new_answer["prompt"] == "Two, better" and new_answer["status"] == "queued"
    assert shown(visitor, conversation_id) == [
        ("user", "One"),
        ("assistant", "One"),
        ("user", "Two, better"),
        ("assistant", "Two, better"),
    ]
    questions = [
        m for m in conversation_json(visitor, conversation_id)["messages"] if m["role"] == "user"
    ]
    edited = questions[1]["id"]
    assert questions[0]["versions"] == [one]
    assert questions[1]["versions"] == [two, edited], "oldest first, the new one last"

    finish(new_answer["id"], output="Output two, better")
    switched = post_json(visitor, f"/api/v1/messages/{two}/select", {})

    assert switched.status_code == 200, switched.content
    assert shown(visitor, conversation_id) == [
        ("user", "One"),
        ("assistant", "One"),
        ("user", "Two"),
        ("assistant", "Two"),
        ("user", "Three"),
        ("assistant", "Three"),
    ], "the old version comes back with the turns that followed it"
    assert question_ids(visitor, conversation_id) == [one, two, three]

    post_json(visitor, f"/api/v1/messages/{edited}/select", {})
    assert question_ids(visitor, conversation_id) == [one, edited]


def test_each_branch_sends_the_model_only_its_own_turns(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    conversation_id, (one, two, three) = three_turns(visitor)
    edited = edit(visitor, conversation_id, "Two, better", question=two).json()["message"]
    finish(edited["id"], output="Output two, better")

    on_new_branch = follow_up(visitor, conversation_id, "Four")
    prompt, _ = model_prompt_for(on_new_branch["id"])
    assert "Output one" in prompt and "Output two, better" in prompt
    assert "Output two<" not in prompt and "Three" not in prompt
    finish(on_new_branch["id"], output="Output four")

    post_json(visitor, f"/api/v1/messages/{two}/select", {})
    on_old_branch = follow_up(visitor, conversation_id, "Five")
    prompt, _ = model_prompt_for(on_old_branch["id"])
    assert "Output two<" in prompt and "Output three" in prompt
    assert "better" not in prompt and "Four" not in prompt
    assert Message.objects.get(pk=on_old_branch["reply_to"]).parent_id == three


def test_switching_to_a_version_deep_in_another_branch_shows_the_path_to_it(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    conversation_id, (one, two, three) = three_turns(visitor)
    edited = edit(visitor, conversation_id, "One, again", question=one).json()["message"]
    finish(edited["id"], output="Output one, again")
    assert len(question_ids(visitor, conversation_id)) == 1

    post_json(visitor, f"/api/v1/messages/{three}/select", {})

    assert question_ids(visitor, conversation_id) == [one, two, three]


def test_editing_the_first_question_renames_a_conversation_named_after_it(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    conversation_id, (one, _, _) = three_turns(visitor)

    edit(visitor, conversation_id, "A new first question", question=one)

    assert conversation_json(visitor, conversation_id)["title"] == "A new first question"


def test_a_sample_sent_again_word_for_word_stays_that_sample(
    visitor: Client, backend: str, enqueued: list[str], samples: list[SamplePrompt]
) -> None:
    created = post_json(visitor, "/api/v1/conversations", {"sample": "strawberry"}).json()
    finish(created["message"]["id"], output="There are 3 r's.")
    prompt = created["message"]["prompt"]

    same = edit(visitor, created["id"], prompt).json()["message"]
    different = edit(visitor, created["id"], prompt + " Explain.")

    assert same["sample"] == "strawberry"
    assert different.status_code == 409, "one answer at a time"
    finish(same["id"], output="3")
    assert edit(visitor, created["id"], prompt + " Explain.").json()["message"]["sample"] is None


@pytest.mark.parametrize("which", ["unknown", "hidden", "another-conversation", "an-answer"])
def test_editing_a_question_that_is_not_shown_here_is_not_found(
    visitor: Client, backend: str, enqueued: list[str], which: str
) -> None:
    conversation_id, (one, two, three) = three_turns(visitor)
    edit(visitor, conversation_id, "Two, better", question=two)
    finish(Message.objects.filter(status="queued").get().pk, output="Better")
    elsewhere = answered(visitor, "Elsewhere", "Output")
    target = {
        "unknown": "no-such-question",
        "hidden": three,
        "another-conversation": question_ids(visitor, elsewhere["id"])[0],
        "an-answer": elsewhere["message"]["id"],
    }[which]
    before = counts()

    assert_error(edit(visitor, conversation_id, "Anything", question=target), 404, "not_found")
    assert counts() == before


def test_switching_versions_is_refused_while_an_answer_is_being_written(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    conversation_id, (one, two, three) = three_turns(visitor)
    edited = edit(visitor, conversation_id, "Two, better", question=two).json()["message"]

    response = post_json(visitor, f"/api/v1/messages/{two}/select", {})

    assert_error(response, 409, "already_generating")
    assert question_ids(visitor, conversation_id)[1] == edited["reply_to"]


def test_regenerating_an_answer_on_a_hidden_branch_is_not_found(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    conversation_id, (one, two, three) = three_turns(visitor)
    old_answer = Message.objects.get(reply_to=three)
    edited = edit(visitor, conversation_id, "Two, better", question=two).json()["message"]
    finish(edited["id"], output="Better")
    before = counts()

    response = post_json(visitor, f"/api/v1/messages/{old_answer.pk}/regenerate", {})

    assert_error(response, 404, "not_found")
    assert counts() == before


def test_the_page_edits_any_question_and_switches_between_versions(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    conversation_id, (one, two, three) = three_turns(visitor)
    html = page(visitor, f"/c/{conversation_id}/")
    for question in (one, two, three):
        assert f'<input type="hidden" name="message" value="{question}">' in html
    assert "Version 1 of" not in html

    response = visitor.post(f"/c/{conversation_id}/edit", {"prompt": "Two, better", "message": two})

    assert response.status_code == 302
    new_answer = Message.objects.filter(role="assistant").latest("created")
    assert response["Location"] == f"/c/{conversation_id}/#answer-{new_answer.pk}"
    finish(new_answer.pk, output="Better")
    html = page(visitor, f"/c/{conversation_id}/")
    assert "Version 2 of 2" in html
    assert f'action="/m/{two}/select"' in html, "a button back to the first version"
    assert "<p>Three</p>" not in html

    response = visitor.post(f"/m/{two}/select")

    assert response.status_code == 302
    assert response["Location"] == f"/c/{conversation_id}/#question-{two}"
    html = page(visitor, f"/c/{conversation_id}/")
    assert "Version 1 of 2" in html and "<p>Three</p>" in html
    assert f'id="question-{two}"' in html
    assert f'action="/m/{new_answer.reply_to_id}/select"' in html


def test_a_shared_page_shows_the_chosen_branch_without_switches(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    conversation_id, (one, two, three) = three_turns(visitor)
    edited = edit(visitor, conversation_id, "Two, better", question=two).json()["message"]
    finish(edited["id"], output="Better")
    share_url = conversation_json(visitor, conversation_id)["share_url"]

    html = page(Client(), share_url)

    assert "Two, better" in html and "<p>Three</p>" not in html
    assert "/select" not in html and 'name="message"' not in html
    assert "Version 2 of 2" in html
