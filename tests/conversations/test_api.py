"""The JSON API of DESIGN 4.2, endpoint by endpoint, refusal by refusal.

No model backend runs here: the dispatcher leases slots in the test Redis and the `enqueued`
fixture captures what would be handed to Celery. Each visitor gets its own session and, unless a
test says otherwise, its own address, so per-IP limits only bite where a test wants them to.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.http import HttpResponse
from django.test import Client
from django.utils import timezone

from playground import rotation
from playground.env import Rate
from playground.models import Conversation, Message, SamplePrompt
from playground.realtime import delta_log, redis_clients

VisitorFactory = Callable[..., Client]

MESSAGE_FIELDS = {
    "id",
    "role",
    "status",
    "position",
    "eta_seconds",
    "stream_url",
    "prompt",
    "sections",
    "stats",
    "error",
}
STATS_FIELDS = {
    "queue_seconds",
    "ttft_seconds",
    "duration_seconds",
    "tokens",
    "tokens_per_second",
    "finish_reason",
}
STATUSES = {"queued", "running", "done", "error", "cancelled"}
OPAQUE = re.compile(r"[A-Za-z0-9_-]+")


def post_json(client: Client, path: str, data: Any) -> HttpResponse:
    return client.post(path, data=json.dumps(data), content_type="application/json")


def post_raw(client: Client, path: str, body: bytes | str) -> HttpResponse:
    return client.post(path, data=body, content_type="application/json")


def ask(client: Client, prompt: str = "Which is larger, 9.11 or 9.9?") -> dict[str, Any]:
    response = post_json(client, "/api/v1/conversations", {"prompt": prompt})
    assert response.status_code == 201, response.content
    return response.json()


def counts() -> tuple[int, int]:
    return Conversation.objects.count(), Message.objects.count()


def assert_error(response: HttpResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def assert_message_shape(message: dict[str, Any]) -> None:
    assert set(message) >= MESSAGE_FIELDS
    assert isinstance(message["id"], str) and OPAQUE.fullmatch(message["id"])
    assert message["role"] in {"user", "assistant"}
    assert message["status"] in STATUSES
    position = message["position"]
    assert position is None or (isinstance(position, int) and not isinstance(position, bool))
    eta = message["eta_seconds"]
    assert eta is None or (isinstance(eta, int | float) and not isinstance(eta, bool))
    assert isinstance(message["stream_url"], str)
    assert message["stream_url"].startswith(f"/ws/messages/{message['id']}/")
    assert isinstance(message["prompt"], str)
    sections = message["sections"]
    assert set(sections) >= {"thinking", "reflections", "output", "text"}
    assert isinstance(sections["thinking"], str)
    assert isinstance(sections["reflections"], list)
    assert all(isinstance(item, str) for item in sections["reflections"])
    assert isinstance(sections["output"], str)
    assert isinstance(sections["text"], str)
    stats = message["stats"]
    assert stats is None or set(stats) >= STATS_FIELDS
    error = message["error"]
    assert error is None or (
        set(error) >= {"code", "message"}
        and isinstance(error["code"], str)
        and isinstance(error["message"], str)
    )


def set_status(message_id: str, status: str, **changes: Any) -> None:
    now = timezone.now()
    if status == "running":
        changes.setdefault("started_at", now)
    if status in {"done", "error", "cancelled"}:
        changes.setdefault("finished_at", now)
    Message.objects.filter(pk=message_id).update(status=status, **changes)


# --- samples and status -----------------------------------------------------------------------


def test_samples_lists_slug_title_and_prompt_in_position_order(
    visitor: Client, samples: list[SamplePrompt]
) -> None:
    response = visitor.get("/api/v1/samples")
    assert response.status_code == 200
    body = response.json()
    expected = sorted(samples, key=lambda s: (s.position, s.slug))
    assert body == [{"slug": s.slug, "title": s.title, "prompt": s.prompt} for s in expected]


def test_samples_leave_out_disabled_ones(visitor: Client, samples: list[SamplePrompt]) -> None:
    SamplePrompt.objects.filter(pk=samples[0].pk).update(enabled=False)
    slugs = [item["slug"] for item in visitor.get("/api/v1/samples").json()]
    assert samples[0].slug not in slugs
    assert len(slugs) == len(samples) - 1


def test_status_of_an_idle_playground(visitor: Client, backend: str) -> None:
    response = visitor.get("/api/v1/status")
    assert response.status_code == 200
    assert response.json() == {
        "accepting": True,
        "state": "open",
        "queue": {"waiting": 0, "running": 0, "capacity": 2, "eta_seconds": 0.0},
    }


def test_status_counts_running_and_waiting_visitors(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    for _ in range(3):
        ask(make_visitor())
    body = make_visitor().get("/api/v1/status").json()
    assert body["accepting"] is True
    queue = body["queue"]
    assert queue["capacity"] == 2
    assert queue["running"] == 2
    assert queue["waiting"] == 1
    assert isinstance(queue["eta_seconds"], int | float)
    assert queue["eta_seconds"] > 0
    assert len(enqueued) == 2


def test_status_is_not_accepting_without_a_backend(visitor: Client, settings: Any) -> None:
    settings.TGI_URLS = []
    body = visitor.get("/api/v1/status").json()
    assert body["accepting"] is False
    assert body["state"] == "unavailable"
    assert body["queue"]["capacity"] == 0


def test_status_is_not_accepting_when_the_line_is_full(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str], settings: Any
) -> None:
    for _ in range(3):
        ask(make_visitor())
    settings.QUEUE_MAX_WAITING = 1
    body = make_visitor().get("/api/v1/status").json()
    assert body["accepting"] is False
    assert body["state"] == "full"
    assert body["queue"]["waiting"] == 1


def test_status_capacity_leaves_out_a_backend_marked_down(
    visitor: Client, backend: str, settings: Any
) -> None:
    settings.TGI_URLS = [backend, "http://other.test:8080"]
    assert visitor.get("/api/v1/status").json()["queue"]["capacity"] == 4
    rotation.mark_down("http://other.test:8080", "test")
    assert visitor.get("/api/v1/status").json()["queue"]["capacity"] == 2


# --- creating a conversation ------------------------------------------------------------------


def test_a_prompt_creates_a_conversation_with_a_queued_answer(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    response = post_json(visitor, "/api/v1/conversations", {"prompt": "  Is 9.11 > 9.9?  "})
    assert response.status_code == 201
    body = response.json()
    assert {"id", "share_url", "message"} <= set(body)
    assert OPAQUE.fullmatch(body["id"])
    conversation = Conversation.objects.get(pk=body["id"])
    assert body["share_url"] == f"/s/{conversation.share_token}/"
    message = body["message"]
    assert_message_shape(message)
    assert message["role"] == "assistant"
    assert message["status"] == "queued"
    assert message["position"] == 0  # it already holds a backend slot
    assert message["eta_seconds"] == 0
    assert message["stream_url"] == f"/ws/messages/{message['id']}/"
    assert message["prompt"] == "Is 9.11 > 9.9?"
    assert message["sections"] == {"thinking": "", "reflections": [], "output": "", "text": ""}
    assert message["stats"] is None
    assert message["error"] is None
    assert enqueued == [message["id"]]
    stored = Message.objects.get(pk=message["id"])
    assert stored.conversation_id == body["id"]
    assert stored.dispatched_at is not None
    assert stored.backend == backend


def test_a_sample_creates_a_conversation_asking_its_prompt(
    visitor: Client, backend: str, enqueued: list[str], samples: list[SamplePrompt]
) -> None:
    sample = samples[1]
    response = post_json(visitor, "/api/v1/conversations", {"sample": sample.slug})
    assert response.status_code == 201
    message = response.json()["message"]
    assert_message_shape(message)
    assert message["prompt"] == sample.prompt
    assert message["sample"] == sample.slug
    assert enqueued == [message["id"]]


def test_an_empty_sample_next_to_a_prompt_counts_as_no_sample(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    response = post_json(visitor, "/api/v1/conversations", {"prompt": "Hello?", "sample": ""})
    assert response.status_code == 201
    assert response.json()["message"]["prompt"] == "Hello?"


def test_a_prompt_of_exactly_the_maximum_length_is_accepted(
    visitor: Client, backend: str, enqueued: list[str], settings: Any
) -> None:
    settings.PROMPT_MAX_CHARS = 10
    response = post_json(visitor, "/api/v1/conversations", {"prompt": "x" * 10})
    assert response.status_code == 201


def test_a_third_visitor_is_queued_without_enqueuing_while_both_slots_are_taken(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    first = ask(make_visitor())["message"]
    second = ask(make_visitor())["message"]
    third = ask(make_visitor())["message"]
    assert enqueued == [first["id"], second["id"]]
    assert_message_shape(third)
    assert third["status"] == "queued"
    assert third["position"] == 1
    assert third["eta_seconds"] > 0
    assert third["id"] not in enqueued
    assert Message.objects.get(pk=third["id"]).dispatched_at is None


def test_the_fourth_visitor_is_second_in_line(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    for _ in range(3):
        ask(make_visitor())
    fourth = ask(make_visitor())["message"]
    assert fourth["position"] == 2
    assert fourth["eta_seconds"] > 0
    assert Message.objects.filter(status="queued", dispatched_at__isnull=True).count() == 2
    assert len(enqueued) == 2


# --- refusals when creating ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"prompt": ""}, 400, "empty_prompt"),
        ({"prompt": "   \n\t  "}, 400, "empty_prompt"),
        ({}, 400, "empty_prompt"),
        ({"prompt": None}, 400, "empty_prompt"),
        ({"prompt": 42}, 400, "invalid_params"),
        ({"prompt": 4.2}, 400, "invalid_params"),
        ({"prompt": True}, 400, "invalid_params"),
        ({"prompt": ["a", "list"]}, 400, "invalid_params"),
        ({"prompt": {"an": "object"}}, 400, "invalid_params"),
        ({"sample": "no-such-sample"}, 400, "unknown_sample"),
        ({"sample": 7}, 400, "invalid_params"),
        ({"sample": ["strawberry"]}, 400, "invalid_params"),
        ({"prompt": "Hi", "sample": "strawberry"}, 400, "invalid_params"),
        ({"prompt": "   ", "sample": "strawberry"}, 400, "invalid_params"),
    ],
    ids=[
        "empty",
        "whitespace",
        "missing",
        "null",
        "number",
        "float",
        "boolean",
        "list",
        "object",
        "unknown-sample",
        "sample-number",
        "sample-list",
        "prompt-and-sample",
        "blank-prompt-and-sample",
    ],
)
def test_a_bad_conversation_body_is_refused_and_changes_nothing(
    visitor: Client,
    backend: str,
    enqueued: list[str],
    samples: list[SamplePrompt],
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    before = counts()
    assert_error(post_json(visitor, "/api/v1/conversations", body), status, code)
    assert counts() == before
    assert enqueued == []


def test_an_empty_body_is_refused_as_an_empty_prompt(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    assert_error(post_raw(visitor, "/api/v1/conversations", b""), 400, "empty_prompt")
    assert counts() == (0, 0)
    assert enqueued == []


def test_a_disabled_sample_is_refused_as_unknown(
    visitor: Client, backend: str, enqueued: list[str], samples: list[SamplePrompt]
) -> None:
    SamplePrompt.objects.filter(pk=samples[0].pk).update(enabled=False)
    response = post_json(visitor, "/api/v1/conversations", {"sample": samples[0].slug})
    assert_error(response, 400, "unknown_sample")
    assert counts() == (0, 0)


def test_a_prompt_over_the_maximum_length_is_rejected(
    visitor: Client, backend: str, enqueued: list[str], settings: Any
) -> None:
    settings.PROMPT_MAX_CHARS = 10
    error = assert_error(
        post_json(visitor, "/api/v1/conversations", {"prompt": "x" * 11}), 400, "prompt_too_long"
    )
    assert "10" in error["message"]
    assert counts() == (0, 0)
    assert enqueued == []


def test_a_huge_body_is_rejected_without_a_500(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    body = b'{"prompt": "' + b"a" * (5 * 1024 * 1024) + b'"}'
    response = post_raw(visitor, "/api/v1/conversations", body)
    assert_error(response, 400, "prompt_too_long")
    assert counts() == (0, 0)
    assert enqueued == []


@pytest.mark.parametrize(
    "body",
    [b"{", b"{'prompt': 'single quotes'}", b'{"prompt": "x",}', b"\xff\xfe\xfa", b"prompt=hi"],
    ids=["truncated", "single-quotes", "trailing-comma", "not-utf8", "form-encoded"],
)
def test_a_malformed_json_body_is_rejected(
    visitor: Client, backend: str, enqueued: list[str], body: bytes
) -> None:
    assert_error(post_raw(visitor, "/api/v1/conversations", body), 400, "invalid_json")
    assert counts() == (0, 0)
    assert enqueued == []


@pytest.mark.parametrize("body", ['["a prompt"]', "42", '"a prompt"', "null", "true"], ids=str)
def test_a_json_body_that_is_not_an_object_is_rejected(
    visitor: Client, backend: str, enqueued: list[str], body: str
) -> None:
    assert_error(post_raw(visitor, "/api/v1/conversations", body), 400, "invalid_params")
    assert counts() == (0, 0)
    assert enqueued == []


def test_deeply_nested_json_is_rejected_without_a_500(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    visitor.raise_request_exception = False
    body = '{"prompt": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = post_raw(visitor, "/api/v1/conversations", body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"invalid_json", "invalid_params"}
    assert counts() == (0, 0)


@pytest.mark.parametrize("field", ["prompt", "sample"])
def test_a_lone_surrogate_is_refused_without_a_500(
    visitor: Client, backend: str, enqueued: list[str], samples: list[SamplePrompt], field: str
) -> None:
    visitor.raise_request_exception = False
    response = post_raw(visitor, "/api/v1/conversations", f'{{"{field}": "broken \\ud800 text"}}')
    expected = "invalid_params" if field == "prompt" else "unknown_sample"
    assert_error(response, 400, expected)
    assert counts() == (0, 0)


def test_a_prompt_with_a_nul_character_is_refused(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    response = post_raw(visitor, "/api/v1/conversations", '{"prompt": "before \\u0000 after"}')
    assert_error(response, 400, "invalid_params")
    assert counts() == (0, 0)


def test_a_post_without_a_csrf_token_is_refused(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    client = make_visitor(csrf=False)
    response = post_json(client, "/api/v1/conversations", {"prompt": "Hi"})
    assert_error(response, 403, "csrf")
    assert counts() == (0, 0)
    assert enqueued == []


def test_a_post_with_a_wrong_csrf_token_is_refused(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    client = make_visitor(csrf=False)
    client.defaults["HTTP_X_CSRFTOKEN"] = "x" * 32
    assert_error(post_json(client, "/api/v1/conversations", {"prompt": "Hi"}), 403, "csrf")
    assert counts() == (0, 0)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("put", "/api/v1/conversations", "GET, POST"),
        ("post", "/api/v1/conversations/abc", "GET, PATCH, DELETE"),
        ("get", "/api/v1/messages/abc/regenerate", "POST"),
        ("get", "/api/v1/messages/abc/cancel", "POST"),
        ("get", "/api/v1/conversations/abc/messages", "POST"),
        ("post", "/api/v1/samples", "GET"),
        ("delete", "/api/v1/status", "GET"),
        ("post", "/api/v1/shared/abc", "GET"),
    ],
)
def test_a_wrong_method_gets_a_json_405(
    visitor: Client, backend: str, method: str, path: str, allowed: str
) -> None:
    response = getattr(visitor, method)(path)
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == allowed


def test_a_question_is_refused_when_no_backend_is_configured(
    visitor: Client, settings: Any, enqueued: list[str]
) -> None:
    settings.TGI_URLS = []
    assert_error(post_json(visitor, "/api/v1/conversations", {"prompt": "Hi"}), 503, "no_backend")
    assert counts() == (0, 0)
    assert enqueued == []


def test_a_second_question_is_refused_while_the_first_is_queued(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    ask(visitor)
    before = counts()
    response = post_json(visitor, "/api/v1/conversations", {"prompt": "And another?"})
    assert_error(response, 409, "already_generating")
    assert counts() == before
    assert len(enqueued) == 1


def test_a_second_question_is_refused_while_the_first_is_running(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    first = ask(visitor)["message"]
    set_status(first["id"], "running")
    before = counts()
    response = post_json(visitor, "/api/v1/conversations", {"prompt": "And another?"})
    assert_error(response, 409, "already_generating")
    assert counts() == before
    assert len(enqueued) == 1


def test_a_new_question_is_accepted_once_the_first_is_final(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    first = ask(visitor)["message"]
    set_status(first["id"], "done")
    second = ask(visitor, "A new topic")
    assert second["message"]["id"] != first["id"]
    assert Conversation.objects.count() == 2


def test_active_answers_are_limited_per_address(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str], settings: Any
) -> None:
    settings.IP_MAX_ACTIVE = 1
    ask(make_visitor("192.0.2.10"))
    before = counts()
    response = post_json(make_visitor("192.0.2.10"), "/api/v1/conversations", {"prompt": "Hi"})
    assert_error(response, 429, "rate_limited")
    assert int(response["Retry-After"]) > 0
    assert counts() == before
    assert len(enqueued) == 1
    # Another address is not affected.
    ask(make_visitor("192.0.2.11"))


def test_a_newcomer_is_refused_when_the_line_is_full(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str], settings: Any
) -> None:
    # Both slots are busy (their workers have started) and one visitor waits.
    for _ in range(2):
        set_status(ask(make_visitor())["message"]["id"], "running")
    settings.QUEUE_MAX_WAITING = 1
    waiting = ask(make_visitor())["message"]
    assert waiting["position"] == 1
    before = counts()
    response = post_json(make_visitor(), "/api/v1/conversations", {"prompt": "Me too"})
    error = assert_error(response, 429, "queue_full")
    assert int(response["Retry-After"]) >= 1
    assert re.search(r"about \d+ (s|min)", error["message"]), error["message"]
    assert counts() == before
    assert len(enqueued) == 2


def test_the_queue_cap_counts_only_visitors_who_wait(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str], settings: Any
) -> None:
    settings.QUEUE_MAX_WAITING = 1
    ask(make_visitor())  # dispatched: holds a slot, still "queued" until its worker starts
    assert make_visitor().get("/api/v1/status").json()["queue"]["waiting"] == 0
    response = post_json(make_visitor(), "/api/v1/conversations", {"prompt": "A free slot?"})
    assert response.status_code == 201, response.content


def test_submissions_are_limited_per_address_over_time(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str], settings: Any
) -> None:
    settings.IP_RATE_LIMIT = Rate(count=2, seconds=60)
    settings.IP_MAX_ACTIVE = 10
    for _ in range(2):
        set_status(ask(make_visitor("198.51.100.7"))["message"]["id"], "done")
    before = counts()
    response = post_json(make_visitor("198.51.100.7"), "/api/v1/conversations", {"prompt": "3"})
    assert_error(response, 429, "rate_limited")
    assert 0 < int(response["Retry-After"]) <= 60
    assert counts() == before
    assert len(enqueued) == 2
    # Another address has its own budget.
    ask(make_visitor("198.51.100.8"))


# --- reading a conversation ---------------------------------------------------------------------


def test_the_owner_reads_the_conversation_question_first(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor, "Count the r's in strawberry")
    response = visitor.get(f"/api/v1/conversations/{created['id']}")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == created["id"]
    assert body["share_url"] == created["share_url"]
    messages = body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    for message in messages:
        assert_message_shape(message)
    question, answer = messages
    assert question["prompt"] == "Count the r's in strawberry"
    assert question["status"] == "done"
    assert question["position"] is None
    assert question["eta_seconds"] is None
    assert answer["id"] == created["message"]["id"]
    assert answer["status"] == "queued"


def test_another_session_cannot_read_a_conversation(
    visitor: Client, make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor)
    assert_error(make_visitor().get(f"/api/v1/conversations/{created['id']}"), 404, "not_found")
    assert_error(Client().get(f"/api/v1/conversations/{created['id']}"), 404, "not_found")


def test_the_share_token_does_not_open_the_owner_endpoint(
    visitor: Client, make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor)
    token = created["share_url"].strip("/").split("/")[-1]
    assert_error(make_visitor().get(f"/api/v1/conversations/{token}"), 404, "not_found")


def test_an_unknown_conversation_is_not_found(visitor: Client) -> None:
    assert_error(visitor.get("/api/v1/conversations/doesNotExist123"), 404, "not_found")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/conversations/bad!id",
        "/api/v1/conversations/bad.id",
        "/api/v1/conversations/a%20b",
        "/api/v1/conversations/%3Cscript%3E",
        "/api/v1/conversations/" + "a" * 49,
        "/api/v1/messages/bad$id",
        "/api/v1/shared/bad~token",
    ],
)
def test_an_id_with_odd_characters_is_a_json_404(visitor: Client, path: str) -> None:
    assert_error(visitor.get(path), 404, "not_found")


@pytest.mark.parametrize(
    "path", ["/api/v1/nothing", "/api/v2/samples", "/api/", "/api/v1/samples/extra"]
)
def test_an_unknown_api_path_is_a_json_404(visitor: Client, path: str) -> None:
    assert_error(visitor.get(path), 404, "not_found")


# --- follow-up turns --------------------------------------------------------------------------


def test_a_follow_up_is_added_once_the_answer_is_final(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor, "First question")
    set_status(created["message"]["id"], "done")
    response = post_json(
        visitor, f"/api/v1/conversations/{created['id']}/messages", {"prompt": "Follow-up"}
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) >= {"message"}
    message = body["message"]
    assert_message_shape(message)
    assert message["role"] == "assistant"
    assert message["prompt"] == "Follow-up"
    assert Message.objects.get(pk=message["id"]).conversation_id == created["id"]
    assert enqueued == [created["message"]["id"], message["id"]]
    messages = visitor.get(f"/api/v1/conversations/{created['id']}").json()["messages"]
    assert [(m["role"], m["prompt"]) for m in messages] == [
        ("user", "First question"),
        ("assistant", "First question"),
        ("user", "Follow-up"),
        ("assistant", "Follow-up"),
    ]


def test_a_follow_up_on_someone_elses_conversation_is_not_found(
    visitor: Client, make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor)
    set_status(created["message"]["id"], "done")
    before = counts()
    response = post_json(
        make_visitor(), f"/api/v1/conversations/{created['id']}/messages", {"prompt": "Mine?"}
    )
    assert_error(response, 404, "not_found")
    assert counts() == before
    assert len(enqueued) == 1


def test_a_follow_up_on_an_unknown_conversation_is_not_found(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    response = post_json(visitor, "/api/v1/conversations/nope/messages", {"prompt": "Hi"})
    assert_error(response, 404, "not_found")
    assert counts() == (0, 0)


def test_a_follow_up_while_the_answer_is_still_active_is_refused(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor)
    before = counts()
    response = post_json(
        visitor, f"/api/v1/conversations/{created['id']}/messages", {"prompt": "Too soon"}
    )
    assert_error(response, 409, "already_generating")
    assert counts() == before
    assert len(enqueued) == 1


@pytest.mark.parametrize(
    ("body", "code"),
    [('{"prompt": ""}', "empty_prompt"), ("{oops", "invalid_json"), ("[1]", "invalid_params")],
)
def test_a_bad_follow_up_body_is_refused(
    visitor: Client, backend: str, enqueued: list[str], body: str, code: str
) -> None:
    created = ask(visitor)
    set_status(created["message"]["id"], "done")
    before = counts()
    response = post_raw(visitor, f"/api/v1/conversations/{created['id']}/messages", body)
    assert_error(response, 400, code)
    assert counts() == before


# --- one message ------------------------------------------------------------------------------


def test_the_owner_reads_a_message(visitor: Client, backend: str, enqueued: list[str]) -> None:
    created = ask(visitor)
    message_id = created["message"]["id"]
    response = visitor.get(f"/api/v1/messages/{message_id}")
    assert response.status_code == 200
    body = response.json()
    assert_message_shape(body)
    assert body["id"] == message_id
    assert body["status"] == "queued"


def test_a_finished_message_carries_its_sections_and_stats(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    message_id = ask(visitor)["message"]["id"]
    deltas = [
        {"type": "delta", "seq": 1, "section": "thinking", "text": "Compare decimals."},
        {"type": "delta", "seq": 2, "section": "reflection", "index": 0, "text": "Careful."},
        {"type": "delta", "seq": 3, "section": "output", "text": "9.9 is larger."},
    ]
    now = timezone.now()
    set_status(
        message_id,
        "done",
        started_at=now,
        first_token_at=now,
        finished_at=now + timezone.timedelta(seconds=2),
        tokens=40,
        finish_reason="eos_token",
        deltas=deltas,
    )
    body = visitor.get(f"/api/v1/messages/{message_id}").json()
    assert_message_shape(body)
    assert body["sections"] == {
        "thinking": "Compare decimals.",
        "reflections": ["Careful."],
        "output": "9.9 is larger.",
        "text": "",
    }
    assert body["stats"]["tokens"] == 40
    assert body["stats"]["tokens_per_second"] == 20.0
    assert body["stats"]["finish_reason"] == "eos_token"
    assert body["position"] is None and body["eta_seconds"] is None


def test_a_failed_message_carries_its_error(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    message_id = ask(visitor)["message"]["id"]
    set_status(message_id, "error", error_code="overloaded", error_message="Try later.")
    body = visitor.get(f"/api/v1/messages/{message_id}").json()
    assert body["status"] == "error"
    assert body["error"] == {"code": "overloaded", "message": "Try later."}


def test_another_session_cannot_read_a_message(
    visitor: Client, make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    message_id = ask(visitor)["message"]["id"]
    assert_error(make_visitor().get(f"/api/v1/messages/{message_id}"), 404, "not_found")
    assert_error(visitor.get("/api/v1/messages/unknownMessage"), 404, "not_found")


# --- cancelling -------------------------------------------------------------------------------


def test_cancelling_a_queued_message_takes_it_out_of_line(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    for _ in range(2):
        ask(make_visitor())
    third_visitor, fourth_visitor = make_visitor(), make_visitor()
    third = ask(third_visitor)["message"]
    fourth = ask(fourth_visitor)["message"]
    assert (third["position"], fourth["position"]) == (1, 2)

    response = third_visitor.post(f"/api/v1/messages/{third['id']}/cancel")
    assert response.status_code == 200
    body = response.json()
    assert_message_shape(body)
    assert body["id"] == third["id"]
    assert body["status"] == "cancelled"
    assert body["position"] is None
    assert Message.objects.get(pk=third["id"]).status == "cancelled"
    assert fourth_visitor.get(f"/api/v1/messages/{fourth['id']}").json()["position"] == 1
    assert third_visitor.get("/api/v1/status").json()["queue"]["waiting"] == 1
    assert third["id"] not in enqueued


def test_cancelling_a_running_message_raises_the_cancel_flag(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    message_id = ask(visitor)["message"]["id"]
    assert Message.objects.get(pk=message_id).dispatched_at is not None
    set_status(message_id, "running")
    response = visitor.post(f"/api/v1/messages/{message_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert Message.objects.get(pk=message_id).status == "cancelled"
    assert redis_clients.redis_client().get(f"pg:cancel:{message_id}") == b"1"


def test_cancelling_a_running_message_keeps_the_text_written_so_far(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    message_id = ask(visitor)["message"]["id"]
    set_status(message_id, "running")
    written = {"type": "delta", "seq": 1, "section": "thinking", "text": "So far, so good."}
    redis_clients.redis_client().rpush(delta_log.delta_log_key(message_id), json.dumps(written))
    response = visitor.post(f"/api/v1/messages/{message_id}/cancel")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["sections"]["thinking"] == "So far, so good."
    assert Message.objects.get(pk=message_id).deltas == [written]


def test_cancelling_a_final_message_leaves_it_unchanged(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    message_id = ask(visitor)["message"]["id"]
    set_status(message_id, "done")
    response = visitor.post(f"/api/v1/messages/{message_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "done"
    assert Message.objects.get(pk=message_id).status == "done"
    assert not redis_clients.redis_client().exists(f"pg:cancel:{message_id}")


def test_cancelling_twice_is_harmless(visitor: Client, backend: str, enqueued: list[str]) -> None:
    message_id = ask(visitor)["message"]["id"]
    first = visitor.post(f"/api/v1/messages/{message_id}/cancel")
    second = visitor.post(f"/api/v1/messages/{message_id}/cancel")
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["status"] == second.json()["status"] == "cancelled"


def test_cancelling_lets_the_visitor_ask_again(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    message_id = ask(visitor)["message"]["id"]
    visitor.post(f"/api/v1/messages/{message_id}/cancel")
    assert ask(visitor, "Second try")["message"]["status"] == "queued"


def test_someone_else_cannot_cancel_a_message(
    visitor: Client, make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    message_id = ask(visitor)["message"]["id"]
    response = make_visitor().post(f"/api/v1/messages/{message_id}/cancel")
    assert_error(response, 404, "not_found")
    assert Message.objects.get(pk=message_id).status == "queued"
    assert not redis_clients.redis_client().exists(f"pg:cancel:{message_id}")


def test_cancel_needs_a_csrf_token(visitor: Client, backend: str, enqueued: list[str]) -> None:
    message_id = ask(visitor)["message"]["id"]
    del visitor.defaults["HTTP_X_CSRFTOKEN"]
    assert_error(visitor.post(f"/api/v1/messages/{message_id}/cancel"), 403, "csrf")
    assert Message.objects.get(pk=message_id).status == "queued"


# --- sharing ----------------------------------------------------------------------------------


def test_anyone_with_the_link_reads_a_shared_conversation(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor, "Shared question")
    conversation = Conversation.objects.get(pk=created["id"])
    token = conversation.share_token
    assert created["share_url"] == f"/s/{token}/"

    response = Client().get(f"/api/v1/shared/{token}")
    assert response.status_code == 200
    body = response.json()
    messages = body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    for message in messages:
        assert_message_shape(message)
        assert message["stream_url"] == f"/ws/messages/{message['id']}/?share={token}"
    assert messages[0]["prompt"] == "Shared question"
    assert created["id"] not in json.dumps(body)


def test_a_bad_share_token_is_not_found(visitor: Client, backend: str, enqueued: list[str]) -> None:
    created = ask(visitor)
    assert_error(Client().get("/api/v1/shared/notARealToken"), 404, "not_found")
    # The conversation id is not a share token.
    assert_error(Client().get(f"/api/v1/shared/{created['id']}"), 404, "not_found")


def test_ids_and_share_tokens_are_long_opaque_and_distinct(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    seen: set[str] = set()
    for _ in range(3):
        created = ask(make_visitor())
        token = Conversation.objects.get(pk=created["id"]).share_token
        for value in (created["id"], created["message"]["id"], token):
            # URL-safe base64: 6 bits a character, so 22 characters carry at least 128 bits.
            assert OPAQUE.fullmatch(value)
            assert len(value) >= 22
            assert value not in seen
            seen.add(value)
        assert token != created["id"]
