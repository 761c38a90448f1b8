"""The OpenAI-compatible client against hand-written `/v1/chat/completions` byte streams.

The streams imitate what vLLM, llama-cpp-python's server and TGI's Messages API send (role chunk,
content chunks, a finish chunk, a usage chunk, `data: [DONE]`), fed through httpx.MockTransport in
chunks of any size, and then every way such a stream or request can fail. The same client against
the simulator over real HTTP is in tests/playground/test_openai_backend.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from inference import openai_client
from inference.backends import (
    check_health,
    fetch_info,
    fetch_metrics,
    http_client,
    http_url,
    is_backend_url,
    open_client,
    protocol_of,
)
from inference.chat import ChatPrompt, chat_messages, fit_answer, fit_chat
from inference.client import (
    BackendError,
    BackendProtocolError,
    BackendTimeoutError,
    BackendUnavailableError,
    BackendValidationError,
    GenerationError,
    IncompleteStreamError,
    OverloadedError,
    SamplingParams,
    StreamEvent,
    TGIClient,
)
from inference.openai_client import (
    DEFAULT_MAX_INPUT_TOKENS,
    OpenAIClient,
    info_from_models,
    visible_content,
)
from inference.parser import parse
from inference.prompt import Turn, build_prompt
from inference.sanitize import ZERO_WIDTH_SPACE
from inference.sse import SSELimitError
from tests.inference.test_client import (
    STREAMS,
    RecordedStream,
    run_collect,
    run_failing,
    run_within,
    tiny_chunks,
    trickling_backend,
)
from tests.inference.test_prompt import HOSTILE
from tests.inference.test_sanitize import has_special_token
from tests.support.simulator import serving

SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8"}
URL = "openai+http://vllm.test:8000"

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]

PIECES = [
    "<thinking>",
    "\nCompare 9.11 and 9.9: 11 > 9, so 9.11 is larger.\n",
    "<reflection>",
    "\nWait, compare tenths: 0.9 > 0.1.\n",
    "</reflection>",
    "\nSo 9.9 is larger ✓\n",
    "</thinking>",
    "\n",
    "<output>",
    "\n9.9 is larger.\n",
    "</output>",
]
ANSWER = "".join(PIECES)


def chunk(
    content: str | None = None,
    finish: str | None = None,
    *,
    role: bool = False,
    stop_reason: Any = None,
) -> bytes:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    payload = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "reflection-70b",
        "choices": [
            {"index": 0, "delta": delta, "finish_reason": finish, "stop_reason": stop_reason}
        ],
    }
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def usage(prompt: int = 42, completion: int = 11) -> bytes:
    payload = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"
# vLLM: a role chunk with empty content, one chunk per token, finish, usage, [DONE].
VLLM_STREAM = (
    chunk("", role=True)
    + b"".join(chunk(piece) for piece in PIECES)
    + chunk("", "stop")
    + usage()
    + DONE
)
# llama-cpp-python: role chunk without content, ping comments, `delta: {}` with the finish
# reason, no usage, [DONE]; lines end with "\n" only.
LLAMA_CPP_STREAM = (
    chunk(role=True)
    + b": ping - 2026-11-25 10:00:00\n\n"
    + b"".join(chunk(piece) for piece in PIECES)
    + chunk(finish="stop")
    + DONE
)


def sse(stream: RecordedStream, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers={**SSE_HEADERS, **headers}, stream=stream)


def make_client(handler: Handler, **kwargs: Any) -> OpenAIClient:
    return OpenAIClient(URL, transport=httpx.MockTransport(handler), **kwargs)


def serve(stream: RecordedStream, status: int = 200) -> OpenAIClient:
    return make_client(lambda request: sse(stream, status))


def serve_json(status: int, body: Any, content_type: str = "application/json") -> OpenAIClient:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return make_client(
        lambda request: httpx.Response(status, headers={"content-type": content_type}, content=raw)
    )


def text_of(events: list[StreamEvent]) -> str:
    return "".join(event.text for event in events)


# --------------------------------------------------------------------------- normal streams


def test_a_vllm_stream_keeps_the_tags_and_ends_with_a_final_event_carrying_usage() -> None:
    stream = RecordedStream([VLLM_STREAM])
    events = run_collect(serve(stream))

    assert text_of(events) == ANSWER
    assert [e.index for e in events] == list(range(1, len(PIECES) + 2))
    assert all(e.finish_reason is None for e in events[:-1])
    final = events[-1]
    assert (final.text, final.finish_reason) == ("", "eos_token")
    assert (final.generated_tokens, final.input_length) == (11, 42)
    assert stream.closed
    sections = parse(text_of(events)).as_dict()
    assert sections["reflections"] == ["\nWait, compare tenths: 0.9 > 0.1.\n"]
    assert sections["output"] == "\n9.9 is larger.\n"


def test_any_chunking_and_crlf_framing_give_the_same_events() -> None:
    whole = run_collect(serve(RecordedStream([VLLM_STREAM])))
    for seed in range(4):
        assert run_collect(serve(RecordedStream(tiny_chunks(VLLM_STREAM, seed)))) == whole
    crlf = VLLM_STREAM.replace(b"\n", b"\r\n")
    assert run_collect(serve(RecordedStream(tiny_chunks(crlf)))) == whole


def test_a_llama_cpp_python_stream_without_usage_counts_the_chunks() -> None:
    events = run_collect(serve(RecordedStream(tiny_chunks(LLAMA_CPP_STREAM))))

    assert text_of(events) == ANSWER
    assert events[-1].finish_reason == "eos_token"
    assert events[-1].generated_tokens == len(PIECES)
    assert events[-1].input_length is None


@pytest.mark.parametrize(
    ("finish", "stop_reason", "expected"),
    [
        ("length", None, "length"),
        ("stop", None, "eos_token"),
        ("stop", 128009, "eos_token"),  # vLLM: a stop token id
        ("stop", "</output>", "stop_sequence"),  # vLLM: the stop string that matched
        ("content_filter", None, "content_filter"),
    ],
)
def test_finish_reasons_are_told_in_tgis_words(
    finish: str, stop_reason: Any, expected: str
) -> None:
    data = chunk("Hi") + chunk("", finish, stop_reason=stop_reason) + DONE
    events = run_collect(serve(RecordedStream([data])))
    assert events[-1].finish_reason == expected


def test_sglangs_matched_stop_names_the_stop_string() -> None:
    finish = chunk("", "stop").replace(b'"stop_reason": null', b'"matched_stop": "</output>"')
    events = run_collect(serve(RecordedStream([chunk("Hi") + finish + DONE])))
    assert events[-1].finish_reason == "stop_sequence"


def test_text_in_the_finish_chunk_comes_before_the_final_event() -> None:
    data = chunk("Hello") + chunk(" world", "length") + usage(3, 2) + DONE
    events = run_collect(serve(RecordedStream([data])))
    assert [e.text for e in events] == ["Hello", " world", ""]
    assert events[-1].finish_reason == "length"


def test_end_of_turn_markers_are_dropped_and_the_tags_kept() -> None:
    data = (
        chunk("<output>")
        + chunk("ok")
        + chunk("</output>")
        + chunk("<|eot_id|>")
        + chunk("", "stop")
        + DONE
    )
    events = run_collect(serve(RecordedStream([data])))
    assert text_of(events) == "<output>ok</output>"
    assert len(events) == 4, "a chunk that is only a marker yields no event"
    assert events[-1].generated_tokens == 4, "but it was a generated token"
    assert visible_content("a<|im_end|>b<|endoftext|>") == "ab"
    assert visible_content("x</s>y") == "x</s>y", "</s> is also HTML: kept"


def test_a_stream_that_ends_after_the_finish_without_done_is_complete() -> None:
    data = chunk("Hi") + chunk("", "stop")
    events = run_collect(serve(RecordedStream([data])))
    assert events[-1].finish_reason == "eos_token"


def test_a_server_that_stays_silent_after_the_finish_costs_only_a_short_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(openai_client, "FINISH_GRACE_SECONDS", 0.05)
    stream = RecordedStream([chunk("Hi") + chunk("", "stop")], hang=True)
    events = run_collect(serve(stream))
    assert events[-1].finish_reason == "eos_token"
    assert stream.closed


def test_a_connection_that_breaks_after_the_finish_keeps_the_answer() -> None:
    drop = httpx.RemoteProtocolError("peer closed connection")
    stream = RecordedStream([chunk("Hi") + chunk("", "stop")], error=drop)
    events = run_collect(serve(stream))
    assert text_of(events) == "Hi" and events[-1].finish_reason == "eos_token"


def test_a_finished_stream_reads_the_response_to_its_end_before_closing() -> None:
    stream = RecordedStream([VLLM_STREAM, b": trailing\n\n"])
    events = run_collect(serve(stream))
    assert events[-1].finish_reason == "eos_token"
    assert stream.sent == 2
    assert stream.closed


def test_nul_and_lone_surrogates_in_content_become_replacement_characters() -> None:
    data = (STREAMS / "chat_unstorable_text.sse").read_bytes()
    events = run_collect(serve(RecordedStream(tiny_chunks(data))))
    assert [e.text for e in events] == ["a\ufffdb", " \ufffd", " 😀", "\ufffd!", ""]
    assert text_of(events).encode("utf-8").decode("utf-8") == text_of(events)


def test_keepalive_and_usage_only_chunks_yield_nothing() -> None:
    usage_without_choices = b'data: {"usage": {"prompt_tokens": 1, "completion_tokens": 1}}\n\n'
    data = b":\n\n" + chunk("Hi") + usage_without_choices + chunk("", "stop") + DONE
    events = run_collect(serve(RecordedStream([data])))
    assert [e.text for e in events] == ["Hi", ""]
    assert events[-1].generated_tokens == 1 and events[-1].input_length == 1


# --------------------------------------------------------------------------- broken streams


def test_the_end_of_the_body_without_a_finish_reason_is_an_incomplete_stream() -> None:
    error, events = run_failing(serve(RecordedStream([chunk("", role=True) + chunk("Hel")])))
    assert isinstance(error, IncompleteStreamError) and error.code == "incomplete_stream"
    assert text_of(events) == "Hel"


def test_done_without_a_finish_reason_is_an_incomplete_stream() -> None:
    error, _ = run_failing(serve(RecordedStream([chunk("Hel") + DONE])))
    assert isinstance(error, IncompleteStreamError)


def test_a_connection_cut_mid_stream_is_an_incomplete_stream() -> None:
    drop = httpx.RemoteProtocolError("peer closed connection without sending complete body")
    error, events = run_failing(serve(RecordedStream([chunk("Hel")], error=drop)))
    assert isinstance(error, IncompleteStreamError)
    assert isinstance(error.__cause__, httpx.RemoteProtocolError)
    assert text_of(events) == "Hel"


def test_a_body_cut_inside_an_event_is_an_incomplete_stream() -> None:
    error, _ = run_failing(serve(RecordedStream([chunk("Hel") + b'data: {"choices": [{"del'])))
    assert isinstance(error, IncompleteStreamError)


def test_keep_alives_alone_do_not_stretch_the_read_timeout() -> None:
    with serving(trickling_backend([], every=1.0)) as url:
        error, elapsed = run_within(5, OpenAIClient(f"openai+{url}", read_timeout=0.5))
    assert isinstance(error, BackendTimeoutError) and error.code == "backend_timeout"
    assert 0.45 <= elapsed < 2


def test_a_line_longer_than_the_bound_is_a_bad_stream() -> None:
    head = [chunk("Hi"), b'data: {"choices": [{"delta": {"content": "']
    stream = RecordedStream(head + [b"x" * 65536] * 32)
    error, events = run_failing(serve(stream))
    assert isinstance(error, BackendProtocolError) and error.code == "bad_stream"
    assert isinstance(error.__cause__, SSELimitError)
    assert text_of(events) == "Hi"
    assert stream.sent < len(stream.chunks)


def test_a_read_timeout_mid_stream_is_a_backend_timeout() -> None:
    stream = RecordedStream([chunk("Hel")], error=httpx.ReadTimeout("timed out"))
    error, _ = run_failing(serve(stream))
    assert isinstance(error, BackendTimeoutError) and error.code == "backend_timeout"


@pytest.mark.parametrize(
    "event",
    [
        b"data: {not json\n\n",
        b"data: [1, 2]\n\n",
        b'data: {"id": "x"}\n\n',
        b'data: {"choices": {"0": {}}}\n\n',
        b'data: {"choices": ["text"]}\n\n',
        b'data: {"choices": [{"delta": "text"}]}\n\n',
        b'data: {"choices": [{"delta": {"content": 5}}]}\n\n',
        b'data: {"choices": [{"delta": {}, "finish_reason": 1}]}\n\n',
    ],
)
def test_bytes_that_are_not_the_protocol_are_a_bad_stream(event: bytes) -> None:
    error, events = run_failing(serve(RecordedStream([chunk("Hi") + event + chunk("", "stop")])))
    assert isinstance(error, BackendProtocolError) and error.code == "bad_stream"
    assert text_of(events) == "Hi"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            {"error": {"message": "boom", "type": "InternalServerError", "code": 500}},
            GenerationError,
        ),
        ({"error": {"message": "busy", "type": "overloaded", "code": 429}}, OverloadedError),
        ({"error": "Model is overloaded", "error_type": "overloaded"}, OverloadedError),  # TGI
        ({"error": "Request failed", "error_type": "generation"}, GenerationError),  # TGI
        (
            {"object": "error", "message": "too long", "type": "BadRequestError", "code": 400},
            BackendValidationError,
        ),  # older vLLM
        ({"error": {"message": "bad", "type": "invalid_request_error"}}, BackendValidationError),
    ],
)
def test_an_error_event_in_the_stream_raises_its_kind(
    payload: dict[str, Any], expected: type[BackendError]
) -> None:
    data = chunk("Hi") + b"data: " + json.dumps(payload).encode() + b"\n\n" + DONE
    error, events = run_failing(serve(RecordedStream([data])))
    assert type(error) is expected
    assert text_of(events) == "Hi"


# --------------------------------------------------------------------------- HTTP failures


@pytest.mark.parametrize(
    ("status", "body", "expected", "words"),
    [
        (
            429,
            {"error": {"message": "Too many requests", "type": "rate_limit_error"}},
            OverloadedError,
            "Too many requests",
        ),
        (503, {"detail": "Service Unavailable"}, OverloadedError, "Service Unavailable"),
        (
            400,
            {
                "error": {
                    "message": "This model's maximum context length is 8192 tokens.",
                    "type": "BadRequestError",
                    "code": 400,
                }
            },
            BackendValidationError,
            "maximum context length",
        ),
        (
            400,
            {"object": "error", "message": "bad top_p", "type": "BadRequestError", "code": 400},
            BackendValidationError,
            "bad top_p",
        ),
        (
            422,
            {"detail": [{"loc": ["body", "messages"], "msg": "Field required"}]},
            BackendValidationError,
            "Field required",
        ),
        (401, {"detail": "Invalid API key"}, BackendProtocolError, "check the backend API key"),
        (404, {"detail": "Not Found"}, BackendProtocolError, "OpenAI-compatible"),
        (
            500,
            {"error": {"message": "engine died", "type": "InternalServerError"}},
            GenerationError,
            "engine died",
        ),
        (502, b"<html>Bad Gateway</html>", BackendUnavailableError, "Bad Gateway"),
        (418, b"", BackendProtocolError, "HTTP 418"),
    ],
)
def test_http_errors_map_to_backend_errors(
    status: int, body: Any, expected: type[BackendError], words: str
) -> None:
    error, events = run_failing(serve_json(status, body))
    assert type(error) is expected
    assert error.status_code == status
    assert words in error.message
    assert events == []


def test_json_instead_of_an_event_stream_is_a_bad_stream() -> None:
    error, _ = run_failing(serve_json(200, {"choices": [{"message": {"content": "hi"}}]}))
    assert isinstance(error, BackendProtocolError)
    assert "instead of an event stream" in error.message


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), BackendUnavailableError),
        (httpx.RemoteProtocolError("Server disconnected"), BackendUnavailableError),
        (httpx.ConnectTimeout("timed out"), BackendTimeoutError),
        (httpx.ReadTimeout("timed out"), BackendTimeoutError),
    ],
)
def test_connection_failures_before_the_response(
    exc: Exception, expected: type[BackendError]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    error, _ = run_failing(make_client(handler))
    assert type(error) is expected
    assert not isinstance(error, httpx.HTTPError)


# --------------------------------------------------------------------------- the request


def test_the_request_sends_messages_sampling_and_the_special_token_flags() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return sse(RecordedStream([chunk("ok", "stop") + DONE]))

    history = [Turn(user="First?", assistant="One")]
    prompt = ChatPrompt("  Second?  ", history, "Be brief.", model="reflection-70b")
    params = SamplingParams(max_new_tokens=64, temperature=0.5, top_p=0.9, stop=("</output>",))
    client = make_client(handler, api_key="secret")

    async def go() -> None:
        async with client, client.generate_stream(prompt, params) as events:
            async for _ in events:
                pass

    asyncio.run(go())

    request = seen[0]
    assert str(request.url) == "http://vllm.test:8000/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer secret"
    body = json.loads(request.content)
    assert body == {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "First?"},
            {"role": "assistant", "content": "One"},
            {"role": "user", "content": "Second?"},
        ],
        "model": "reflection-70b",
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["</output>"],
        "skip_special_tokens": False,
        "spaces_between_special_tokens": False,
    }


def test_a_plain_string_prompt_is_one_user_message_and_the_seed_is_sent() -> None:
    body = OpenAIClient(URL, model="m").request_body("Hi", SamplingParams(seed=7))
    assert body["messages"] == [{"role": "user", "content": "Hi"}]
    assert body["seed"] == 7 and body["model"] == "m"
    assert "stop" not in body
    unnamed = OpenAIClient(URL).request_body([{"role": "user", "content": "Hi"}])
    assert "model" not in unnamed


def test_invalid_sampling_params_fail_before_any_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    client = make_client(handler)
    with pytest.raises(ValueError, match="top_p"):
        client.generate_stream("Hi", SamplingParams(top_p=1.0))


def test_leaving_the_block_early_closes_the_response() -> None:
    stream = RecordedStream([chunk("a") + chunk("b")], hang=True)
    client = serve(stream)

    async def go() -> None:
        async with client, client.generate_stream("Hi") as events:
            async for _ in events:
                break

    asyncio.run(go())
    assert stream.closed


# --------------------------------------------------------------------------- models and health


def asking(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return http_client(timeout=5, transport=httpx.MockTransport(handler))


def answering_json(status: int, body: Any, content_type: str = "application/json") -> httpx.Client:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return asking(
        lambda request: httpx.Response(status, headers={"content-type": content_type}, content=raw)
    )


def test_info_from_vllms_model_list_reads_the_context_length() -> None:
    payload = {
        "object": "list",
        "data": [
            {"id": "Reflection-70B", "object": "model", "owned_by": "vllm", "max_model_len": 8192}
        ],
    }
    with answering_json(200, payload) as client:
        info = fetch_info(URL, client)
    assert info["model_id"] == "Reflection-70B"
    assert (info["max_input_tokens"], info["max_total_tokens"]) == (8191, 8192)
    assert info["protocol"] == "openai" and info["owned_by"] == "vllm"


def test_info_asks_the_model_list_without_the_openai_prefix() -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(200, json={"data": [{"id": "m"}]})

    with asking(handler) as client:
        fetch_info(URL, client)

    assert asked == ["http://vllm.test:8000/v1/models"]


def test_info_without_a_context_length_uses_a_conservative_budget() -> None:
    payload = {"object": "list", "data": [{"id": "SmolLM2-135M-Instruct", "owned_by": "me"}]}
    info = info_from_models(payload)
    assert info["max_input_tokens"] == DEFAULT_MAX_INPUT_TOKENS
    assert "max_total_tokens" not in info


@pytest.mark.parametrize("payload", [{"data": []}, {"data": [{"object": "model"}]}, [], None])
def test_a_model_list_without_a_model_is_a_protocol_error(payload: Any) -> None:
    with pytest.raises(BackendProtocolError):
        info_from_models(payload)


def test_info_errors_are_backend_errors() -> None:
    with (
        answering_json(401, {"detail": "Invalid API key"}) as client,
        pytest.raises(BackendProtocolError, match="API key"),
    ):
        fetch_info(URL, client)
    with (
        answering_json(200, b"<html>", "text/html") as client,
        pytest.raises(BackendProtocolError, match="not JSON") as caught,
    ):
        fetch_info(URL, client)
    assert caught.value.status_code is None, "an answer, but not model info"


@pytest.mark.parametrize(
    ("routes", "healthy"),
    [
        ({"/health": 200}, True),
        ({"/health": 404, "/v1/models": 200}, True),  # llama-cpp-python has no /health
        ({"/health": 405, "/v1/models": 200}, True),
        ({"/health": 503, "/v1/models": 200}, False),  # llama.cpp while loading its model
        ({"/health": 404, "/v1/models": 401}, False),
    ],
)
def test_health_uses_health_or_the_model_list(routes: dict[str, int], healthy: bool) -> None:
    with asking(lambda request: httpx.Response(routes.get(request.url.path, 404))) as client:
        assert check_health(URL, client).ok is healthy


@pytest.mark.parametrize(
    ("failure", "healthy"),
    [
        (httpx.ReadTimeout, True),  # busy generating (one request at a time), not down
        (httpx.ConnectError, False),
    ],
)
def test_a_model_list_that_times_out_after_a_missing_health_means_busy(
    failure: type[httpx.TransportError], healthy: bool
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            raise failure("no answer", request=request)
        return httpx.Response(404)

    with asking(handler) as client:
        health = check_health(URL, client)

    assert health.ok is healthy
    assert health.error == (None if healthy else failure.__name__)


def test_health_is_false_when_the_server_is_unreachable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with asking(handler) as client:
        assert check_health(URL, client).ok is False


def test_metrics_of_a_server_without_them_are_a_backend_error() -> None:
    with asking(lambda request: httpx.Response(404)) as client, pytest.raises(BackendError):
        fetch_metrics(URL, client)


# --------------------------------------------------------------------------- backends, prompts


def test_the_openai_prefix_selects_the_protocol_and_is_stripped_for_requests() -> None:
    assert protocol_of("openai+http://vllm:8000") == "openai"
    assert protocol_of("http://tgi:80") == "tgi"
    assert http_url("openai+https://vllm.example/v1x") == "https://vllm.example/v1x"
    assert http_url("http://tgi:80") == "http://tgi:80"
    assert isinstance(open_client("openai+http://vllm:8000"), OpenAIClient)
    assert isinstance(open_client("http://tgi:80"), TGIClient)
    assert open_client("openai+http://vllm:8000/").base_url == "http://vllm:8000"
    for good in ("http://a", "https://a:1/p", "openai+http://127.0.0.1:8000"):
        assert is_backend_url(good)
    for bad in ("openai+ftp://a", "vllm:8000", "openai://a", "openai+http://", "http://a b"):
        assert not is_backend_url(bad)
    with pytest.raises(ValueError, match="http"):
        OpenAIClient("openai+vllm:8000")


def test_a_chat_prompt_is_the_llama_string_with_messages_attached() -> None:
    history = [Turn("Q1", "A1")]
    prompt = ChatPrompt("Q2", history, "System.", model="m")
    assert prompt == build_prompt("Q2", history, "System.")
    assert isinstance(prompt, str)
    assert prompt.messages == chat_messages("Q2", history, "System.")
    assert prompt.model == "m"
    assert chat_messages("Q", (), "   ") == [{"role": "user", "content": "Q"}]


def test_chat_messages_neutralize_special_tokens_but_not_the_system_prompt() -> None:
    system = "Answer inside <output> tags."
    messages = chat_messages(f"  {HOSTILE} ", [Turn(HOSTILE, HOSTILE)], system)
    assert messages[0] == {"role": "system", "content": system}
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user"]
    for message in messages[1:]:
        assert not has_special_token(message["content"])
        assert message["content"].replace(ZERO_WIDTH_SPACE, "") == HOSTILE
    plain = "Is a < b? <div>x</div> <| and |>"
    assert all(m["content"] == plain for m in chat_messages(plain, [Turn(plain, plain)], ""))


def test_fit_chat_keeps_room_for_the_answer_and_fit_answer_caps_it() -> None:
    history = [Turn("q" * 300, "a" * 300) for _ in range(10)]
    # Plenty of prompt budget, but the window must keep 1000 tokens free for the answer.
    prompt, dropped = fit_chat(
        "Now?", history, max_input_tokens=5000, max_total_tokens=2000, max_new_tokens=1000
    )
    assert 0 < dropped < 10
    params = fit_answer(prompt, 2000, SamplingParams(max_new_tokens=5000))
    assert params.max_new_tokens <= 2000 - len(prompt.encode()) // 3
    assert fit_answer(prompt, None, SamplingParams(max_new_tokens=5000)).max_new_tokens == 5000
    small = SamplingParams(max_new_tokens=10)
    assert fit_answer(prompt, 2000, small) is small
    _, none_dropped = fit_chat("Now?", history, max_input_tokens=5000, max_new_tokens=1000)
    assert none_dropped == 0, "without a known window only max_input_tokens counts"


def test_an_answer_without_any_tags_is_shown_as_plain_text() -> None:
    # Small chat models (SmolLM2) ignore the tag format: their answer is still shown, as "text".
    sections = parse("Paris is the capital of France.").as_dict()
    assert sections == {
        "thinking": "",
        "reflections": [],
        "output": "",
        "text": "Paris is the capital of France.",
    }
