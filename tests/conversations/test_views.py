"""The server-rendered pages of DESIGN 4.4: playground, conversation, shared view, health."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.http import HttpResponse
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from playground import rotation
from playground.models import Conversation, Message, SamplePrompt

XSS_PROMPT = "<script>alert(1)</script> and <img src=x onerror=alert(1)>"
RAW_TAGS = ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>")
CONVERSATION_PATH = re.compile(r"^/c/([A-Za-z0-9_-]+)/$")


def new_client(ip: str) -> Client:
    """Another visitor with a session and a CSRF token, from its own address."""
    client = Client(enforce_csrf_checks=True, REMOTE_ADDR=ip)
    client.get("/")
    client.defaults["HTTP_X_CSRFTOKEN"] = client.cookies["csrftoken"].value
    return client


def start_conversation(client: Client, **form: str) -> Conversation:
    response = client.post("/c/new", form)
    assert response.status_code == 302, response.content
    match = CONVERSATION_PATH.match(response["Location"])
    assert match, response["Location"]
    return Conversation.objects.get(pk=match.group(1))


def answer_of(conversation: Conversation) -> Message:
    return conversation.messages.get(role=Message.Role.ASSISTANT)


def page_text(response: HttpResponse) -> str:
    assert response["Content-Type"].startswith("text/html")
    return response.content.decode()


def assert_escaped(html: str, text: str) -> None:
    for raw in RAW_TAGS:
        assert raw not in html
    assert escape(text) in html


# --- the playground ---------------------------------------------------------------------------


def test_home_lists_samples_composer_and_queue_status(
    db: None, backend: str, samples: list[SamplePrompt]
) -> None:
    response = Client().get("/")
    assert response.status_code == 200
    html = page_text(response)
    for sample in samples:
        assert escape(sample.title) in html
        assert f'value="{sample.slug}"' in html
    assert 'action="/c/new"' in html
    assert '<textarea id="prompt" name="prompt"' in html
    assert 'id="queue-status"' in html
    assert "0/2 answering" in html
    assert "0 waiting" in html
    assert "csrftoken" in response.cookies


def test_home_says_when_no_model_server_is_reachable(db: None, settings: Any) -> None:
    settings.TGI_URLS = []
    html = page_text(Client().get("/"))
    assert "No model server is reachable" in html


def test_home_serves_htmx_from_its_own_static_files(db: None, backend: str) -> None:
    html = page_text(Client().get("/"))
    sources = re.findall(r"<script[^>]*\bsrc=\"([^\"]+)\"", html)
    assert "/static/vendor/htmx/htmx.min.js" in sources
    # Our own files, and the scripts' translations, which Django serves per language.
    assert all(s.startswith("/static/") or s == "/jsi18n/en/" for s in sources), sources
    assert not re.search(r"<script[^>]*src=\"https?://", html)
    assert not re.search(r"<link[^>]*href=\"https?://", html)


def test_the_vendored_htmx_file_is_served(db: None) -> None:
    response = Client().get("/static/vendor/htmx/htmx.min.js")
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"htmx" in body


def test_the_status_partial_renders_the_queue(db: None, backend: str) -> None:
    response = Client().get("/status")
    assert response.status_code == 200
    assert "0/2 answering" in page_text(response)


# --- starting a conversation ------------------------------------------------------------------


def test_a_sample_starts_a_conversation_and_redirects_to_it(
    visitor: Client, backend: str, enqueued: list[str], samples: list[SamplePrompt]
) -> None:
    sample = samples[0]
    conversation = start_conversation(visitor, sample=sample.slug)
    answer = answer_of(conversation)
    assert answer.prompt == sample.prompt
    assert enqueued == [answer.pk]

    response = visitor.get(f"/c/{conversation.pk}/")
    assert response.status_code == 200
    html = page_text(response)
    assert escape(sample.prompt) in html
    assert f'data-stream-url="/ws/messages/{answer.pk}/"' in html
    assert f"/s/{conversation.share_token}/" in html


def test_a_written_prompt_starts_a_conversation(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    conversation = start_conversation(visitor, prompt="Is 9.11 larger than 9.9?")
    assert answer_of(conversation).prompt == "Is 9.11 larger than 9.9?"
    assert "Is 9.11 larger than 9.9?" in page_text(visitor.get(f"/c/{conversation.pk}/"))


@pytest.mark.parametrize(
    ("form", "text"),
    [
        ({"prompt": ""}, "Write a prompt first."),
        ({"prompt": "   "}, "Write a prompt first."),
        ({}, "Write a prompt or pick a sample."),
    ],
    ids=["empty", "whitespace", "missing"],
)
def test_an_empty_prompt_shows_the_error_and_creates_nothing(
    visitor: Client, backend: str, enqueued: list[str], form: dict[str, str], text: str
) -> None:
    response = visitor.post("/c/new", form)
    assert response.status_code == 400
    html = page_text(response)
    assert text in html
    assert 'role="alert"' in html
    assert Conversation.objects.count() == 0
    assert Message.objects.count() == 0
    assert enqueued == []


def test_an_unknown_sample_shows_an_error_and_never_echoes_markup(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    response = visitor.post("/c/new", {"sample": "<b>nope</b>"})
    assert response.status_code == 400
    html = page_text(response)
    assert "<b>nope</b>" not in html
    assert "There is no such sample prompt." in html
    assert Conversation.objects.count() == 0


def test_a_too_long_prompt_keeps_the_text_in_the_composer(
    visitor: Client, backend: str, enqueued: list[str], settings: Any
) -> None:
    settings.PROMPT_MAX_CHARS = 5
    response = visitor.post("/c/new", {"prompt": "far too long"})
    assert response.status_code == 400
    html = page_text(response)
    assert "limited to 5 characters" in html
    assert ">far too long</textarea>" in html
    assert Message.objects.count() == 0


def test_no_backend_shows_a_503_page(visitor: Client, settings: Any, enqueued: list[str]) -> None:
    settings.TGI_URLS = []
    response = visitor.post("/c/new", {"prompt": "Anyone there?"})
    assert response.status_code == 503
    assert "No model server is available." in page_text(response)
    assert Message.objects.count() == 0


def test_a_full_line_shows_a_429_page_with_retry_after(
    visitor: Client, backend: str, enqueued: list[str], settings: Any
) -> None:
    for n in range(3):
        start_conversation(new_client(f"10.1.0.{n + 1}"), prompt=f"Question {n}")
    Message.objects.filter(dispatched_at__isnull=False).update(
        status=Message.Status.RUNNING, started_at=timezone.now()
    )
    settings.QUEUE_MAX_WAITING = 1
    response = visitor.post("/c/new", {"prompt": "Me too"})
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert "The line is full" in page_text(response)


def test_a_form_post_without_csrf_gets_a_403_page(db: None, backend: str) -> None:
    client = Client(enforce_csrf_checks=True)
    client.get("/")
    response = client.post("/c/new", {"prompt": "No token"})
    assert response.status_code == 403
    assert "CSRF token is missing" in page_text(response)
    assert Message.objects.count() == 0


def test_a_huge_form_post_is_a_400_not_a_500(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    visitor.raise_request_exception = False
    response = visitor.post("/c/new", {"prompt": "a" * (5 * 1024 * 1024)})
    assert response.status_code == 400
    assert Message.objects.count() == 0


def test_new_conversation_only_accepts_post(visitor: Client) -> None:
    assert visitor.get("/c/new").status_code == 405


# --- the conversation page and the shared view ------------------------------------------------


def test_another_session_gets_a_404_page_for_a_conversation(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    conversation = start_conversation(visitor, prompt="Private question")
    for stranger in (new_client("10.2.0.1"), Client()):
        response = stranger.get(f"/c/{conversation.pk}/")
        assert response.status_code == 404
        html = page_text(response)
        assert "Nothing here" in html
        assert "Private question" not in html


def test_an_unknown_conversation_is_a_404_page(visitor: Client) -> None:
    response = visitor.get("/c/doesNotExist/")
    assert response.status_code == 404
    assert "Nothing here" in page_text(response)


def test_the_owner_page_has_a_composer_and_a_stop_button(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    conversation = start_conversation(visitor, prompt="Still thinking?")
    answer = answer_of(conversation)
    html = page_text(visitor.get(f"/c/{conversation.pk}/"))
    assert f'action="/c/{conversation.pk}/send"' in html
    assert f'action="/m/{answer.pk}/cancel"' in html
    assert ">Stop</button>" in html


def test_the_shared_page_is_read_only_for_anyone(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    conversation = start_conversation(visitor, prompt="Look at this")
    answer = answer_of(conversation)
    response = Client().get(f"/s/{conversation.share_token}/")
    assert response.status_code == 200
    html = page_text(response)
    assert "Look at this" in html
    assert "<textarea" not in html
    assert 'class="composer"' not in html
    assert "/send" not in html
    assert ">Stop</button>" not in html
    assert "/cancel" not in html
    assert f'data-stream-url="/ws/messages/{answer.pk}/?share={conversation.share_token}"' in html
    assert conversation.pk not in html


@pytest.mark.parametrize("token", ["notARealToken", "bad.token", "a" * 60])
def test_a_bad_share_token_is_a_404_page(
    visitor: Client, backend: str, enqueued: list[str], token: str
) -> None:
    start_conversation(visitor, prompt="Something")
    response = Client().get(f"/s/{token}/")
    assert response.status_code == 404
    assert "Something" not in page_text(response)


def test_the_conversation_id_does_not_open_the_shared_view(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    conversation = start_conversation(visitor, prompt="Something")
    assert Client().get(f"/s/{conversation.pk}/").status_code == 404


def test_an_unknown_page_is_an_html_404(db: None) -> None:
    response = Client().get("/no/such/page/")
    assert response.status_code == 404
    assert "Nothing here" in page_text(response)


# --- untrusted text stays text ----------------------------------------------------------------


def test_a_hostile_prompt_is_escaped_on_the_conversation_and_shared_pages(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    conversation = start_conversation(visitor, prompt=XSS_PROMPT)
    owner_html = page_text(visitor.get(f"/c/{conversation.pk}/"))
    assert_escaped(owner_html, XSS_PROMPT)
    shared_html = page_text(Client().get(f"/s/{conversation.share_token}/"))
    assert_escaped(shared_html, XSS_PROMPT)


def test_a_hostile_prompt_is_escaped_when_the_form_is_shown_again(
    visitor: Client, backend: str, enqueued: list[str], settings: Any
) -> None:
    settings.PROMPT_MAX_CHARS = 10
    response = visitor.post("/c/new", {"prompt": XSS_PROMPT})
    assert response.status_code == 400
    assert_escaped(page_text(response), XSS_PROMPT)


def test_model_output_is_escaped_on_the_conversation_and_shared_pages(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    conversation = start_conversation(visitor, prompt="Say something nasty")
    answer = answer_of(conversation)
    pieces = {
        "thinking": "<script>alert(1)</script>",
        "reflection": "<img src=x onerror=alert(1)>",
        "output": "<script>alert(1)</script> done",
        "text": "<img src=x onerror=alert(1)> tail",
    }
    deltas: list[dict[str, Any]] = []
    for seq, (section, text) in enumerate(pieces.items(), start=1):
        event: dict[str, Any] = {"type": "delta", "seq": seq, "section": section, "text": text}
        if section == "reflection":
            event["index"] = 0
        deltas.append(event)
    now = timezone.now()
    Message.objects.filter(pk=answer.pk).update(
        status=Message.Status.DONE,
        started_at=now,
        first_token_at=now,
        finished_at=now,
        tokens=12,
        deltas=deltas,
        sections={
            "thinking": pieces["thinking"],
            "reflections": [pieces["reflection"]],
            "output": pieces["output"],
            "text": pieces["text"],
        },
        model_id="<script>alert(1)</script>",
    )
    for client, path in (
        (visitor, f"/c/{conversation.pk}/"),
        (Client(), f"/s/{conversation.share_token}/"),
    ):
        html = page_text(client.get(path))
        for raw in RAW_TAGS:
            assert raw not in html, path
        for text in pieces.values():
            assert escape(text) in html, (path, text)
        assert 'class="reflection"' in html


# --- stopping from the page -------------------------------------------------------------------


def test_the_owner_stops_an_answer_from_the_page(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    conversation = start_conversation(visitor, prompt="Stop me")
    answer = answer_of(conversation)
    response = visitor.post(f"/m/{answer.pk}/cancel")
    assert response.status_code == 302
    assert response["Location"] == f"/c/{conversation.pk}/#answer-{answer.pk}", "opens at it"
    answer.refresh_from_db()
    assert answer.status == Message.Status.CANCELLED
    assert "Stopped" in page_text(visitor.get(f"/c/{conversation.pk}/"))


def test_another_session_cannot_stop_an_answer(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    conversation = start_conversation(visitor, prompt="Leave me alone")
    answer = answer_of(conversation)
    response = new_client("10.3.0.1").post(f"/m/{answer.pk}/cancel")
    assert response.status_code == 404
    answer.refresh_from_db()
    assert answer.status == Message.Status.QUEUED


def test_stopping_needs_a_csrf_token(visitor: Client, backend: str, enqueued: list[str]) -> None:
    conversation = start_conversation(visitor, prompt="Stop me")
    answer = answer_of(conversation)
    del visitor.defaults["HTTP_X_CSRFTOKEN"]
    assert visitor.post(f"/m/{answer.pk}/cancel").status_code == 403
    answer.refresh_from_db()
    assert answer.status == Message.Status.QUEUED


# --- follow-ups from the page -----------------------------------------------------------------


def test_a_follow_up_from_the_page_redirects_back(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    conversation = start_conversation(visitor, prompt="First")
    Message.objects.filter(pk=answer_of(conversation).pk).update(status=Message.Status.DONE)
    response = visitor.post(f"/c/{conversation.pk}/send", {"prompt": "Second"})
    assert response.status_code == 302
    assert conversation.messages.filter(role=Message.Role.USER).count() == 2
    new_answer = conversation.messages.filter(role=Message.Role.ASSISTANT).latest("created")
    assert response["Location"] == f"/c/{conversation.pk}/#answer-{new_answer.pk}", "opens at it"


def test_a_follow_up_while_answering_shows_a_409_page(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    conversation = start_conversation(visitor, prompt="First")
    response = visitor.post(f"/c/{conversation.pk}/send", {"prompt": "Second"})
    assert response.status_code == 409
    assert "already have an answer being written" in page_text(response)
    assert conversation.messages.count() == 2


def test_a_follow_up_on_someone_elses_conversation_is_a_404(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    conversation = start_conversation(visitor, prompt="First")
    Message.objects.filter(pk=answer_of(conversation).pk).update(status=Message.Status.DONE)
    response = new_client("10.4.0.1").post(f"/c/{conversation.pk}/send", {"prompt": "Mine"})
    assert response.status_code == 404
    assert conversation.messages.count() == 2


# --- health -----------------------------------------------------------------------------------


def test_healthz_is_always_ok(db: None) -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ready_with_a_healthy_backend(db: None, backend: str) -> None:
    response = Client().get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] == "ok"
    assert body["checks"]["backends"] == "1/1 healthy"


def test_readyz_is_not_ready_without_a_backend(db: None, settings: Any) -> None:
    settings.TGI_URLS = []
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] == "ok"
    assert body["checks"]["backends"].startswith("error")


def test_readyz_is_not_ready_when_every_backend_is_down(db: None, backend: str) -> None:
    rotation.mark_down(backend, "test")
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["backends"] == "error: 0/1 healthy"
