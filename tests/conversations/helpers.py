"""What the conversation tests share: asking, following up, regenerating and reading
conversations through the API, the pages and the stream.

Most tests finish answers by writing the row directly (status, sections and the delta log the
sections come from, `tests/conversations/answers.py`), the way a worker would; the ones marked
`transaction=True` run real generations against the in-process simulator (the `sim` fixture
of this folder's conftest) or drive the WebSocket consumer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from channels.testing import WebsocketCommunicator
from django.http import HttpResponse
from django.test import Client
from django.utils import timezone

from playground import services
from playground.consumers import MessageStreamConsumer
from playground.models import Conversation, Message
from tests.conversations.answers import finish

VisitorFactory = Callable[..., Client]

CONTEXT_NOTE = "did not fit the model's context"
SUMMARY_FIELDS = {"id", "title", "created", "updated", "share_url"}
TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def post_json(client: Client, path: str, data: Any) -> HttpResponse:
    return client.post(path, data=json.dumps(data), content_type="application/json")


def patch_json(client: Client, path: str, data: Any) -> HttpResponse:
    return client.patch(path, data=json.dumps(data), content_type="application/json")


def ask(client: Client, prompt: str = "Which is larger, 9.11 or 9.9?") -> dict[str, Any]:
    response = post_json(client, "/api/v1/conversations", {"prompt": prompt})
    assert response.status_code == 201, response.content
    return response.json()


def follow_up(client: Client, conversation_id: str, prompt: str) -> dict[str, Any]:
    response = post_json(
        client, f"/api/v1/conversations/{conversation_id}/messages", {"prompt": prompt}
    )
    assert response.status_code == 201, response.content
    return response.json()["message"]


def set_running(message_id: str) -> None:
    Message.objects.filter(pk=message_id).update(status="running", started_at=timezone.now())


def answered(client: Client, prompt: str, output: str, thinking: str = "") -> dict[str, Any]:
    """A new conversation whose first answer is already written."""
    created = ask(client, prompt)
    finish(created["message"]["id"], output=output, thinking=thinking or f"Thinking: {prompt}")
    return created


def conversation_json(client: Client, conversation_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/conversations/{conversation_id}")
    assert response.status_code == 200, response.content
    return response.json()


def page(client: Client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/html")
    return response.content.decode()


def assert_error(response: HttpResponse, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def assert_not_found_page(response: HttpResponse) -> None:
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert "Nothing here" in response.content.decode()


def token_of(share_url: str) -> str:
    match = re.fullmatch(r"/s/([A-Za-z0-9_-]+)/", share_url)
    assert match, share_url
    return match.group(1)


def counts() -> tuple[int, int]:
    return Conversation.objects.count(), Message.objects.count()


def regenerate(client: Client, message_id: str) -> dict[str, Any]:
    response = client.post(f"/api/v1/messages/{message_id}/regenerate")
    assert response.status_code == 201, response.content
    return response.json()["message"]


def model_prompt_for(message_id: str, budget: int = 8000) -> tuple[str, int]:
    message = Message.objects.select_related("conversation").get(pk=message_id)
    return services.build_model_prompt(message, {"max_input_tokens": budget})


def stream(message_id: str, query: str, session: str | None = None) -> WebsocketCommunicator:
    path = f"/ws/messages/{message_id}/?{query}"
    socket = WebsocketCommunicator(MessageStreamConsumer.as_asgi(), path)
    socket.scope["url_route"] = {"kwargs": {"message_id": message_id}}
    socket.scope["query_string"] = query.encode()
    socket.scope["session"] = SimpleNamespace(session_key=session)
    return socket


async def receive_until_closed(socket: WebsocketCommunicator) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while True:
        output = await socket.receive_output(3)
        if output["type"] == "websocket.close":
            events.append({"closed": output.get("code", 1000)})
            return events
        events.append(json.loads(output["text"]))
