"""Regenerate and select (issue 4): a new answer beside the old one, choosing which one is
shown and carried into follow-ups, through the API and the pages."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from playground import services
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
    regenerate,
    set_running,
)

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
    answers = Message.objects.filter(conversation_id=created["id"], role="assistant")
    assert answers.count() == 2
    new_answer = answers.latest("created")
    assert response["Location"] == f"/c/{created['id']}/#answer-{new_answer.pk}", "opens at it"


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


def test_selecting_someone_elses_answer_or_question_is_not_found(
    visitor: Client, make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    created, old_id, _ = two_answers(visitor)
    question_id = conversation_json(visitor, created["id"])["messages"][0]["id"]

    for message_id in (old_id, question_id):
        assert_error(make_visitor().post(f"/api/v1/messages/{message_id}/select"), 404, "not_found")
        assert_not_found_page(make_visitor().post(f"/m/{message_id}/select"))
    assert Message.objects.get(pk=question_id).selected_answer_id is None


def test_selecting_the_question_already_shown_changes_nothing(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created, _, _ = two_answers(visitor)
    before = conversation_json(visitor, created["id"])
    question_id = before["messages"][0]["id"]

    response = visitor.post(f"/api/v1/messages/{question_id}/select")

    assert response.status_code == 200
    assert response.json()["id"] == question_id
    assert conversation_json(visitor, created["id"]) == before


def test_select_from_the_page_redirects_back(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created, old_id, _ = two_answers(visitor)

    response = visitor.post(f"/m/{old_id}/select")

    assert response.status_code == 302
    assert response["Location"] == f"/c/{created['id']}/#answer-{old_id}", "opens at the choice"
    question = Message.objects.get(pk=Message.objects.get(pk=old_id).reply_to_id)
    assert question.selected_answer_id == old_id
