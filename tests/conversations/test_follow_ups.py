"""Follow-ups (issue 4): what goes back to the model from the turns before, within its
context budget, and what the page says when old turns did not fit."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from inference.prompt import DEFAULT_SYSTEM_PROMPT, Turn, build_prompt, estimate_tokens
from playground import rotation, services
from playground.models import Message, SamplePrompt
from tests.conversations.answers import finish
from tests.conversations.helpers import (
    CONTEXT_NOTE,
    answered,
    ask,
    conversation_json,
    follow_up,
    model_prompt_for,
    page,
    post_json,
)

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
