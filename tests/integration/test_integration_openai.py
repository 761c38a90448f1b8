"""End to end against an OpenAI-protocol backend: the whole stack started as `make run` starts it,
with `SIM_PROTOCOL=openai`, so the playground reaches the simulator as
`TGI_URL=openai+http://127.0.0.1:<port>` over its `/v1/chat/completions` route. JSON API (uvicorn)
→ Celery worker → chat-completions SSE → tag parser → channel layer → WebSocket.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from devtools.stack import Stack
from inference.backends import http_url
from tests.integration.stack import Visitor, deltas_of, playground_stack, sections_from, wait_final

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with playground_stack("openai", redis_db=10, SIM_PROTOCOL="openai") as running:
        yield running


@pytest.fixture
def visitor(stack: Stack) -> Iterator[Visitor]:
    person = Visitor(stack.base_url)
    yield person
    person.close()


def test_the_stack_names_the_backend_with_its_protocol(stack: Stack) -> None:
    assert stack.env["TGI_URL"].startswith("openai+http://127.0.0.1:")


def test_a_sample_streams_its_sections_over_the_openai_protocol(
    stack: Stack, visitor: Visitor
) -> None:
    sim = http_url(stack.env["TGI_URL"])
    completed_before = httpx.get(f"{sim}/sim/stats").json()["completed"]
    message = visitor.post("/api/v1/conversations", {"sample": "strawberry"}).json()["message"]

    events = visitor.events(message["stream_url"], after=0)

    deltas = deltas_of(events)
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    started = next(e for e in events if e["type"] == "started")
    assert started["backend"] == "backend-1", "its public name, not its address"
    assert started["model"] == "reflection-playground/simulator"
    assert events[-1]["type"] == "done"
    assert events[-1]["stats"]["finish_reason"] == "eos_token"
    stored = visitor.get(f"/api/v1/messages/{message['id']}").json()
    assert stored["status"] == "done"
    assert sections_from(deltas) == stored["sections"]
    assert stored["sections"]["thinking"] and stored["sections"]["reflections"]
    assert "3" in stored["sections"]["output"]
    assert {d["section"] for d in deltas} >= {"thinking", "reflection", "output"}
    assert stored["provenance"]["backend"] == "backend-1"
    assert httpx.get(f"{sim}/sim/stats").json()["completed"] == completed_before + 1


def test_a_follow_up_turn_streams_in_the_same_conversation(visitor: Visitor) -> None:
    created = visitor.post("/api/v1/conversations", {"sample": "decimal-compare"}).json()
    wait_final(visitor, created["message"]["id"])

    follow_up = visitor.post(
        f"/api/v1/conversations/{created['id']}/messages", {"prompt": "Are you sure?"}
    )

    assert follow_up.status_code == 201, follow_up.text
    message = follow_up.json()["message"]
    events = visitor.events(message["stream_url"], after=0)
    assert events[-1]["type"] == "done"
    stored = wait_final(visitor, message["id"])
    assert "Are you sure?" in stored["sections"]["output"], "the simulator quotes the last turn"
    assert stored["history_turns_dropped"] == 0


def test_cancel_closes_the_chat_stream(stack: Stack, visitor: Visitor) -> None:
    sim = http_url(stack.env["TGI_URL"])
    dropped_before = httpx.get(f"{sim}/sim/stats").json()["dropped"]
    message = visitor.post("/api/v1/conversations", {"sample": "agatha"}).json()["message"]
    visitor.events(message["stream_url"], limit=3)

    cancelled = visitor.post(f"/api/v1/messages/{message['id']}/cancel", {})

    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    deadline = time.monotonic() + 5
    while httpx.get(f"{sim}/sim/stats").json()["dropped"] == dropped_before:
        assert time.monotonic() < deadline, "the simulator never saw the stream close"
        time.sleep(0.05)
    events = visitor.events(message["stream_url"], after=0)
    assert events[-1]["type"] == "cancelled"


def test_readiness_counts_the_openai_backend(visitor: Visitor) -> None:
    ready = visitor.get("/readyz").json()
    assert ready["checks"]["backends"] == "1/1 healthy", ready
