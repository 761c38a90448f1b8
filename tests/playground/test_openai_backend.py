"""`openai+` backends over real HTTP: the simulator's chat route, the OpenAI client against it,
generations through services, health probes and /v1/models for the rotation, the operators'
backend panel, the TGI_URL syntax and the dev stack's options.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from django.contrib.auth import get_user_model
from django.test import Client

from devtools import stack
from devtools.stack import Stack
from inference.backends import check_health, fetch_info, http_client
from inference.chat import ChatPrompt
from inference.client import (
    BackendError,
    BackendProtocolError,
    BackendValidationError,
    GenerationError,
    IncompleteStreamError,
    OverloadedError,
    SamplingParams,
    StreamEvent,
)
from inference.openai_client import OpenAIClient
from inference.parser import parse
from inference.samples import get_sample
from playground import rotation, services, slots
from playground.env import env_backend_urls
from playground.models import Message
from playground.ops import scrape
from playground.realtime import redis_clients
from tests.support.simulator import running_simulator, serving, sim_stats

ROOT = Path(__file__).resolve().parents[2]
STRAWBERRY = get_sample("strawberry")
assert STRAWBERRY is not None
MODEL = "reflection-playground/simulator"

pytestmark = pytest.mark.django_db(transaction=True)


def chat(question: str) -> ChatPrompt:
    return ChatPrompt(question, (), "You are a world-class AI system.", model=MODEL)


async def collect(url: str, prompt: Any, params: SamplingParams | None = None) -> list[StreamEvent]:
    async with (
        OpenAIClient(url) as client,
        client.generate_stream(prompt, params or SamplingParams()) as events,
    ):
        return [event async for event in events]


def failing(url: str, prompt: Any, params: SamplingParams | None = None) -> BackendError:
    with pytest.raises(BackendError) as info:
        asyncio.run(collect(url, prompt, params))
    return info.value


# --------------------------------------------------------------------------- the simulator


def test_the_client_streams_a_sample_answer_with_its_tags_from_the_simulator() -> None:
    with running_simulator() as url:
        events = asyncio.run(collect(f"openai+{url}", chat(STRAWBERRY.prompt)))
        stats = sim_stats(url)

    text = "".join(event.text for event in events)
    assert text == STRAWBERRY.scripted_answer
    assert parse(text).as_dict()["reflections"], "the tags survived as special tokens"
    final = events[-1]
    assert final.finish_reason == "eos_token"
    assert final.generated_tokens == len(events)  # every token plus the end-of-turn token
    assert final.input_length and final.input_length > 10
    assert stats["completed"] == 1


def test_without_skip_special_tokens_false_the_tags_vanish_as_on_real_servers() -> None:
    body = {
        "messages": [{"role": "user", "content": STRAWBERRY.prompt}],
        "stream": True,
    }
    with (
        running_simulator() as url,
        httpx.stream("POST", f"{url}/v1/chat/completions", json=body) as r,
    ):
        raw = r.read().decode()
    contents = [
        json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
        for line in raw.splitlines()
        if line.startswith("data: {") and json.loads(line[6:])["choices"]
    ]
    text = "".join(contents)
    assert "<thinking>" not in text and "<output>" not in text
    assert "<|eot_id|>" not in text
    assert raw.rstrip().endswith("data: [DONE]")
    assert '"usage"' not in raw, "usage only when stream_options.include_usage"


def test_the_simulator_answers_a_non_streamed_chat_completion() -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
        "skip_special_tokens": False,
    }
    with running_simulator() as url:
        answer = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10).json()
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["choices"][0]["message"]["content"].startswith("<thinking>")
    assert answer["usage"]["completion_tokens"] == 5


def test_the_model_list_reports_the_context_like_vllm() -> None:
    with (
        running_simulator(max_total_tokens=4096, max_input_tokens=4000) as url,
        http_client(timeout=5) as client,
    ):
        info = fetch_info(f"openai+{url}", client)
        health = check_health(f"openai+{url}", client)
    assert info["model_id"] == MODEL
    assert (info["max_input_tokens"], info["max_total_tokens"]) == (4095, 4096)
    assert health.ok


def test_stop_sequences_and_max_tokens_set_the_finish_reason() -> None:
    with running_simulator() as url:
        by_length = asyncio.run(
            collect(f"openai+{url}", chat(STRAWBERRY.prompt), SamplingParams(max_new_tokens=4))
        )
        by_stop = asyncio.run(
            collect(f"openai+{url}", chat(STRAWBERRY.prompt), SamplingParams(stop=("</thinking>",)))
        )
    assert by_length[-1].finish_reason == "length" and by_length[-1].generated_tokens == 4
    assert by_stop[-1].finish_reason == "stop_sequence"
    assert "".join(e.text for e in by_stop).endswith("</thinking>")


def test_simulator_errors_arrive_as_backend_errors() -> None:
    with running_simulator() as url:
        unknown_model = failing(f"openai+{url}", ChatPrompt("hi", model="gpt-4"))
        too_long = failing(f"openai+{url}", chat("x " * 20000), SamplingParams(max_new_tokens=2000))
    assert isinstance(unknown_model, BackendProtocolError) and unknown_model.status_code == 404
    assert isinstance(too_long, BackendValidationError) and too_long.status_code == 400
    assert "maximum context length" in too_long.message

    with running_simulator(fault_error_after_tokens=5) as url:
        error = failing(f"openai+{url}", chat(STRAWBERRY.prompt))
    assert isinstance(error, GenerationError) and "simulated fault" in error.message

    with running_simulator(fault_drop_after_tokens=5) as url:
        error = failing(f"openai+{url}", chat(STRAWBERRY.prompt))
    assert isinstance(error, IncompleteStreamError)


def test_overload_is_a_429_before_the_stream() -> None:
    # The held answer takes most of a minute at 5 tokens/s: it still holds the only slot when
    # the second request comes, however slowly a busy machine gets there.
    with running_simulator(max_concurrent_requests=1, tokens_per_second=5) as url:
        body = {"messages": [{"role": "user", "content": "hold"}], "stream": True}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as held:
            next(held.iter_lines())
            error = failing(f"openai+{url}", chat("hi"))
            stats = sim_stats(url)
    assert isinstance(error, OverloadedError) and error.status_code == 429
    assert stats["overloaded"] == 1


def test_leaving_the_stream_is_seen_by_the_simulator_as_a_dropped_request() -> None:
    async def read_three(url: str) -> None:
        async with (
            OpenAIClient(url) as client,
            client.generate_stream(chat(STRAWBERRY.prompt)) as events,
        ):
            count = 0
            async for _ in events:
                count += 1
                if count == 3:
                    break

    with running_simulator(tokens_per_second=50) as url:
        asyncio.run(read_three(f"openai+{url}"))
        deadline = time.monotonic() + 5
        while sim_stats(url)["dropped"] == 0:
            assert time.monotonic() < deadline, "the simulator never saw the stream close"
            time.sleep(0.02)
        stats = sim_stats(url)
    assert stats["dropped"] == 1 and stats["active"] == 0


# --------------------------------------------------------------------------- the playground


@pytest.fixture
def openai_sim(settings: Any) -> Iterator[str]:
    with running_simulator() as url:
        backend = f"openai+{url}"
        settings.TGI_URLS = [backend]
        settings.GENERATION_CONCURRENCY = 2
        settings.GPU_METRICS_URLS = []
        yield backend


def test_a_generation_through_an_openai_backend_streams_the_sections(
    openai_sim: str, samples: Any, enqueued: list[str]
) -> None:
    message = services.submit(session_key="s1", client_ip="10.0.0.1", sample="strawberry")
    assert message.backend == openai_sim, "the prefixed URL is the backend's name"

    services.run_generation(message.pk)

    message.refresh_from_db()
    assert message.status == Message.Status.DONE, message.error_message
    assert message.sections == parse(STRAWBERRY.scripted_answer).as_dict()
    assert [d["seq"] for d in message.deltas] == list(range(1, len(message.deltas) + 1))
    assert message.finish_reason == "eos_token"
    assert message.model_id == MODEL
    assert message.model_info["max_total_tokens"] == 8192
    assert message.sampling["max_new_tokens"] <= 8192
    assert slots.slots_in_use(openai_sim) == 0
    provenance = services.message_provenance(message)
    assert provenance is not None
    assert provenance["backend"] == "backend-1" and provenance["simulated"] is True


def test_a_follow_up_sends_the_earlier_turn_as_messages(
    openai_sim: str, samples: Any, enqueued: list[str]
) -> None:
    first = services.submit(session_key="s1", client_ip="10.0.0.1", sample="strawberry")
    services.run_generation(first.pk)
    first.refresh_from_db()
    follow_up = services.submit(
        session_key="s1",
        client_ip="10.0.0.1",
        prompt="And in 'raspberry'?",
        conversation=first.conversation,
    )
    info = rotation.backend_info(openai_sim)

    prompt, dropped = services.build_model_prompt(follow_up, info, protocol="openai")
    services.run_generation(follow_up.pk)

    assert isinstance(prompt, ChatPrompt) and dropped == 0
    assert [m["role"] for m in prompt.messages] == ["system", "user", "assistant", "user"]
    assert prompt.messages[1]["content"] == STRAWBERRY.prompt
    assert prompt.messages[2]["content"] == first.sections["output"].strip()
    assert prompt.messages[3]["content"] == "And in 'raspberry'?"
    follow_up.refresh_from_db()
    assert follow_up.status == Message.Status.DONE
    assert "raspberry" in follow_up.sections["output"], "the simulator answered the last turn"


def test_build_model_prompt_gives_messages_for_openai_and_the_llama_string_for_tgi(
    openai_sim: str, samples: Any, enqueued: list[str]
) -> None:
    message = services.submit(session_key="s1", client_ip="10.0.0.1", sample="strawberry")
    info = {"model_id": "m", "max_input_tokens": 8191, "max_total_tokens": 8192}

    prompt, dropped = services.build_model_prompt(message, info, protocol="openai")
    native, _ = services.build_model_prompt(message, info)

    assert isinstance(prompt, ChatPrompt) and dropped == 0
    assert prompt.model == "m"
    assert [m["role"] for m in prompt.messages] == ["system", "user"]
    assert prompt.messages[-1]["content"] == STRAWBERRY.prompt
    assert native == str(prompt) and not isinstance(native, ChatPrompt)


def test_the_rotation_probes_and_reads_info_from_an_openai_backend(openai_sim: str) -> None:
    rotation.mark_down(openai_sim, "test")
    assert rotation.probe(openai_sim) is True
    assert slots.healthy_backends() == [openai_sim]
    info = rotation.backend_info(openai_sim)
    assert info["model_id"] == MODEL and info["protocol"] == "openai"
    assert (
        json.loads(redis_clients.redis_client().get(f"pg:backend:info:{openai_sim}"))["model_id"]
        == MODEL
    )


@contextmanager
def llama_cpp_like_server() -> Iterator[str]:
    """Like llama-cpp-python's server: /v1/models only, no /health and no /metrics."""

    async def models(request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": "SmolLM2-135M-Instruct", "owned_by": "me"}]}
        )

    app = web.Application()
    app.router.add_get("/v1/models", models)
    with serving(app, name="llama-cpp-like server") as url:
        yield f"openai+{url}"


def test_a_server_without_health_or_metrics_is_healthy_and_shows_its_model(
    settings: Any,
) -> None:
    with llama_cpp_like_server() as backend:
        settings.TGI_URLS = [backend]
        settings.GPU_METRICS_URLS = []
        rotation.mark_down(backend, "test")
        assert rotation.probe(backend) is True
        info = rotation.backend_info(backend)
        scraped = scrape.scrape_backends([backend])[backend]
    assert info["model_id"] == "SmolLM2-135M-Instruct"
    assert info["max_input_tokens"] == 2048
    assert scraped["health"] == "ok" and scraped["protocol"] == "openai"
    assert scraped["info"]["model_id"] == "SmolLM2-135M-Instruct"
    assert scraped["tgi"] is None, "no /metrics: nothing to show, and no crash"


def test_a_server_without_health_whose_model_list_is_slow_is_busy_not_down() -> None:
    async def generating_first(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)  # llama-cpp-python answers after the running generation
        return web.json_response({"object": "list", "data": [{"id": "SmolLM2-135M-Instruct"}]})

    app = web.Application()
    app.router.add_get("/v1/models", generating_first)
    with serving(app, name="busy llama-cpp-like server") as url, http_client(timeout=5) as client:
        started = time.monotonic()
        health = check_health(f"openai+{url}", client, busy_seconds=0.2)
        waited = time.monotonic() - started

    assert health.ok and health.reachable and health.detail == "ok"
    assert waited < 0.9, "the model list of a busy server is not waited for"


def staff_client() -> Client:
    user = get_user_model().objects.create_user(
        "operator", password="unused-password", is_staff=True
    )
    client = Client()
    client.force_login(user)
    return client


def test_the_ops_panel_shows_an_openai_backends_model_and_simulated_gpus(openai_sim: str) -> None:
    client = staff_client()

    data = client.get("/ops/data").json()
    page = client.get("/ops/")

    backend = data["backends"][0]
    assert backend["url"] == openai_sim and backend["protocol"] == "openai"
    assert backend["health"] == "ok"
    assert backend["info"]["model_id"] == MODEL
    assert backend["info"]["max_total_tokens"] == 8192
    assert backend["tgi"]["batch_current_size"] == 0, "the simulator's TGI metrics are read"
    assert backend["gpu"]["status"] == "ok" and backend["gpu"]["simulated"]
    assert page.status_code == 200
    assert MODEL in page.content.decode()


def test_vllm_and_llama_cpp_metrics_fill_the_queue_and_batch_figures() -> None:
    vllm = (
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{model_name="r"} 3.0\n'
        "# TYPE vllm:num_requests_waiting gauge\n"
        'vllm:num_requests_waiting{model_name="r"} 5.0\n'
    )
    llama = (
        "# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 1\n"
        "# TYPE llamacpp:requests_deferred gauge\nllamacpp:requests_deferred 2\n"
    )
    parsed = scrape.parse_tgi_metrics(vllm)
    assert (parsed["batch_current_size"], parsed["queue_size"]) == (3.0, 5.0)
    parsed = scrape.parse_tgi_metrics(llama)
    assert (parsed["batch_current_size"], parsed["queue_size"]) == (1.0, 2.0)


# --------------------------------------------------------------------------- configuration


def test_tgi_url_accepts_openai_prefixed_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TGI_URL", " openai+http://vllm:8000/ , http://tgi:80 ")
    assert env_backend_urls("TGI_URL") == ["openai+http://vllm:8000", "http://tgi:80"]
    monkeypatch.setenv("TGI_URL", "openai://vllm:8000")
    with pytest.raises(Exception, match="openai\\+"):
        env_backend_urls("TGI_URL")


def test_settings_start_with_an_openai_backend() -> None:
    env = {
        **os.environ,
        "TGI_URL": "openai+http://vllm:8000,http://tgi:80",
        "DJANGO_SETTINGS_MODULE": "playground.settings",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.TGI_URLS)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "['openai+http://vllm:8000', 'http://tgi:80']" in result.stdout


def test_the_dev_stack_checks_its_backend_options(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit, match="SIM_PROTOCOL"):
        Stack(env={"SIM_PROTOCOL": "grpc"}).start_simulator()
    with pytest.raises(SystemExit, match="LOCAL_MODEL"):
        Stack(env={"LOCAL_MODEL": "maybe"})
    with pytest.raises(SystemExit, match="unset TGI_URL"):
        Stack(env={"TGI_URL": "http://x"}, local_model=True).start_local_model()
    monkeypatch.setattr(stack, "local_model_available", lambda: False)
    with pytest.raises(SystemExit, match="make run-local-model"):
        Stack(env={}, local_model=True).start_local_model()
    assert Stack(env={"LOCAL_MODEL": "1"}).local_model is True
    assert Stack(env={}).local_model is False
    assert stack.local_model_path({"LOCAL_MODEL_PATH": "/m/x.gguf"}) == Path("/m/x.gguf")
