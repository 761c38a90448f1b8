"""Share links (issue 4): made, replaced and revoked; what a share viewer sees and can never
change, live streams included; the shared page's link previews."""

from __future__ import annotations

import asyncio
import io
import json
import re
from typing import Any

import pytest
from django.test import Client
from django.utils.html import escape
from PIL import Image

from playground import presenters
from playground.models import Conversation, Message, SamplePrompt
from playground.preview_image import PreviewCard
from playground.realtime import cancel_flags, channel_groups, delta_log, redis_clients
from tests.conversations.answers import finish
from tests.conversations.helpers import (
    TOKEN,
    VisitorFactory,
    answered,
    ask,
    assert_error,
    assert_not_found_page,
    conversation_json,
    counts,
    page,
    post_json,
    receive_until_closed,
    regenerate,
    set_running,
    stream,
    token_of,
)

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
    assert meta(html, "name", "twitter:card") == "summary_large_image"
    image = f"http://testserver{created['share_url']}preview.png"
    assert meta(html, "property", "og:image") == image
    assert meta(html, "name", "twitter:image") == image
    assert meta(html, "property", "og:image:width") == "1200"
    assert meta(html, "property", "og:image:height") == "630"
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


# --- the link preview's picture -----------------------------------------------------------------


def preview_png(client: Client, share_url: str) -> Image.Image:
    response = client.get(f"{share_url}preview.png")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["Cache-Control"] == "max-age=300"
    return Image.open(io.BytesIO(response.content))


def test_a_shared_conversation_has_a_preview_picture(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "How many r's are in strawberry?", "There are three r's.")

    picture = preview_png(Client(), created["share_url"])

    assert (picture.format, picture.size) == ("PNG", (1200, 630))
    # The question is drawn: dark ink in the question's band.
    band = picture.convert("L").crop((80, 170, 1120, 240))
    assert band.getextrema()[0] < 80


def test_the_preview_picture_changes_with_the_answer(
    visitor: Client, backend: str, enqueued: list[str], samples: list[SamplePrompt]
) -> None:
    created = post_json(visitor, "/api/v1/conversations", {"sample": "strawberry"}).json()
    share_url = created["share_url"]
    live = preview_png(Client(), share_url).tobytes()
    finish(created["message"]["id"], thinking="So 2 r's.", reflections=("No.",), output="3 r's.")

    done = preview_png(Client(), share_url)

    assert done.tobytes() != live
    # The verdict's pill is green for a right answer.
    red, green, blue = done.convert("RGB").getpixel((100, 516))
    assert green > red and green > blue


@pytest.mark.parametrize("revoke", [True, False], ids=["revoked", "unknown"])
def test_a_preview_picture_needs_a_live_share_link(
    visitor: Client, backend: str, enqueued: list[str], revoke: bool
) -> None:
    created = answered(visitor, "Private now", "Output")
    url = f"{created['share_url']}preview.png" if revoke else "/s/notARealToken/preview.png"
    if revoke:
        assert visitor.delete(f"/api/v1/conversations/{created['id']}/share").status_code == 200

    response = Client().get(url)

    assert response.status_code == 404
    assert b"Private now" not in response.content


@pytest.mark.parametrize(
    ("finished", "verdict", "tone"),
    [
        (
            {"output": "There are 3 r's.", "thinking": "2 r's.", "reflections": ("Recount.",)},
            "Correct: 3 · a reflection changed the outcome",
            "correct",
        ),
        ({"output": "There are 3 r's."}, "Correct: 3", "correct"),
        ({"output": "There are 2 r's."}, "Not right (expected 3)", "incorrect"),
        (None, "Being answered live", "live"),
        ({"output": "", "status": "cancelled"}, "Not answered", "neutral"),
    ],
    ids=["reflection-fixed-it", "correct", "incorrect", "live", "stopped"],
)
def test_the_preview_card_says_how_the_first_question_was_answered(
    visitor: Client,
    backend: str,
    enqueued: list[str],
    samples: list[SamplePrompt],
    finished: dict[str, Any] | None,
    verdict: str,
    tone: str,
) -> None:
    created = post_json(visitor, "/api/v1/conversations", {"sample": "strawberry"}).json()
    if finished is not None:
        finish(created["message"]["id"], **finished)
    conversation = Conversation.objects.get(pk=created["id"])

    card = presenters.preview_card(conversation, presenters.turns(conversation))

    assert card == PreviewCard(created["message"]["prompt"], verdict, tone)


def test_the_preview_card_of_a_free_question_gives_the_answers_facts(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "  Tell me\nsomething  ", "Something.")
    conversation = Conversation.objects.get(pk=created["id"])

    card = presenters.preview_card(conversation, presenters.turns(conversation))

    assert (card.question, card.tone) == ("Tell me something", "neutral")
    assert card.verdict == "2.0 s · 20.0 tokens/s"  # no model named by this test's answer
