"""What the pages give a visitor without JavaScript: the question box first, the follow-up
composer docked, the title said once, one-click sharing, "ask this yourself" on a shared page,
and link previews in plain words; and the forms that ask, marked for the page's script to send
once and to say when a question is on its way. (The browser side, following, place-keeping and
the question on its way, is in tests/integration/test_browser_visitor.py.)"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from playground import controls, services
from playground.models import Conversation, Message
from playground.presenters import plain_text
from tests.conversations.answers import finish
from tests.conversations.helpers import (
    VisitorFactory,
    answered,
    ask,
    page,
    post_json,
    set_running,
)


def position(html: str, marker: str) -> int:
    assert marker in html, marker
    return html.index(marker)


def meta_description(html: str) -> str:
    match = re.search(r'<meta property="og:description" content="([^"]*)">', html)
    assert match, "no og:description"
    return match.group(1)


# --- the line's state, named -------------------------------------------------------------------


def test_a_draining_line_is_named_on_the_home_page_without_a_frozen_estimate(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    for _ in range(3):
        ask(make_visitor())
    controls.set_draining(True)
    # As the operators' drain does (ops/actions.py): the line is told at once, and this
    # process's recent snapshot of the line, which pages reuse for a quarter second, with it.
    services.publish_queue_positions()

    html = page(Client(), "/")

    assert 'data-state="draining"' in html
    assert "The line is on hold" in html
    assert "1 waiting" in html
    assert "Wait about" not in html and "No wait" not in html


def test_a_full_line_is_named_on_the_home_page_before_anyone_asks(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str], settings: Any
) -> None:
    for _ in range(3):
        ask(make_visitor())
    settings.QUEUE_MAX_WAITING = 1

    html = page(Client(), "/status")

    assert "The line is full" in html
    assert "1 question is waiting, and new ones are turned away" in html
    assert "Wait about" not in html


def test_a_paused_line_is_named_with_what_still_happens(db: None, backend: str) -> None:
    controls.set_paused("Back at noon.")

    html = page(Client(), "/")

    assert 'data-state="paused"' in html
    assert "answers already in line are still written" in html


# --- something to read while waiting ----------------------------------------------------------


def ask_sample(client: Client, slug: str) -> dict[str, Any]:
    response = post_json(client, "/api/v1/conversations", {"sample": slug})
    assert response.status_code == 201, response.content
    return response.json()


def test_a_visitor_waiting_for_a_sample_reads_how_the_model_answered_it_last_time(
    make_visitor: VisitorFactory, backend: str, samples: Any, enqueued: list[str]
) -> None:
    earlier = ask_sample(make_visitor(), "strawberry")
    finish(earlier["message"]["id"], output="There are **3** of them in *strawberry*.")
    for _ in range(2):  # both slots taken
        ask_sample(make_visitor(), "sheep")
    visitor = make_visitor()
    waiting = ask_sample(visitor, "strawberry")
    assert waiting["message"]["position"] > 0

    html = page(visitor, f"/c/{waiting['id']}/")

    assert "While you wait: how the model answered this question last time" in html
    assert "There are 3 of them in strawberry." in html  # in plain words, marks removed


def test_nothing_to_read_meanwhile_for_a_free_question_or_an_answer_that_started(
    make_visitor: VisitorFactory, backend: str, samples: Any, enqueued: list[str]
) -> None:
    earlier = ask_sample(make_visitor(), "strawberry")
    finish(earlier["message"]["id"], output="There are 3 r's.")
    running = make_visitor()
    started = ask_sample(running, "strawberry")
    ask_sample(make_visitor(), "sheep")
    visitor = make_visitor()
    free = ask(visitor, "How many r's are in strawberry, roughly?")
    assert free["message"]["position"] > 0

    assert "While you wait" not in page(visitor, f"/c/{free['id']}/")
    assert "While you wait" not in page(running, f"/c/{started['id']}/")


# --- the facts under an answer ----------------------------------------------------------------


def test_a_finished_answer_shows_one_line_of_facts_with_the_details_a_click_away(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor)
    finish(created["message"]["id"], output="9.9", model_id="acme/reasoner-70b")

    html = page(visitor, f"/c/{created['id']}/")

    facts = re.search(r'<summary data-role="facts">([^<]*)</summary>', html)
    assert facts is not None
    assert facts.group(1) == "reasoner-70b · 2.0 s · 20.0 tokens/s"
    details = html[html.index('class="answer-facts"') : html.index("</details>", facts.end())]
    assert 'data-role="stats"' in details and 'data-role="provenance"' in details
    assert "40 tokens" in details


def test_an_answer_still_waiting_has_no_facts_line(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor)

    html = page(visitor, f"/c/{created['id']}/")

    assert re.search(r'<details class="answer-facts" data-role="facts-box"\s+hidden>', html)


# --- where the composer is --------------------------------------------------------------------


def test_the_home_page_puts_the_question_box_before_the_samples(db: None, samples: Any) -> None:
    html = page(Client(), "/")

    composer = position(html, 'action="/c/new"')
    assert composer < position(html, 'id="samples-title"')
    assert composer < position(html, 'name="sample" value="strawberry"')
    assert "Ask anything" in html


def test_every_question_form_is_sent_once_and_says_when_its_question_is_on_its_way(
    visitor: Client, make_visitor: VisitorFactory, backend: str, enqueued: list[str], samples: Any
) -> None:
    home = page(visitor, "/")
    created = answered(visitor, "First question", "First answer")
    conversation = page(visitor, f"/c/{created['id']}/")
    shared = page(make_visitor(), created["share_url"])

    def forms(html: str, kind: str) -> list[str]:
        return re.findall(rf'<form method="post" [^>]*class="{kind}"[^>]*>', html)

    boxes = forms(home, "composer") + forms(conversation, "composer")
    assert len(boxes) == 3, "the home page's box, the follow-up box and the edit box"
    for form in boxes:
        # A second Enter while the first question is on its way is dropped, not queued.
        assert 'hx-sync="this:drop"' in form
        assert "hx-disabled-elt=\"find button[type='submit']\"" in form
    cards = forms(home, "sample-card")
    assert len(cards) == len(samples)
    for card in cards:
        # One sample on its way at a time, whichever card is clicked next.
        assert 'hx-sync="closest .sample-grid:drop"' in card
    for form in forms(shared, "inline-form ask-yourself") + [
        form for form in forms(conversation, "inline-form") if "data-regenerate-for" in form
    ]:
        assert 'hx-sync="this:drop"' in form
        assert 'hx-disabled-elt="find button"' in form
    note = "Many people are asking at once. Your question is on its way: keep this page open."
    # Each form that asks says both; Regenerate only that it is sending (a button in a row).
    for html, asking, regenerating in (
        (home, len(samples) + 1, 0),
        (conversation, 2, 1),
        (shared, 1, 0),
    ):
        assert html.count('<span class="sending-label">Sending…</span>') == asking + regenerating
        assert html.count(note) == asking


def test_the_conversation_page_docks_the_follow_up_composer_after_the_turns(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "First question", "First answer")

    html = page(visitor, f"/c/{created['id']}/")

    docked = position(html, 'class="composer-section composer-docked"')
    assert position(html, "First answer") < docked
    assert position(html, f'action="/c/{created["id"]}/send"') > docked


# --- the title, said once ---------------------------------------------------------------------


def test_a_title_that_is_the_first_question_is_not_shown_twice(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "How many r's are in strawberry?", "Three.")

    html = page(visitor, f"/c/{created['id']}/")

    assert re.search(r'<h1 class="conversation-title visually-hidden">How many r', html)


def test_a_renamed_title_is_shown(visitor: Client, backend: str, enqueued: list[str]) -> None:
    created = answered(visitor, "How many r's are in strawberry?", "Three.")
    Conversation.objects.filter(pk=created["id"]).update(title="Counting letters")

    html = page(visitor, f"/c/{created['id']}/")

    assert '<h1 class="conversation-title">Counting letters</h1>' in html


# --- sharing ----------------------------------------------------------------------------------


def test_the_share_link_is_in_the_header_with_a_copy_button(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Share me", "Shared.")

    html = page(visitor, f"/c/{created['id']}/")

    start = position(html, 'class="conversation-tools"')
    tools = html[start : html.index("</header>", start)]
    link = re.search(r'<input id="share-link" type="text" readonly value="([^"]+)">', tools)
    assert link and link.group(1) == f"http://testserver{created['share_url']}"
    # The button needs the script that copies; without it the field is there to select.
    assert 'class="primary copy-link needs-js" data-copy="share-link"' in tools


def test_a_shared_free_question_can_be_asked_again_by_its_reader(
    visitor: Client, make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Is 0.1 + 0.2 equal to 0.3?", "Not in floating point.")
    reader = make_visitor()

    html = page(reader, created["share_url"])
    form = html[position(html, 'class="inline-form ask-yourself"') :]
    assert 'name="prompt" value="Is 0.1 + 0.2 equal to 0.3?"' in form[: form.index("</form>")]

    response = reader.post("/c/new", {"prompt": "Is 0.1 + 0.2 equal to 0.3?"})

    assert response.status_code == 302
    own = Conversation.objects.exclude(pk=created["id"]).get()
    assert response["Location"] == f"/c/{own.pk}/"
    assert own.session_key == reader.session.session_key != visitor.session.session_key
    question = own.messages.get(role=Message.Role.USER)
    assert question.prompt == "Is 0.1 + 0.2 equal to 0.3?"


def test_a_shared_sample_is_asked_again_as_the_sample(
    visitor: Client, samples: Any, backend: str, enqueued: list[str]
) -> None:
    response = post_json(visitor, "/api/v1/conversations", {"sample": "strawberry"})
    assert response.status_code == 201, response.content
    created = response.json()

    html = page(Client(), created["share_url"])

    form = html[position(html, 'class="inline-form ask-yourself"') :]
    assert '<input type="hidden" name="sample" value="strawberry">' in form[: form.index("</form>")]


def test_the_owner_is_not_offered_to_ask_their_own_question_again(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Mine", "Output")
    assert "Ask this yourself" not in page(visitor, f"/c/{created['id']}/")


# --- link previews ----------------------------------------------------------------------------


def test_the_preview_is_the_final_answer_in_plain_words(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(
        visitor, "How many r's?", "There are **3** r's in *strawberry*: `s-t-r-a-w-b-e-r-r-y`."
    )

    description = meta_description(page(Client(), created["share_url"]))

    assert description == "There are 3 r&#x27;s in strawberry: s-t-r-a-w-b-e-r-r-y."


def test_a_preview_fetched_mid_answer_says_it_is_live_without_half_a_thought(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor, "Which is larger?")
    set_running(created["message"]["id"])
    Message.objects.filter(pk=created["message"]["id"]).update(
        sections={"thinking": "Let me compare 9.11 and", "reflections": [], "output": ""}
    )

    description = meta_description(page(Client(), created["share_url"]))

    assert description == "A reasoning model is answering this live: watch it think."
    assert "9.11" not in description


@pytest.mark.parametrize(
    ("markdown", "words"),
    [
        ("**Bold** and __also bold__", "Bold and also bold"),
        ("# Heading\n\n- one\n- two\n1. first", "Heading one two first"),
        ("> quoted *italic* ~~gone~~", "quoted italic gone"),
        ("See [the docs](https://example.com) ![a cat](cat.png)", "See the docs a cat"),
        ("```python\nprint(1)\n```", "python print(1)"),
        ("Area $\\pi r^2$, or $$E = mc^2$$", "Area \\pi r^2, or E = mc^2"),
        ("It costs $5 and 2 * 3 = 6", "It costs $5 and 2 * 3 = 6"),
    ],
)
def test_plain_text_keeps_the_words_and_drops_the_marks(markdown: str, words: str) -> None:
    assert plain_text(markdown) == words
