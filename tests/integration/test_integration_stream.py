"""End to end through the production path, exactly as DESIGN 4.2 and 4.3 describe it:
JSON API (uvicorn) → Celery worker over Redis → simulator over HTTP SSE → channel layer →
WebSocket. Every component is a real process started by the same code as `make run`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from devtools.stack import Stack
from tests.integration.stack import Visitor, deltas_of, playground_stack, sections_from, wait_final

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with playground_stack("stream", redis_db=7) as running:
        yield running


@pytest.fixture
def visitor(stack: Stack) -> Iterator[Visitor]:
    person = Visitor(stack.base_url)
    yield person
    person.close()


def test_a_sample_prompt_streams_every_delta_in_order_and_matches_the_stored_answer(
    visitor: Visitor,
) -> None:
    created = visitor.post("/api/v1/conversations", {"sample": "strawberry"})
    assert created.status_code == 201
    message = created.json()["message"]

    events = visitor.events(message["stream_url"], after=0)

    deltas = deltas_of(events)
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    assert events[-1]["type"] == "done"
    assert events[-1]["stats"]["finish_reason"] == "eos_token"
    assert any(e["type"] == "started" for e in events)
    stored = visitor.get(f"/api/v1/messages/{message['id']}").json()
    assert stored["status"] == "done"
    assert sections_from(deltas) == stored["sections"]
    assert stored["sections"]["reflections"], "the strawberry answer corrects itself"
    assert "3" in stored["sections"]["output"]


def test_a_reconnect_mid_stream_with_after_continues_without_loss_or_repeat(
    visitor: Visitor,
) -> None:
    message = visitor.post("/api/v1/conversations", {"sample": "agatha"}).json()["message"]

    first = deltas_of(visitor.events(message["stream_url"], after=0, limit=10))
    last_seen = first[-1]["seq"]
    rest = deltas_of(visitor.events(message["stream_url"], after=last_seen))

    assert [d["seq"] for d in first + rest] == list(range(1, len(first) + len(rest) + 1))
    stored = wait_final(visitor, message["id"])
    assert sections_from(first + rest) == stored["sections"]


def test_a_reconnect_after_the_end_replays_exactly_the_missing_deltas(visitor: Visitor) -> None:
    message = visitor.post("/api/v1/conversations", {"sample": "decimal-compare"}).json()["message"]
    everything = deltas_of(visitor.events(message["stream_url"]))
    k = len(everything) // 2

    replay = visitor.events(message["stream_url"], after=k)

    assert [d["seq"] for d in deltas_of(replay)] == list(range(k + 1, len(everything) + 1))
    assert deltas_of(replay) == everything[k:]
    assert replay[-1]["type"] == "done"


def test_cancel_closes_the_backend_stream_and_ends_the_message_cancelled(
    stack: Stack, visitor: Visitor
) -> None:
    sim = stack.env["TGI_URL"]
    dropped_before = httpx.get(f"{sim}/sim/stats").json()["dropped"]
    message = visitor.post("/api/v1/conversations", {"sample": "agatha"}).json()["message"]
    visitor.events(message["stream_url"], limit=3)

    cancelled = visitor.post(f"/api/v1/messages/{message['id']}/cancel", {})

    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    events = visitor.events(message["stream_url"], after=0)
    assert events[-1]["type"] == "cancelled"
    deadline = time.monotonic() + 5
    while httpx.get(f"{sim}/sim/stats").json()["dropped"] == dropped_before:
        assert time.monotonic() < deadline, "the simulator never saw the stream close"
        time.sleep(0.05)
    metrics = httpx.get(f"{sim}/metrics").text
    assert 'tgi_request_failure{err="dropped"}' in metrics
    stored = visitor.get(f"/api/v1/messages/{message['id']}").json()
    assert stored["status"] == "cancelled"
    assert sections_from(deltas_of(events)) == stored["sections"]


def test_a_follow_up_turn_streams_in_the_same_conversation(visitor: Visitor) -> None:
    created = visitor.post("/api/v1/conversations", {"sample": "strawberry"}).json()
    wait_final(visitor, created["message"]["id"])

    follow_up = visitor.post(
        f"/api/v1/conversations/{created['id']}/messages", {"prompt": "Are you sure?"}
    )

    assert follow_up.status_code == 201
    events = visitor.events(follow_up.json()["message"]["stream_url"])
    assert events[-1]["type"] == "done"
    conversation = visitor.get(f"/api/v1/conversations/{created['id']}").json()
    assert [m["role"] for m in conversation["messages"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]


def test_a_second_submission_while_generating_is_refused(visitor: Visitor) -> None:
    first = visitor.post("/api/v1/conversations", {"sample": "agatha"}).json()

    second = visitor.post("/api/v1/conversations", {"prompt": "Hello?"})

    assert second.status_code == 409
    assert second.json()["error"]["code"] == "already_generating"
    visitor.post(f"/api/v1/messages/{first['message']['id']}/cancel", {})


def test_a_shared_link_streams_to_a_stranger(stack: Stack, visitor: Visitor) -> None:
    created = visitor.post("/api/v1/conversations", {"sample": "strawberry"}).json()
    stranger = Visitor(stack.base_url)

    shared = stranger.get(f"/api/v1/shared/{created['share_url'].split('/')[2]}").json()
    answer = shared["messages"][-1]
    events = stranger.events(answer["stream_url"], after=0, anonymous=True)

    assert events[-1]["type"] == "done"
    assert stranger.get(f"/api/v1/conversations/{created['id']}").status_code == 404
    stranger.close()


def test_a_stranger_cannot_watch_someone_elses_stream(stack: Stack, visitor: Visitor) -> None:
    message = visitor.post("/api/v1/conversations", {"sample": "strawberry"}).json()["message"]
    stranger = Visitor(stack.base_url)

    events = stranger.events(message["stream_url"])

    assert events == [{"type": "error", "code": "not_found", "message": "No such message."}]
    assert stranger.last_close_code == 4404
    stranger.close()
    wait_final(visitor, message["id"])


def test_the_home_page_and_the_conversation_page_render(visitor: Visitor) -> None:
    home = visitor.get("/")
    assert home.status_code == 200
    assert "Count the r" in home.text
    created = visitor.post("/api/v1/conversations", {"sample": "strawberry"}).json()
    wait_final(visitor, created["message"]["id"])

    page = visitor.get(f"/c/{created['id']}/")

    assert page.status_code == 200
    assert "Reflection" in page.text and "strawberry" in page.text


def test_many_viewers_of_a_shared_link_cost_the_backend_nothing_extra(
    stack: Stack, visitor: Visitor
) -> None:
    sim = stack.env["TGI_URL"]
    requests_before = httpx.get(f"{sim}/sim/stats").json()["requests"]
    created = visitor.post("/api/v1/conversations", {"sample": "agatha"}).json()
    token = created["share_url"].split("/")[2]
    stream_url = f"/ws/messages/{created['message']['id']}/?share={token}"
    visitor.events(stream_url, limit=5, anonymous=True)  # join once the answer is under way

    async def watch_all() -> list[list[dict]]:
        viewers = [visitor.aevents(stream_url, after=0, anonymous=True) for _ in range(150)]
        return await asyncio.gather(*viewers)

    everyone = asyncio.run(watch_all())

    owner_view = visitor.get(f"/api/v1/messages/{created['message']['id']}").json()
    for events in everyone:
        assert events[-1]["type"] == "done"
        assert sections_from(deltas_of(events)) == owner_view["sections"]
    assert httpx.get(f"{sim}/sim/stats").json()["requests"] == requests_before + 1
