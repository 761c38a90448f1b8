"""The TGI simulator over real HTTP: wire format, validation, overload, disconnects, faults, timing.

Each test starts the aiohttp app on a free port on 127.0.0.1 and talks to it with httpx, inside
`asyncio.run` (no pytest-asyncio). Responses are checked against TGI's OpenAPI spec where it has
a schema for them, and against the byte layout of TGI's SSE events.

tests/fixtures/tgi-openapi.json is TGI's own OpenAPI spec, byte for byte `docs/openapi.json` of
text-generation-inference at commit db931fcf42da018a3657580c64bf2720f167f9ab (info.version
3.3.6-dev0; sha256 2b7899d65399cd86c393e6fb1fa4b028e678298d570a0a11ddbd8709894a159c).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from aiohttp import web

from inference import sim
from inference.chat import ChatPrompt
from inference.client import SamplingParams, TGIClient
from inference.openai_client import OpenAIClient
from inference.samples import SAMPLES, get_sample
from inference.sim import (
    EOT_TEXT,
    REFLECTION_TAGS,
    SimConfig,
    create_app,
    extract_last_user_message,
    generic_answer,
    tokenize_answer,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO_ROOT / "tests" / "fixtures" / "tgi-openapi.json"

# Fast enough that a full scripted answer (~300-900 tokens) streams in well under a second.
FAST = {"tokens_per_second": 20000.0, "validation_ms": 0.0, "prefill_tokens_per_second": 1e6}
STRAWBERRY = get_sample("strawberry")
assert STRAWBERRY is not None


def llama_prompt(user: str, history: list[tuple[str, str]] | None = None) -> str:
    """A Llama 3.1 chat prompt, as the playground builds it."""
    parts = [
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "You are a world-class AI system.<|eot_id|>"
    ]
    for question, answer in history or []:
        parts.append(f"<|start_header_id|>user<|end_header_id|>\n\n{question}<|eot_id|>")
        parts.append(f"<|start_header_id|>assistant<|end_header_id|>\n\n{answer}<|eot_id|>")
    parts.append(f"<|start_header_id|>user<|end_header_id|>\n\n{user}<|eot_id|>")
    parts.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(parts)


# ------------------------------------------------------------------------------------------
# Harness


@contextlib.asynccontextmanager
async def serve(config: SimConfig, **runner_kwargs: Any) -> AsyncIterator[str]:
    runner = web.AppRunner(create_app(config), **runner_kwargs)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def run_with_client(
    config: SimConfig,
    scenario: Callable[[httpx.AsyncClient], Awaitable[None]],
    **runner_kwargs: Any,
) -> None:
    async def main() -> None:
        async with (
            serve(config, **runner_kwargs) as base,
            httpx.AsyncClient(base_url=base, timeout=10.0) as client,
        ):
            await scenario(client)

    asyncio.run(main())


def fast(**overrides: Any) -> SimConfig:
    return SimConfig(**{**FAST, **overrides})


def split_events(raw: bytes) -> list[bytes]:
    """The data payloads of a TGI SSE body, checking the exact `data: …\\n\\n` framing."""
    assert raw.endswith(b"\n\n"), raw[-80:]
    blocks = raw[:-2].split(b"\n\n")
    payloads = []
    for block in blocks:
        assert block.startswith(b"data: "), block[:80]
        assert b"\n" not in block, block[:80]
        payloads.append(block[len(b"data: ") :])
    return payloads


async def stream(
    client: httpx.AsyncClient, body: dict[str, Any], path: str = "/generate_stream"
) -> tuple[httpx.Response, list[dict[str, Any]], bytes]:
    async with client.stream("POST", path, json=body) as response:
        raw = await response.aread()
    return response, [json.loads(payload) for payload in split_events(raw)], raw


async def stats(client: httpx.AsyncClient) -> dict[str, int]:
    response = await client.get("/sim/stats")
    assert response.status_code == 200
    return response.json()


async def metrics_text(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def metric_value(text: str, series: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split(" ")[-1])
    return None


async def wait_for(
    client: httpx.AsyncClient, predicate: Callable[[dict[str, int]], bool], timeout: float
) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        current = await stats(client)
        if predicate(current) or time.monotonic() > deadline:
            return current
        await asyncio.sleep(0.005)


# ------------------------------------------------------------------------------------------
# OpenAPI schemas


def _to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema: `nullable: true` becomes an explicit null."""
    if isinstance(node, list):
        return [_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _to_json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable"):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@pytest.fixture(scope="module")
def openapi() -> Callable[[str, Any], None]:
    spec = json.loads(SPEC_PATH.read_text())
    components = _to_json_schema(copy.deepcopy(spec["components"]))
    validators: dict[str, jsonschema.Draft202012Validator] = {}

    def validate(schema_name: str, instance: Any) -> None:
        if schema_name not in validators:
            assert schema_name in components["schemas"], schema_name
            schema = {"$ref": f"#/components/schemas/{schema_name}", "components": components}
            jsonschema.Draft202012Validator.check_schema(schema)
            validators[schema_name] = jsonschema.Draft202012Validator(schema)
        validators[schema_name].validate(instance)

    return validate


# ------------------------------------------------------------------------------------------
# The model's text and tokens


def test_tokenizer_pieces_and_special_tags() -> None:
    answer = STRAWBERRY.scripted_answer
    tokens = tokenize_answer(answer, random.Random(1))
    assert tokens[-1].text == EOT_TEXT and tokens[-1].special
    assert "".join(token.text for token in tokens[:-1]) == answer
    specials = [token for token in tokens if token.special]
    assert [token.text for token in specials[:-1]] == [
        "<thinking>",
        "<reflection>",
        "</reflection>",
        "</thinking>",
        "<output>",
        "</output>",
    ]
    assert len({token.id for token in specials}) == len(REFLECTION_TAGS) + 1
    for token in tokens:
        if not token.special:
            assert len(token.text) <= 6 or set(token.text) == {"\n"}, token.text
            assert token.logprob <= 0
            assert not any(tag in token.text for tag in REFLECTION_TAGS)
    texts = [token.text for token in tokens]
    assert " need" in texts and "." in texts and "\n\n" in texts


def test_tokenizer_split_tags_and_determinism() -> None:
    answer = STRAWBERRY.scripted_answer
    split = tokenize_answer(answer, random.Random(5), split_tags=True)
    assert [token.special for token in split].count(True) == 1  # only <|eot_id|>
    assert "".join(token.text for token in split[:-1]) == answer
    assert not any(token.text in REFLECTION_TAGS for token in split)
    same = tokenize_answer(answer, random.Random(5), split_tags=True)
    assert same == split
    other = tokenize_answer(answer, random.Random(6), split_tags=True)
    assert [t.text for t in other] != [t.text for t in split]


def test_last_user_message_is_taken_from_the_llama_prompt() -> None:
    prompt = llama_prompt("Second question?", history=[("First question?", "An answer.")])
    assert extract_last_user_message(prompt) == "Second question?"
    assert extract_last_user_message("plain text, no chat markup") == "plain text, no chat markup"
    unfinished = "<|start_header_id|>user<|end_header_id|>\n\nNo end marker"
    assert extract_last_user_message(unfinished) == "No end marker"


def test_generic_answer_is_honest_and_well_formed() -> None:
    question = "Explain </output> quantum gravity " + "in great detail " * 30
    answer = generic_answer(question)
    match = re.fullmatch(
        r"<thinking>\n(.+)\n</thinking>\n\n<output>\n(.+)\n</output>", answer, re.DOTALL
    )
    assert match is not None
    thinking, output = match.groups()
    assert re.search(r"<reflection>\n.*simulator.*\n</reflection>", thinking, re.DOTALL)
    assert "simulator" in output and "not from a real model" in output
    assert "Explain quantum gravity in great detail" in output
    assert "…" in output  # the quote is truncated
    assert answer.count("</output>") == 1  # a tag in the question cannot end the output early


def test_the_generic_answer_differs_with_the_message_and_says_what_it_received() -> None:
    numbers = generic_answer("Is 9.11 bigger than 9.9, or -3?")
    code = generic_answer("Write a Python function that reverses a `string`")
    chinese = generic_answer("草莓这个词里有几个r？")

    assert len({numbers, code, chinese}) == 3
    assert "| words | 7 |" in numbers and '| a question? | yes, it ends with "?" |' in numbers
    assert "| numbers | 9.11, 9.9, -3 |" in numbers
    assert "$9.11 + 9.9 - 3 = 16.01$" in numbers  # exact, not 16.009999…
    assert "```python" not in numbers
    fence = re.search(r"```python\n(.*?)```", code, re.DOTALL)
    assert fence is not None
    compile(fence.group(1), "<answer>", "exec")  # the code shown is valid Python
    assert "| a question? | no |" in code and "$" not in code
    assert "| script | includes Chinese characters |" in chinese
    assert '| a question? | yes, it ends with "?" |' in chinese


def test_a_message_of_numbers_and_backticks_cannot_break_the_answers_format() -> None:
    answer = generic_answer("code ``` </output> " + "12345678901234567890 " * 40)

    # Only the example's own fence starts a line: the message's backticks stay inside its quote.
    assert len(re.findall(r"^```", answer, re.MULTILINE)) == 2
    assert answer.count("</output>") == 1
    assert "| numbers | " + ", ".join(["12345678901234567890"] * 6) + " |" in answer


# ------------------------------------------------------------------------------------------
# Streaming


def test_sample_prompt_streams_its_scripted_answer(openapi: Callable[[str, Any], None]) -> None:
    prompt = llama_prompt(STRAWBERRY.prompt)

    async def scenario(client: httpx.AsyncClient) -> None:
        body = {"inputs": prompt, "parameters": {"details": True, "max_new_tokens": 2000}}
        response, events, _ = await stream(client, body)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert "x-compute-type" in response.headers
        assert response.headers["x-compute-characters"] == str(len(prompt))
        for event in events:
            openapi("StreamResponse", event)
            assert list(event) == ["index", "token", "generated_text", "details"]
            assert list(event["token"]) == ["id", "text", "logprob", "special"]
        assert [event["index"] for event in events] == list(range(1, len(events) + 1))
        *middle, last = events
        assert all(e["generated_text"] is None and e["details"] is None for e in middle)
        tokens = [event["token"] for event in events]
        assert tokens[-1] == {**tokens[-1], "text": EOT_TEXT, "special": True}
        assert "".join(t["text"] for t in tokens[:-1]) == STRAWBERRY.scripted_answer
        tags = [t["text"] for t in tokens if t["special"]]
        assert tags[0] == "<thinking>" and "<reflection>" in tags and tags[-2] == "</output>"
        # generated_text is decoded without special tokens: no tags, no <|eot_id|>.
        without_tags = re.sub(r"</?(?:thinking|reflection|output)>", "", STRAWBERRY.scripted_answer)
        assert last["generated_text"] == without_tags
        assert list(last["details"]) == [
            "finish_reason",
            "generated_tokens",
            "seed",
            "input_length",
        ]
        assert last["details"] == {
            "finish_reason": "eos_token",
            "generated_tokens": len(events),
            "seed": None,  # greedy: no sampling parameters
            "input_length": math.ceil(len(prompt.encode()) / 4),
        }

    run_with_client(fast(), scenario)


def test_event_bytes_are_compact_json_in_data_frames() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        sample = get_sample("weissensee")
        assert sample is not None
        body = {"inputs": sample.prompt, "parameters": {"max_new_tokens": 60}}
        async with client.stream("POST", "/generate_stream", json=body) as response:
            raw = await response.aread()
        assert raw.startswith(b'data: {"index":1,"token":{"id":')
        payloads = split_events(raw)
        assert len(payloads) == 60
        for payload in payloads:
            text = payload.decode("utf-8")
            compact = json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
            assert text == compact
        # Non-ASCII stays as UTF-8, as serde_json writes it.
        assert "ß".encode() in raw and b"\\u00df" not in raw

    run_with_client(fast(), scenario)


def test_unknown_prompt_gets_the_generic_simulator_answer() -> None:
    question = "What is the airspeed velocity of an unladen swallow?"

    async def scenario(client: httpx.AsyncClient) -> None:
        body = {"inputs": llama_prompt(question), "parameters": {"details": True}}
        _, events, _ = await stream(client, body)
        text = "".join(e["token"]["text"] for e in events if e["token"]["text"] != EOT_TEXT)
        assert text == generic_answer(question)
        assert question in text
        assert events[-1]["details"]["finish_reason"] == "eos_token"
        # Without max_new_tokens the budget is max_total_tokens - input, as in TGI.
        assert events[-1]["details"]["generated_tokens"] == len(events)

    run_with_client(fast(), scenario)


def test_multi_turn_prompt_answers_the_last_user_message() -> None:
    sample = get_sample("decimal-compare")
    assert sample is not None
    prompt = llama_prompt(sample.prompt, history=[(STRAWBERRY.prompt, "There are 3.")])

    async def scenario(client: httpx.AsyncClient) -> None:
        _, events, _ = await stream(client, {"inputs": prompt, "parameters": {}})
        text = "".join(e["token"]["text"] for e in events[:-1])
        assert text == sample.scripted_answer

    run_with_client(fast(), scenario)


def test_every_sample_streams_completely() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        results = await asyncio.gather(
            *(stream(client, {"inputs": s.prompt, "parameters": {}}) for s in SAMPLES)
        )
        for sample, (_, events, _) in zip(SAMPLES, results, strict=True):
            text = "".join(e["token"]["text"] for e in events[:-1])
            assert text == sample.scripted_answer, sample.slug

    run_with_client(fast(), scenario)


def test_stop_sequence_and_max_new_tokens_set_finish_reason() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        body = {
            "inputs": STRAWBERRY.prompt,
            "parameters": {"details": True, "stop": ["nope", " letter"]},
        }
        _, events, _ = await stream(client, body)
        last = events[-1]
        assert last["details"]["finish_reason"] == "stop_sequence"
        assert " letter".endswith(last["token"]["text"])  # the word is cut into two tokens
        # TGI keeps the stop sequence in the output.
        assert last["generated_text"].endswith("how many times the letter")

        body = {"inputs": STRAWBERRY.prompt, "parameters": {"details": True, "max_new_tokens": 7}}
        _, events, _ = await stream(client, body)
        assert len(events) == 7
        assert events[-1]["details"]["finish_reason"] == "length"
        assert events[-1]["details"]["generated_tokens"] == 7
        assert events[-1]["generated_text"] == "".join(
            e["token"]["text"] for e in events if not e["token"]["special"]
        )

        # details=false: the last event still has generated_text, but details is null.
        _, events, _ = await stream(
            client, {"inputs": STRAWBERRY.prompt, "parameters": {"max_new_tokens": 3}}
        )
        assert events[-1]["details"] is None and events[-1]["generated_text"] is not None

    run_with_client(fast(), scenario)


def test_seed_makes_streams_repeatable() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        params = {"details": True, "do_sample": True, "seed": 1234}
        body = {"inputs": STRAWBERRY.prompt, "parameters": params}
        _, first, _ = await stream(client, body)
        _, second, _ = await stream(client, body)
        assert [e["token"] for e in first] == [e["token"] for e in second]
        assert first[-1]["details"]["seed"] == 1234
        _, other, _ = await stream(client, {**body, "parameters": {**params, "seed": 99}})
        assert [e["token"]["text"] for e in other] != [e["token"]["text"] for e in first]

    run_with_client(fast(), scenario)


def test_compat_route_streams_and_returns_full_text_by_default() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        body = {"inputs": "hello", "parameters": {"max_new_tokens": 4}, "stream": True}
        response, events, _ = await stream(client, body, path="/")
        assert response.headers["content-type"] == "text/event-stream"
        assert len(events) == 4
        assert events[-1]["generated_text"].startswith("hello")
        params = {"max_new_tokens": 4, "return_full_text": False}
        _, events, _ = await stream(client, {**body, "parameters": params}, path="/")
        assert not events[-1]["generated_text"].startswith("hello")

    run_with_client(fast(), scenario)


# ------------------------------------------------------------------------------------------
# Non-streaming


def test_generate_returns_json_with_details(openapi: Callable[[str, Any], None]) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        body = {"inputs": STRAWBERRY.prompt, "parameters": {"details": True, "temperature": 0.7}}
        response = await client.post("/generate", json=body)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        for header in ("x-compute-type", "x-total-time", "x-inference-time", "x-time-per-token"):
            assert header in response.headers
        payload = response.json()
        openapi("GenerateResponse", payload)
        assert list(payload) == ["generated_text", "details"]
        details = payload["details"]
        assert list(details) == ["finish_reason", "generated_tokens", "seed", "prefill", "tokens"]
        assert details["finish_reason"] == "eos_token"
        assert isinstance(details["seed"], int)  # sampling, so the seed is reported
        assert details["prefill"] == []
        assert details["generated_tokens"] == len(details["tokens"])
        assert response.headers["x-generated-tokens"] == str(details["generated_tokens"])
        assert "".join(t["text"] for t in details["tokens"][:-1]) == STRAWBERRY.scripted_answer
        assert "<thinking>" not in payload["generated_text"]
        assert "3" in payload["generated_text"]

        plain = (await client.post("/generate", json={"inputs": "hi"})).json()
        assert list(plain) == ["generated_text"]  # details omitted, not null

    run_with_client(fast(), scenario)


def test_compat_route_returns_a_list(openapi: Callable[[str, Any], None]) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        body = {"inputs": "Say hi", "parameters": {"max_new_tokens": 5, "details": True}}
        response = await client.post("/", json=body)
        assert response.status_code == 200
        payload = response.json()
        assert isinstance(payload, list) and len(payload) == 1
        openapi("GenerateResponse", payload[0])
        assert payload[0]["generated_text"].startswith("Say hi")  # return_full_text default
        assert payload[0]["details"]["finish_reason"] == "length"

        body["parameters"]["return_full_text"] = False
        payload = (await client.post("/", json=body)).json()
        assert not payload[0]["generated_text"].startswith("Say hi")

    run_with_client(fast(), scenario)


def test_best_of_returns_extra_sequences_and_takes_permits() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        params = {"best_of": 2, "do_sample": True, "details": True, "max_new_tokens": 5}
        response = await client.post("/generate", json={"inputs": "x", "parameters": params})
        assert response.status_code == 200
        details = response.json()["details"]
        assert len(details["best_of_sequences"]) == 1
        assert details["best_of_sequences"][0]["generated_tokens"] == 5
        assert (await stats(client))["peak_active"] == 2

    run_with_client(fast(), scenario)


# ------------------------------------------------------------------------------------------
# Validation

LIMITS = {"max_input_tokens": 100, "max_total_tokens": 200}
VALIDATION_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("empty-inputs", {"inputs": "", "parameters": {}}, "`inputs` cannot be empty"),
    (
        "temperature-zero",
        {"inputs": "hi", "parameters": {"temperature": 0}},
        "`temperature` must be strictly positive",
    ),
    (
        "temperature-negative",
        {"inputs": "hi", "parameters": {"temperature": -0.5}},
        "`temperature` must be strictly positive",
    ),
    (
        "top-p-one",
        {"inputs": "hi", "parameters": {"top_p": 1.0}},
        "`top_p` must be > 0.0 and < 1.0",
    ),
    ("top-p-zero", {"inputs": "hi", "parameters": {"top_p": 0}}, "`top_p` must be > 0.0 and < 1.0"),
    (
        "top-k-zero",
        {"inputs": "hi", "parameters": {"top_k": 0}},
        "`top_k` must be strictly positive",
    ),
    (
        "top-k-negative",
        {"inputs": "hi", "parameters": {"top_k": -3}},
        "`top_k` must be strictly positive",
    ),
    (
        "max-new-tokens-zero",
        {"inputs": "hi", "parameters": {"max_new_tokens": 0}},
        "`max_new_tokens` must be strictly positive",
    ),
    (
        "five-stop-sequences",
        {"inputs": "hi", "parameters": {"stop": ["a", "b", "c", "d", "e"]}},
        "`stop` supports up to 4 stop sequences. Given: 5",
    ),
    (
        "input-too-long",
        {"inputs": "x" * 404, "parameters": {"max_new_tokens": 1}},
        "`inputs` must have less than 100 tokens. Given: 101",
    ),
    (
        "total-too-long",
        {"inputs": "x" * 200, "parameters": {"max_new_tokens": 151}},
        "`inputs` tokens + `max_new_tokens` must be <= 200. "
        "Given: 50 `inputs` tokens and 151 `max_new_tokens`",
    ),
]
STREAM_ONLY_CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "best-of-on-stream",
        {"inputs": "hi", "parameters": {"best_of": 2, "do_sample": True}},
        "`best_of` != 1 is not supported when streaming tokens",
    ),
    (
        "decoder-input-details-on-stream",
        {"inputs": "hi", "parameters": {"decoder_input_details": True}},
        "`decoder_input_details` == true is not supported when streaming tokens",
    ),
]


@pytest.mark.parametrize(
    ("body", "message"),
    [case[1:] for case in VALIDATION_CASES + STREAM_ONLY_CASES],
    ids=[case[0] for case in VALIDATION_CASES + STREAM_ONLY_CASES],
)
def test_stream_validation_error_is_an_event(
    body: dict[str, Any], message: str, openapi: Callable[[str, Any], None]
) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        response, events, raw = await stream(client, body)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert len(events) == 1
        openapi("ErrorResponse", events[0])
        expected = {"error": f"Input validation error: {message}", "error_type": "validation"}
        assert events[0] == expected
        assert raw == b"data: " + json.dumps(expected, separators=(",", ":")).encode() + b"\n\n"
        text = await metrics_text(client)
        assert metric_value(text, 'tgi_request_failure{err="validation"}') == 1
        assert metric_value(text, "tgi_request_count") == 1
        assert (await stats(client))["active"] == 0

    run_with_client(fast(**LIMITS), scenario)


@pytest.mark.parametrize(
    ("body", "message"),
    [case[1:] for case in VALIDATION_CASES],
    ids=[case[0] for case in VALIDATION_CASES],
)
def test_generate_validation_error_is_422(
    body: dict[str, Any], message: str, openapi: Callable[[str, Any], None]
) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        for path in ("/generate", "/"):
            response = await client.post(path, json=body)
            assert response.status_code == 422
            assert response.headers["content-type"].startswith("application/json")
            openapi("ErrorResponse", response.json())
            assert response.json() == {
                "error": f"Input validation error: {message}",
                "error_type": "validation",
            }

    run_with_client(fast(**LIMITS), scenario)


def test_generate_best_of_rules() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        cases = [
            ({"best_of": 2}, "you must use sampling when `best_of` is > 1"),
            ({"best_of": 3, "do_sample": True}, "`best_of` must be > 0 and <= 2. Given: 3"),
            (
                {"best_of": 2, "do_sample": True, "seed": 1},
                "`seed` must not be set when `best_of` > 1",
            ),
        ]
        for params, message in cases:
            response = await client.post("/generate", json={"inputs": "hi", "parameters": params})
            assert response.status_code == 422
            assert response.json()["error"] == f"Input validation error: {message}"

    run_with_client(fast(), scenario)


def test_malformed_requests_get_plain_text_like_axum() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        for path in ("/generate", "/generate_stream", "/"):
            headers = {"content-type": "application/json"}
            response = await client.post(path, content=b'{"inputs": "hi"', headers=headers)
            assert response.status_code == 400
            assert response.headers["content-type"].startswith("text/plain")
            assert response.text.startswith("Failed to parse the request body as JSON")

            response = await client.post(path, json={"parameters": {}})
            assert response.status_code == 422
            assert response.headers["content-type"].startswith("text/plain")
            assert "missing field `inputs`" in response.text

            response = await client.post(path, json={"inputs": 5})
            assert response.status_code == 422
            assert response.headers["content-type"].startswith("text/plain")

            response = await client.post(
                path, json={"inputs": "hi", "parameters": {"max_new_tokens": -1}}
            )
            assert response.status_code == 422
            assert response.headers["content-type"].startswith("text/plain")

            response = await client.post(path, content=b'{"inputs": "hi"}')
            assert response.status_code == 415

            nan = b'{"inputs": "hi", "parameters": {"temperature": NaN}}'
            response = await client.post(path, content=nan, headers=headers)
            assert response.status_code == 400

        # None of these reached TGI's handlers, so nothing was counted.
        assert metric_value(await metrics_text(client), "tgi_request_count") is None

    run_with_client(fast(), scenario)


# ------------------------------------------------------------------------------------------
# Overload, disconnects


def test_overload_fails_at_once_and_is_never_queued(openapi: Callable[[str, Any], None]) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        body = {"inputs": STRAWBERRY.prompt, "parameters": {"max_new_tokens": 200}}
        async with (
            client.stream("POST", "/generate_stream", json=body) as first,
            client.stream("POST", "/generate_stream", json=body) as second,
        ):
            # Both hold a slot once their first token has arrived. (Keep the iterators: a
            # collected one closes its response, which would free the slot.)
            iterators = [first.aiter_bytes(), second.aiter_bytes()]
            for iterator in iterators:
                assert (await anext(iterator)).startswith(b"data: {")
            started = time.monotonic()
            response, events, _ = await stream(client, body)
            elapsed = time.monotonic() - started
            assert response.status_code == 200
            assert events == [{"error": "Model is overloaded", "error_type": "overloaded"}]
            openapi("ErrorResponse", events[0])
            assert elapsed < 1.5  # refused at once, never queued

            response = await client.post("/generate", json=body)
            assert response.status_code == 429
            assert response.json() == {"error": "Model is overloaded", "error_type": "overloaded"}
            current = await stats(client)
            assert current["active"] == 2 and current["overloaded"] == 2
        text = await metrics_text(client)
        assert metric_value(text, 'tgi_request_failure{err="overloaded"}') == 2

    run_with_client(fast(tokens_per_second=20, max_concurrent_requests=2), scenario)


def test_client_disconnect_mid_stream_is_dropped_within_a_step() -> None:
    step = 1 / 50

    async def scenario(client: httpx.AsyncClient) -> None:
        body = {"inputs": STRAWBERRY.prompt, "parameters": {}}
        text = await metrics_text(client)
        assert metric_value(text, 'tgi_request_failure{err="dropped"}') is None
        async with client.stream("POST", "/generate_stream", json=body) as response:
            received = 0
            async for chunk in response.aiter_bytes():
                received += chunk.count(b"data: ")
                if received >= 3:
                    break
            assert (await stats(client))["active"] == 1
            closed_at = time.monotonic()
        current = await wait_for(client, lambda s: s["dropped"] == 1 and s["active"] == 0, 2.0)
        noticed = time.monotonic() - closed_at
        assert current["dropped"] == 1 and current["active"] == 0 and current["batch"] == 0
        assert current["completed"] == 0
        assert noticed < step + 1.0
        text = await metrics_text(client)
        assert metric_value(text, 'tgi_request_failure{err="dropped"}') == 1
        assert metric_value(text, "tgi_batch_current_size") == 0
        # The freed slot is usable again.
        _, events, _ = await stream(client, {"inputs": "hi", "parameters": {"max_new_tokens": 2}})
        assert len(events) == 2

    run_with_client(fast(tokens_per_second=1 / step, max_concurrent_requests=1), scenario)


def test_disconnect_while_waiting_for_first_token_with_handler_cancellation() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        body = {"inputs": STRAWBERRY.prompt, "parameters": {}}
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/generate_stream", json=body, timeout=0.2)
        current = await wait_for(client, lambda s: s["dropped"] == 1, 1.0)
        assert current["dropped"] == 1 and current["active"] == 0 and current["queued"] == 0

    config = fast(fault_slow_start_seconds=5.0)
    run_with_client(config, scenario, handler_cancellation=True)


# Short streaming requests on both routes, and a line that only their last event has.
STREAMS = {
    "/generate_stream": (
        {"inputs": "hi", "parameters": {"max_new_tokens": 3, "details": True}},
        '"details":{',
    ),
    "/v1/chat/completions": (
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True},
        "data: [DONE]",
    ),
}


@pytest.mark.parametrize("path", sorted(STREAMS))
def test_a_stream_is_active_until_its_response_has_ended(path: str) -> None:
    body, last_line = STREAMS[path]

    async def scenario(client: httpx.AsyncClient) -> None:
        async with client.stream("POST", path, json=body) as response:
            lines = response.aiter_lines()
            async for line in lines:
                if last_line in line:
                    break
            last_event_at = time.monotonic()
            assert (await stats(client))["active"] == 1
            async for _ in lines:
                pass
            ended = time.monotonic() - last_event_at
            current = await stats(client)
        assert current["active"] == 0 and current["completed"] == 1
        assert ended >= 0.25

    run_with_client(fast(stream_end_ms=300), scenario)


@pytest.mark.parametrize("handler_cancellation", [False, True])
def test_a_client_that_hangs_up_at_the_final_event_finds_its_slot_still_taken(
    handler_cancellation: bool,
) -> None:
    body, last_line = STREAMS["/generate_stream"]

    async def scenario(client: httpx.AsyncClient) -> None:
        async with client.stream("POST", "/generate_stream", json=body) as response:
            async for line in response.aiter_lines():
                if last_line in line:
                    break
        # The connection is closed; the next request goes out at once.
        _, events, _ = await stream(client, body)
        assert events == [{"error": "Model is overloaded", "error_type": "overloaded"}]
        current = await wait_for(client, lambda s: s["active"] == 0, 2.0)
        assert current["active"] == 0 and current["completed"] == 1 and current["dropped"] == 0
        _, events, _ = await stream(client, body)
        assert events[-1]["details"]["finish_reason"] == "length"

    config = fast(max_concurrent_requests=1, stream_end_ms=300)
    run_with_client(config, scenario, handler_cancellation=handler_cancellation)


@pytest.mark.parametrize("client_class", [TGIClient, OpenAIClient])
def test_clients_that_read_to_the_end_run_requests_back_to_back_without_overload(
    client_class: type[TGIClient | OpenAIClient],
) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        async with client_class(str(client.base_url)) as backend:
            for _ in range(2):
                prompt = ChatPrompt("hi")
                async with backend.generate_stream(
                    prompt, SamplingParams(max_new_tokens=3)
                ) as events:
                    finish = [event.finish_reason async for event in events][-1]
                assert finish == "length"
        current = await stats(client)
        assert current["overloaded"] == 0 and current["completed"] == 2

    run_with_client(fast(max_concurrent_requests=1, stream_end_ms=300), scenario)


def test_client_leaving_a_non_streamed_request_is_dropped() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/generate", json={"inputs": "hi", "parameters": {}}, timeout=0.1)
        current = await wait_for(client, lambda s: s["dropped"] == 1, 1.0)
        assert current["dropped"] == 1 and current["active"] == 0

    run_with_client(fast(tokens_per_second=50), scenario)


# ------------------------------------------------------------------------------------------
# Fault injection


def test_fault_error_mid_stream(openapi: Callable[[str, Any], None]) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        _, events, _ = await stream(client, {"inputs": STRAWBERRY.prompt, "parameters": {}})
        assert len(events) == 6
        assert all("token" in event for event in events[:5])
        openapi("ErrorResponse", events[-1])
        assert events[-1]["error_type"] == "generation"
        assert events[-1]["error"].startswith("Request failed during generation: ")

        response = await client.post("/generate", json={"inputs": "hi", "parameters": {}})
        assert response.status_code == 424
        assert response.json()["error_type"] == "generation"
        text = await metrics_text(client)
        assert metric_value(text, 'tgi_request_failure{err="generation"}') == 2
        assert (await stats(client))["active"] == 0

    run_with_client(fast(fault_error_after_tokens=5), scenario)


def test_fault_dropped_connection_has_no_final_event() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        raw = b""
        with contextlib.suppress(httpx.RemoteProtocolError):
            async with client.stream(
                "POST", "/generate_stream", json={"inputs": "hi", "parameters": {}}
            ) as response:
                assert response.status_code == 200
                async for chunk in response.aiter_bytes():
                    raw += chunk
        events = [json.loads(p) for p in split_events(raw)]
        assert len(events) == 4
        assert all(e["generated_text"] is None and "error" not in e for e in events)

        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("/generate", json={"inputs": "hi", "parameters": {}})
        current = await stats(client)
        assert current["faults"] == 2 and current["active"] == 0 and current["completed"] == 0

    run_with_client(fast(fault_drop_after_tokens=4), scenario)


def test_fault_slow_start_delays_the_first_token() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        started = time.monotonic()
        _, events, _ = await stream(client, {"inputs": "hi", "parameters": {"max_new_tokens": 2}})
        assert len(events) == 2
        assert time.monotonic() - started >= 0.15
        queue = metric_value(await metrics_text(client), "tgi_request_queue_duration_sum")
        assert queue is not None and 0.15 <= queue < 0.3

    run_with_client(fast(fault_slow_start_seconds=0.15), scenario)


def test_fault_rate_picks_requests_deterministically() -> None:
    async def outcomes(client: httpx.AsyncClient) -> list[bool]:
        results = []
        for _ in range(20):
            body = {"inputs": "hi", "parameters": {"max_new_tokens": 3}}
            _, events, _ = await stream(client, body)
            results.append("error" in events[-1])
        return results

    seen: list[list[bool]] = []

    async def scenario(client: httpx.AsyncClient) -> None:
        seen.append(await outcomes(client))

    config = {"fault_error_after_tokens": 1, "fault_rate": 0.5, "seed": 7}
    run_with_client(fast(**config), scenario)
    run_with_client(fast(**config), scenario)
    assert seen[0] == seen[1]
    assert 0 < sum(seen[0]) < 20
    run_with_client(fast(**{**config, "fault_rate": 0.0}), scenario)
    assert not any(seen[2])


# ------------------------------------------------------------------------------------------
# Benchmark and parser helpers


def test_stamp_emission_times_prefixes_each_ordinary_token_with_its_send_time() -> None:
    stamp = re.compile(r"\A⟦(\d+\.\d{6})⟧")

    async def scenario(client: httpx.AsyncClient) -> None:
        before = time.time()
        body = {"inputs": STRAWBERRY.prompt, "parameters": {"details": True}}
        _, events, _ = await stream(client, body)
        after = time.time()
        stamps = []
        for event in events:
            token = event["token"]
            match = stamp.match(token["text"])
            if token["special"]:
                assert match is None
                continue
            assert match is not None, token
            stamps.append(float(match[1]))
        assert stamps == sorted(stamps)
        assert before - 0.01 <= stamps[0] and stamps[-1] <= after + 0.01
        unstamped = "".join(stamp.sub("", event["token"]["text"]) for event in events[:-1])
        assert unstamped == STRAWBERRY.scripted_answer
        assert "⟦" not in events[-1]["generated_text"]

    run_with_client(fast(stamp_emission_times=True), scenario)


def test_split_tags_emits_tags_as_ordinary_pieces() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        _, events, _ = await stream(client, {"inputs": STRAWBERRY.prompt, "parameters": {}})
        tokens = [event["token"] for event in events]
        assert [t["special"] for t in tokens].count(True) == 1 and tokens[-1]["special"]
        assert not any(t["text"] in REFLECTION_TAGS for t in tokens)
        text = "".join(t["text"] for t in tokens[:-1])
        assert text == STRAWBERRY.scripted_answer
        # Not special, so the tags stay in generated_text.
        assert events[-1]["generated_text"] == STRAWBERRY.scripted_answer

    run_with_client(fast(split_tags=True), scenario)


# ------------------------------------------------------------------------------------------
# Latency model


async def _raw_stream(base: str, body: dict[str, Any]) -> bytes:
    """A bare HTTP/1.1 client: httpx costs far more CPU per event than the server does."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    data = json.dumps(body).encode()
    writer.write(
        b"POST /generate_stream HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data)
    )
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    return raw


async def _per_token_seconds(base: str, n_streams: int, tokens: int) -> tuple[float, float]:
    """Time per token over n concurrent streams: (seen by the client, reported by /metrics)."""

    async def one() -> float:
        body = {"inputs": STRAWBERRY.prompt, "parameters": {"max_new_tokens": tokens}}
        host, port = base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        data = json.dumps(body).encode()
        writer.write(
            b"POST /generate_stream HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(data), data)
        )
        arrivals: list[float] = []
        while len(arrivals) < tokens:
            chunk = await reader.read(65536)
            assert chunk
            arrivals += [time.monotonic()] * chunk.count(b"data: {")
        writer.close()
        return (arrivals[-1] - arrivals[0]) / (tokens - 1)

    async with httpx.AsyncClient(base_url=base) as client:
        before = metric_value(await metrics_text(client), "tgi_request_inference_duration_sum")
        seen = await asyncio.gather(*(one() for _ in range(n_streams)))
        await wait_for(client, lambda s: s["active"] == 0, 1.0)
        after = metric_value(await metrics_text(client), "tgi_request_inference_duration_sum")
    reported = ((after or 0.0) - (before or 0.0)) / n_streams / tokens
    return sum(seen) / n_streams, reported


def test_continuous_batching_slows_each_stream_as_the_batch_grows() -> None:
    async def main() -> None:
        config = SimConfig(tokens_per_second=200, batch_slowdown=0.1, validation_ms=0)
        async with serve(config) as base:
            single, single_reported = await _per_token_seconds(base, 1, 40)
            four, four_reported = await _per_token_seconds(base, 4, 40)
            async with httpx.AsyncClient(base_url=base) as client:
                assert (await stats(client))["peak_active"] == 4
        # t(1) = 5 ms and t(4) = 5 ms * (1 + 0.1 * 3) = 6.5 ms. The server's own figures are
        # steadier than the client's on a busy machine, so they get the tighter bounds.
        assert 0.0045 < single_reported < 0.0060
        assert 0.0060 < four_reported < 0.0078
        assert 1.15 < four_reported / single_reported < 1.45
        assert 0.004 < single < 0.008 and 0.0055 < four < 0.010
        assert four > single

    asyncio.run(main())


def test_engine_keeps_time_with_a_hundred_and_twenty_streams() -> None:
    async def main() -> None:
        config = SimConfig(tokens_per_second=50, batch_slowdown=0.0, validation_ms=0)
        async with serve(config) as base:
            body = {"inputs": "hi", "parameters": {"max_new_tokens": 20}}
            started = time.monotonic()
            results = await asyncio.gather(*(_raw_stream(base, body) for _ in range(120)))
            elapsed = time.monotonic() - started
            assert all(raw.count(b"data: {") == 20 for raw in results)
            # 20 tokens in about 0.4 s, however many streams share the steps (the bound is
            # loose for busy CI machines; the per-token check below is the precise one).
            assert elapsed < 5.0
            async with httpx.AsyncClient(base_url=base) as client:
                text = await metrics_text(client)
                current = await stats(client)
        assert current["completed"] == 120 and current["active"] == 0
        assert current["peak_active"] >= 100
        per_token = metric_value(text, "tgi_request_mean_time_per_token_duration_sum")
        assert per_token is not None
        mean = per_token / 120
        assert 0.018 < mean < 0.03, mean  # ideal: 19 steps * 20 ms / 20 tokens = 19 ms

    asyncio.run(main())


def test_time_to_first_token_grows_with_prompt_length() -> None:
    async def ttft(client: httpx.AsyncClient, inputs: str) -> float:
        started = time.monotonic()
        body = {"inputs": inputs, "parameters": {"max_new_tokens": 1}}
        await stream(client, body)
        return time.monotonic() - started

    async def scenario(client: httpx.AsyncClient) -> None:
        # The quickest of three each: one stall of the test process (a busy CI machine held
        # the first request for 0.3 s once) must not pass for the simulator's prefill.
        short = min([await ttft(client, "hi") for _ in range(3)])
        # 200 tokens: 0.2 s of prefill at 1000 tok/s
        long = min([await ttft(client, "word " * 160) for _ in range(3)])
        assert 0.1 < long - short < 0.6

    config = SimConfig(prefill_tokens_per_second=1000, validation_ms=0, tokens_per_second=1000)
    run_with_client(config, scenario)


# ------------------------------------------------------------------------------------------
# Info, health, metrics


def test_info_health_and_models(openapi: Callable[[str, Any], None]) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        info = (await client.get("/info")).json()
        openapi("Info", info)
        assert list(info) == [
            "model_id",
            "model_sha",
            "model_pipeline_tag",
            "max_concurrent_requests",
            "max_best_of",
            "max_stop_sequences",
            "max_input_tokens",
            "max_total_tokens",
            "validation_workers",
            "max_client_batch_size",
            "router",
            "version",
            "sha",
            "docker_label",
        ]
        assert "simulator" in info["model_id"]
        assert info["max_concurrent_requests"] == 7
        assert info["router"] == "text-generation-router"
        for path in ("/health", "/ping", "/"):
            response = await client.get(path)
            assert response.status_code == 200 and response.content == b""
        models = (await client.get("/v1/models")).json()
        assert models["data"][0]["id"] == info["model_id"]

    run_with_client(fast(max_concurrent_requests=7), scenario)


def test_metrics_use_tgi_names_types_and_buckets() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        text = await metrics_text(client)
        assert "tgi_request_count" not in text  # a counter appears after its first record
        assert "# TYPE tgi_queue_size gauge" in text
        await stream(client, {"inputs": "hi", "parameters": {"max_new_tokens": 3}})
        await stream(client, {"inputs": "", "parameters": {}})
        text = await metrics_text(client)
        assert "_total" not in text
        types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
        for counter in ("tgi_request_count", "tgi_request_success", "tgi_request_failure"):
            assert types[counter] == "counter"
        for gauge in ("tgi_queue_size", "tgi_batch_current_size", "tgi_batch_current_max_tokens"):
            assert types[gauge] == "gauge"
        for histogram in (
            "tgi_request_duration",
            "tgi_request_queue_duration",
            "tgi_request_inference_duration",
            "tgi_request_mean_time_per_token_duration",
            "tgi_request_generated_tokens",
            "tgi_request_input_length",
        ):
            assert types[histogram] == "histogram"
        assert metric_value(text, "tgi_request_count") == 2
        assert metric_value(text, "tgi_request_success") == 1
        assert metric_value(text, 'tgi_request_failure{err="validation"}') == 1
        assert metric_value(text, "tgi_request_generated_tokens_sum") == 3
        buckets = re.findall(r'^tgi_request_duration_bucket\{le="([^"]+)"\} (\d+)$', text, re.M)
        assert len(buckets) == 36 and buckets[-1] == ("+Inf", "1")
        bounds = [float(le) for le, _ in buckets[:-1]]
        expected = [0.00015 * 1.5 ** (n - 1) for n in range(1, 36)]
        assert bounds == pytest.approx(expected)
        input_buckets = re.findall(r'^tgi_request_input_length_bucket\{le="([^"]+)"\}', text, re.M)
        assert len(input_buckets) == 101 and float(input_buckets[0]) == pytest.approx(81.91)

    run_with_client(fast(), scenario)


def test_gauges_follow_queue_and_batch() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        slow = {"inputs": "x" * 400, "parameters": {"max_new_tokens": 100}}
        async with client.stream("POST", "/generate_stream", json=slow):
            await asyncio.sleep(0.05)  # 100 tokens of prefill take 0.1 s
            text = await metrics_text(client)
            assert metric_value(text, "tgi_queue_size") == 1
            assert metric_value(text, "tgi_batch_current_size") == 0
            await asyncio.sleep(0.15)
            text = await metrics_text(client)
            assert metric_value(text, "tgi_queue_size") == 0
            assert metric_value(text, "tgi_batch_current_size") == 1
            assert metric_value(text, "tgi_batch_current_max_tokens") == 200

    config = SimConfig(prefill_tokens_per_second=1000, tokens_per_second=20, validation_ms=0)
    run_with_client(config, scenario)


def test_keep_alive_comment_while_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("inference.sim.engine.KEEP_ALIVE_SECONDS", 0.05)

    async def scenario(client: httpx.AsyncClient) -> None:
        body = {"inputs": "hi", "parameters": {"max_new_tokens": 1}}
        async with client.stream("POST", "/generate_stream", json=body) as response:
            raw = await response.aread()
        assert raw.startswith(b":\n\n")
        assert raw.replace(b":\n\n", b"").startswith(b"data: {")

    run_with_client(fast(fault_slow_start_seconds=0.2), scenario)


# ------------------------------------------------------------------------------------------
# The command line


def test_command_line_serves_and_stops_on_sigterm() -> None:
    command = [
        sys.executable,
        "-m",
        "inference.sim",
        "--port",
        "0",
        "--tokens-per-second",
        "500",
        "--max-concurrent-requests",
        "3",
        "--model-id",
        "sim/cli-test",
        "--stamp-emission-times",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        match = re.fullmatch(r"simulator listening on (http://127\.0\.0\.1:(\d+))", line)
        assert match is not None, line
        assert int(match[2]) > 0
        base = match[1]
        with httpx.Client(base_url=base, timeout=5) as client:
            info = client.get("/info").json()
            assert info["model_id"] == "sim/cli-test"
            assert info["max_concurrent_requests"] == 3
            body = {"inputs": "hi", "parameters": {"max_new_tokens": 2}}
            raw = client.post("/generate_stream", json=body).content
            assert b'"text":"\xe2\x9f\xa6' in raw or b"\\u27e6" in raw or "⟦".encode() in raw
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_sim_config_rejects_nonsense_values() -> None:
    with pytest.raises(ValueError):
        SimConfig(tokens_per_second=0)
    with pytest.raises(ValueError):
        SimConfig(max_input_tokens=10, max_total_tokens=10)
    with pytest.raises(ValueError):
        SimConfig(fault_rate=1.5)
    with pytest.raises(ValueError):
        SimConfig(stream_end_ms=-1)


def test_stream_end_ms_is_a_command_line_flag_that_defaults_to_no_delay() -> None:
    assert sim._parser().parse_args(["--stream-end-ms", "250"]).stream_end_ms == 250.0
    assert sim._parser().parse_args([]).stream_end_ms == 0.0


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        ("top_k", 2**31, "i32"),
        ("top_k", -(2**31) - 1, "i32"),
        ("max_new_tokens", -1, "u32"),
        ("max_new_tokens", 2**32, "u32"),
        ("seed", 2**64, "u64"),
        ("truncate", -5, "usize"),
    ],
)
def test_an_integer_outside_its_parameters_type_is_refused_naming_the_type(
    name: str, value: int, kind: str
) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        body = {"inputs": "hi", "parameters": {name: value}}
        response = await client.post("/generate", json=body)
        # Plain text, as TGI's web framework answers a body it cannot deserialize.
        assert response.status_code == 422
        assert response.text == (
            "Failed to deserialize the JSON body into the target type: "
            f"parameters.{name}: invalid value: integer `{value}`, expected {kind}"
        )

    run_with_client(fast(), scenario)
