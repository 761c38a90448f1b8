"""A visitor's history of conversations and renaming them (issue 4), through the API and
the pages."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from playground import services
from playground.models import Conversation
from tests.conversations.helpers import (
    SUMMARY_FIELDS,
    VisitorFactory,
    answered,
    assert_error,
    assert_not_found_page,
    conversation_json,
    follow_up,
    page,
    patch_json,
)

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


def test_the_history_is_capped_at_its_limit_newest_first(visitor: Client) -> None:
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
