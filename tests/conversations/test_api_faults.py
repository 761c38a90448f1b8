"""The API and pages facing what a hostile or broken client sends, and an unreachable Redis:
a clear refusal, never a 500, nothing lost, nobody let in under someone else's identity."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.test import Client

from devtools.processes import free_port
from playground import services
from playground.env import Rate
from playground.models import Conversation, Message
from playground.realtime import redis_clients
from tests.conversations.test_api import (
    VisitorFactory,
    ask,
    assert_error,
    counts,
    post_json,
    set_status,
)

PLANTED = "plantedbysomeoneelse0123456789ab"


def test_a_session_cookie_the_server_never_created_is_not_an_identity(
    db: None, backend: str, enqueued: list[str]
) -> None:
    victim = Client(enforce_csrf_checks=True)
    victim.cookies["sessionid"] = PLANTED  # set in the victim's browser by someone else
    victim.get("/api/v1/status")
    victim.defaults["HTTP_X_CSRFTOKEN"] = victim.cookies["csrftoken"].value

    created = ask(victim, "My private question")

    assert victim.cookies["sessionid"].value != PLANTED, "a fresh session replaced it"
    assert Conversation.objects.get(pk=created["id"]).session_key != PLANTED
    attacker = Client()
    attacker.cookies["sessionid"] = PLANTED
    assert attacker.get(f"/api/v1/conversations/{created['id']}").status_code == 404
    assert attacker.get(f"/c/{created['id']}/").status_code == 404
    assert attacker.get("/api/v1/conversations").json() == {"conversations": []}
    # The victim keeps their own conversation.
    assert victim.get(f"/api/v1/conversations/{created['id']}").status_code == 200


def test_a_multipart_form_post_is_read_like_json(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    response = visitor.post("/api/v1/conversations", {"prompt": "hello"})  # curl -F prompt=hello

    assert response.status_code == 201, response.content
    assert response.json()["message"]["prompt"] == "hello"


@pytest.mark.parametrize("content_type", ["multipart", "urlencoded"])
def test_a_form_body_over_the_upload_limit_gets_a_json_error(
    visitor: Client, backend: str, enqueued: list[str], settings: Any, content_type: str
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    prompt = "x" * 5000
    if content_type == "multipart":
        response = visitor.post("/api/v1/conversations", {"prompt": prompt})
    else:
        response = visitor.post(
            "/api/v1/conversations",
            data=f"prompt={prompt}",
            content_type="application/x-www-form-urlencoded",
        )

    assert_error(response, 400, "prompt_too_long")
    assert counts() == (0, 0)


def test_a_page_form_over_the_upload_limit_gets_the_sites_own_error_page(
    visitor: Client, backend: str, enqueued: list[str], settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = visitor.post("/c/new", {"prompt": "x" * 5000})

    assert response.status_code == 400
    assert b"The request body is too large." in response.content
    assert b"Back to the playground" in response.content


def test_a_full_line_tells_newcomers_to_come_back_when_it_has_got_through(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str], settings: Any
) -> None:
    for _ in range(2):
        set_status(ask(make_visitor())["message"]["id"], "running")
    settings.QUEUE_MAX_WAITING = 1
    ask(make_visitor())

    for service_seconds in (45.0, 2.0):
        redis_clients.redis_client().delete(services.SERVICE_TIMES_KEY)
        redis_clients.redis_client().lpush(services.SERVICE_TIMES_KEY, service_seconds)
        response = post_json(make_visitor(), "/api/v1/conversations", {"prompt": "Me too"})

        error = assert_error(response, 429, "queue_full")
        wait = math.ceil(services.estimate_wait_for_new_arrival())
        assert int(response["Retry-After"]) == wait
        stated = re.search(r"about (\d+) s to get through", error["message"])
        assert stated is not None and int(stated.group(1)) == wait, error["message"]


def test_clients_whose_address_cannot_be_read_share_one_budget(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str], settings: Any
) -> None:
    settings.IP_MAX_ACTIVE = 1
    ask(make_visitor("not-an-address"))

    response = post_json(make_visitor("also garbage"), "/api/v1/conversations", {"prompt": "Hi"})

    assert_error(response, 429, "rate_limited")
    assert len(enqueued) == 1


def test_clients_whose_address_cannot_be_read_share_one_submission_budget(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str], settings: Any
) -> None:
    settings.IP_RATE_LIMIT = Rate(count=1, seconds=60)
    set_status(ask(make_visitor("not-an-address"))["message"]["id"], "done")

    response = post_json(make_visitor("also garbage"), "/api/v1/conversations", {"prompt": "Hi"})

    assert_error(response, 429, "rate_limited")


def test_the_backends_address_is_kept_from_visitors_and_share_viewers(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor)
    message = created["message"]
    set_status(message["id"], "running", model_id="some/model", model_info={"model_id": "m"})
    share_url = created["share_url"]
    token = share_url.rstrip("/").rsplit("/", 1)[1]

    seen = [
        visitor.get(f"/api/v1/messages/{message['id']}").content,
        visitor.get(f"/api/v1/conversations/{created['id']}").content,
        visitor.get(f"/c/{created['id']}/").content,
        Client().get(f"/api/v1/shared/{token}").content,
        Client().get(share_url).content,
    ]

    for body in seen:
        assert b"backend.test" not in body
    assert json.loads(seen[0])["backend"] == "backend-1"


@pytest.fixture
def redis_down() -> Iterator[None]:
    """The playground's Redis refuses connections (it is restarting). Put back by hand before
    the test's other fixtures clean up the real one."""
    real = redis_clients.redis_client()
    nowhere = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=1)
    redis_clients._sync_client = nowhere
    try:
        yield
    finally:
        redis_clients._sync_client = real
        nowhere.close()


def test_while_redis_is_down_the_api_answers_503_with_a_reason_and_writes_nothing(
    visitor: Client, backend: str, enqueued: list[str], redis_down: None
) -> None:
    for response in (
        visitor.get("/api/v1/status"),
        post_json(visitor, "/api/v1/conversations", {"prompt": "Anyone there?"}),
    ):
        error = assert_error(response, 503, "unavailable")
        assert "try again" in error["message"]
        assert int(response["Retry-After"]) > 0
    assert counts() == (0, 0)
    assert enqueued == []


def test_while_redis_is_down_pages_and_metrics_answer_503_not_500(
    visitor: Client, backend: str, redis_down: None
) -> None:
    home = visitor.get("/")
    assert home.status_code == 503
    assert b"try again in a few seconds" in home.content
    metrics = visitor.get("/metrics")
    assert metrics.status_code == 503
    assert metrics["Content-Type"].startswith("text/plain")


def test_a_question_already_in_line_when_redis_goes_is_kept_and_answered_201(
    visitor: Client, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Redis went away between the transaction that queued the question and its dispatch: the
    # question is in line for the reconciler, and the visitor is told so, not refused.
    from playground.celery import app

    def broker_gone(name: str, args: list[str], **options: Any) -> None:
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(app, "send_task", broker_gone)

    response = post_json(visitor, "/api/v1/conversations", {"prompt": "Still there?"})

    assert response.status_code == 201, response.content
    answer = Message.objects.get(pk=response.json()["message"]["id"])
    assert answer.status == Message.Status.QUEUED
