"""The TGI client against recorded `/generate_stream` byte streams and real loopback sockets.

Most tests use httpx.MockTransport with hand-written recordings (tests/fixtures/streams) fed in
chunks of any size. The socket tests at the end check what a mock cannot: that leaving the
`async with` really closes the TCP connection (TGI's only cancel), that a finished stream ends
when the backend ends its response, and real timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from inference import client as client_module
from inference.backends import check_health, fetch_info, fetch_metrics, http_client
from inference.client import (
    DRAIN_MAX_BYTES,
    DRAIN_SECONDS,
    REFLECTION_TAGS,
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
    Token,
    visible_text,
)
from inference.openai_client import OpenAIClient
from inference.sse import MAX_LINE_CHARS, SSELimitError
from tests.support.simulator import serving

STREAMS = Path(__file__).resolve().parents[1] / "fixtures" / "streams"
SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache"}

REFLECTION_TEXT = (
    "<thinking>\nCompare 9.11 and 9.9: 11 > 9, so 9.11 is larger.\n"
    "<reflection>\nWait, compare tenths: 0.9 > 0.1.\n</reflection>\n"
    "So 9.9 is larger ✓\n</thinking>\n"
    "<output>\n9.9 is larger — its tenths digit is bigger.\n</output>"
)

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def _stream(name: str) -> bytes:
    return (STREAMS / name).read_bytes()


class RecordedStream(httpx.AsyncByteStream):
    """A response body delivered chunk by chunk, that can then hang or fail, and records aclose."""

    def __init__(
        self,
        chunks: Iterable[bytes],
        *,
        hang: bool = False,
        error: Exception | None = None,
    ) -> None:
        self.chunks = list(chunks)
        self.hang = hang
        self.error = error
        self.sent = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.sent += 1
            yield chunk
            await asyncio.sleep(0)  # let other tasks run between chunks, like a socket would
        if self.error is not None:
            raise self.error
        if self.hang:
            await asyncio.Event().wait()

    async def aclose(self) -> None:
        self.closed = True


def tiny_chunks(data: bytes, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    chunks = []
    i = 0
    while i < len(data):
        n = rng.randint(1, 7)
        chunks.append(data[i : i + n])
        i += n
    return chunks


def sse_response(stream: RecordedStream, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers={**SSE_HEADERS, **headers}, stream=stream)


def make_client(handler: Handler, **kwargs: Any) -> TGIClient:
    return TGIClient("http://tgi.test", transport=httpx.MockTransport(handler), **kwargs)


def serve(stream: RecordedStream, status: int = 200, **headers: str) -> TGIClient:
    return make_client(lambda request: sse_response(stream, status, **headers))


# Both protocols' clients stream the same events (tests/inference/test_openai_client.py uses
# these too).
StreamingClient = TGIClient | OpenAIClient


async def collect(
    client: StreamingClient, events_out: list[StreamEvent] | None = None, prompt: Any = "Hi"
) -> list[StreamEvent]:
    events = [] if events_out is None else events_out
    async with client, client.generate_stream(prompt) as stream:
        async for event in stream:
            events.append(event)
    return events


def run_collect(client: StreamingClient) -> list[StreamEvent]:
    return asyncio.run(collect(client))


def run_failing(client: StreamingClient) -> tuple[BackendError, list[StreamEvent]]:
    """Collect until the expected BackendError; return it with the events seen before it."""
    events: list[StreamEvent] = []
    with pytest.raises(BackendError) as info:
        asyncio.run(collect(client, events))
    return info.value, events


@pytest.fixture
def quick_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    """For streams that stay open after their final event: a finished stream reads on for less."""
    monkeypatch.setattr(client_module, "DRAIN_SECONDS", 0.05)


# --------------------------------------------------------------------------- normal streams


def test_reflection_answer_keeps_tags_and_drops_eot() -> None:
    stream = RecordedStream([_stream("reflection_answer.sse")])
    events = run_collect(serve(stream))
    assert [e.index for e in events] == list(range(1, 67))
    assert "".join(e.text for e in events) == REFLECTION_TEXT
    last = events[-1]
    assert last.token == Token(id=128009, text="<|eot_id|>", special=True, logprob=-0.0001)
    assert last.text == ""
    assert last.finish_reason == "eos_token"
    assert last.generated_tokens == 66
    assert last.input_length == 98
    assert all(e.finish_reason is None and e.generated_tokens is None for e in events[:-1])
    # TGI emits "" for a token that ends inside a UTF-8 character; the next one completes it.
    assert (events[45].token.text, events[46].token.text) == ("", " ✓")
    assert events[0].token == Token(id=128256, text="<thinking>", special=True, logprob=-0.0003)
    assert stream.closed


def test_tiny_chunks_give_the_same_events() -> None:
    data = _stream("reflection_answer.sse")
    whole = run_collect(serve(RecordedStream([data])))
    for seed in range(5):
        chunks = tiny_chunks(data, seed)
        assert max(map(len, chunks)) <= 7
        assert run_collect(serve(RecordedStream(chunks))) == whole


def test_old_no_space_framing_and_eos() -> None:
    events = run_collect(serve(RecordedStream(tiny_chunks(_stream("old_framing.sse")))))
    assert "".join(e.text for e in events) == " Deep learning"
    assert events[-1].token.text == "</s>"
    assert events[-1].finish_reason == "eos_token"
    assert events[-1].generated_tokens == 3
    assert events[-1].input_length is None  # before TGI 2.3


def test_keep_alive_comments_and_length_finish() -> None:
    events = run_collect(serve(RecordedStream([_stream("keepalive.sse")])))
    assert "".join(e.text for e in events) == "<output>Hello!"
    assert [e.index for e in events] == [1, 2, 3]
    assert events[-1].finish_reason == "length"
    assert events[-1].input_length == 61


@pytest.mark.usefixtures("quick_drain")
def test_events_after_the_final_one_are_ignored() -> None:
    extra = (
        b'data: {"index":67,"token":{"id":1,"text":"late","logprob":-1.0,"special":false},'
        b'"generated_text":null,"details":null}\n\n'
    )
    stream = RecordedStream([_stream("reflection_answer.sse") + extra], hang=True)
    events = run_collect(serve(stream))
    assert events[-1].index == 66
    assert stream.closed


def test_crlf_framed_events_stream_like_lf_framed_ones() -> None:
    data = _stream("keepalive.sse").replace(b"\n", b"\r\n")
    events = run_collect(serve(RecordedStream(tiny_chunks(data))))
    assert "".join(e.text for e in events) == "<output>Hello!"


@pytest.mark.usefixtures("quick_drain")
def test_final_event_without_details_still_ends_the_stream() -> None:
    data = (
        b'data: {"index":1,"token":{"id":5,"text":"ok","logprob":null,"special":false},'
        b'"generated_text":"ok","details":null}\n\n'
    )
    events = run_collect(serve(RecordedStream([data], hang=True)))
    assert [e.text for e in events] == ["ok"]
    assert events[0].token.logprob is None
    assert events[0].finish_reason is None


def test_nul_and_lone_surrogates_in_token_text_become_replacement_characters() -> None:
    stream = RecordedStream(tiny_chunks(_stream("unstorable_text.sse")))
    events = run_collect(serve(stream))
    assert [e.text for e in events] == ["a\ufffdb", " \ufffd", " 😀", "\ufffd!"]
    text = "".join(e.text for e in events)
    assert text.encode("utf-8").decode("utf-8") == text


def test_replayed_events_are_skipped_the_final_one_included() -> None:
    events = run_collect(serve(RecordedStream(tiny_chunks(_stream("replayed_tokens.sse")))))
    assert [e.index for e in events] == [1, 2, 3, 4]
    assert "".join(e.text for e in events) == "<output>Hello, world"
    assert events[-1].finish_reason == "length"
    assert events[-1].generated_tokens == 4


# --------------------------------------------------------------------------- error events


@pytest.mark.parametrize(
    ("name", "error_class", "code", "before"),
    [
        ("overloaded.sse", OverloadedError, "overloaded", 0),
        ("validation.sse", BackendValidationError, "validation", 0),
        ("generation_error.sse", GenerationError, "generation", 3),
        ("incomplete_generation_stream.sse", IncompleteStreamError, "incomplete_stream", 2),
    ],
)
def test_an_error_event_raises_its_error_after_the_events_before_it(
    name: str, error_class: type[BackendError], code: str, before: int
) -> None:
    stream = RecordedStream(tiny_chunks(_stream(name)))
    error, events = run_failing(serve(stream))
    assert type(error) is error_class
    assert error.code == code
    payload = json.loads(_stream(name).decode().splitlines()[-2].removeprefix("data: "))
    assert error.message == payload["error"]
    assert error.error_type == payload["error_type"]
    assert len(events) == before
    assert stream.closed


def test_unknown_error_type_is_a_plain_backend_error() -> None:
    data = b'data: {"error":"Template error: oops","error_type":"template_error"}\n\n'
    error, _ = run_failing(serve(RecordedStream([data])))
    assert type(error) is BackendError
    assert error.code == "backend_error"
    assert "Template error: oops" in str(error)
    assert error.error_type == "template_error"


def test_openai_style_error_event() -> None:
    data = b'data: {"error":{"message":"Model is overloaded","http_status_code":422}}\n\n'
    error, _ = run_failing(serve(RecordedStream([data])))
    assert type(error) is BackendError
    assert "Model is overloaded" in str(error)


def test_iteration_stops_after_an_error() -> None:
    async def scenario() -> None:
        client = serve(RecordedStream([_stream("generation_error.sse")]))
        async with client, client.generate_stream("Hi") as events:
            seen = [await events.__anext__() for _ in range(3)]
            assert len(seen) == 3
            with pytest.raises(GenerationError):
                await events.__anext__()
            with pytest.raises(StopAsyncIteration):
                await events.__anext__()

    asyncio.run(scenario())


# --------------------------------------------------------------------------- broken streams


def test_stream_cut_between_events() -> None:
    stream = RecordedStream(tiny_chunks(_stream("cut_before_final.sse")))
    error, events = run_failing(serve(stream))
    assert type(error) is IncompleteStreamError
    assert error.code == "incomplete_stream"
    assert len(events) == 3


def test_stream_cut_inside_an_event() -> None:
    error, events = run_failing(serve(RecordedStream([_stream("cut_mid_event.sse")])))
    assert type(error) is IncompleteStreamError
    assert len(events) == 2


def test_an_empty_body_is_an_incomplete_stream() -> None:
    error, events = run_failing(serve(RecordedStream([])))
    assert type(error) is IncompleteStreamError
    assert events == []


def test_connection_dropped_mid_stream() -> None:
    data = _stream("reflection_answer.sse")[:1000]
    drop = httpx.RemoteProtocolError("peer closed connection without sending complete body")
    error, events = run_failing(serve(RecordedStream([data], error=drop)))
    assert type(error) is IncompleteStreamError
    assert isinstance(error.__cause__, httpx.RemoteProtocolError)
    assert len(events) == data.count(b"\n\n")


def test_read_error_mid_stream() -> None:
    stream = RecordedStream([b"data: "], error=httpx.ReadError("connection reset"))
    error, _ = run_failing(serve(stream))
    assert type(error) is IncompleteStreamError


def test_read_timeout_mid_stream() -> None:
    stream = RecordedStream([b":\n\n"], error=httpx.ReadTimeout("timed out"))
    error, _ = run_failing(serve(stream))
    assert type(error) is BackendTimeoutError
    assert error.code == "backend_timeout"


def test_a_line_longer_than_the_bound_is_a_bad_stream_without_reading_it_all() -> None:
    piece = b"x" * 65536
    stream = RecordedStream([b'data: {"index":1,"token":{"text":"'] + [piece] * 32)
    error, events = run_failing(serve(stream))
    assert type(error) is BackendProtocolError
    assert error.code == "bad_stream"
    assert isinstance(error.__cause__, SSELimitError)
    assert events == []
    assert stream.sent <= 2 + MAX_LINE_CHARS // len(piece)
    assert stream.closed


def test_malformed_json_in_an_event_is_a_bad_stream() -> None:
    stream = RecordedStream(tiny_chunks(_stream("malformed_json.sse")), hang=True)
    error, events = run_failing(serve(stream))
    assert type(error) is BackendProtocolError
    assert error.code == "bad_stream"
    assert "invalid JSON" in str(error)
    assert len(events) == 1
    assert stream.closed


@pytest.mark.parametrize(
    "payload",
    [
        b"[1, 2]",
        b'{"index":1}',
        b'{"index":1,"token":null}',
        b'{"index":1,"token":{"id":1,"text":5,"logprob":0.0,"special":false}}',
        b'{"index":"1","token":{"id":1,"text":"a","logprob":0.0,"special":false}}',
        b'{"index":1,"token":{"id":1,"text":"a","logprob":0.0,"special":false},"details":[]}',
    ],
)
def test_an_event_of_an_unexpected_shape_is_a_protocol_error(payload: bytes) -> None:
    error, _ = run_failing(serve(RecordedStream([b"data: " + payload + b"\n\n"], hang=True)))
    assert type(error) is BackendProtocolError


def test_done_marker_before_a_final_event_is_incomplete() -> None:
    data = _stream("cut_before_final.sse") + b"data: [DONE]\n\n"
    error, events = run_failing(serve(RecordedStream([data], hang=True)))
    assert type(error) is IncompleteStreamError
    assert len(events) == 3


# --------------------------------------------------------------------------- HTTP failures


@pytest.mark.parametrize(
    ("status", "body", "error_class"),
    [
        (500, b"Internal Server Error", BackendProtocolError),
        (422, b"Failed to deserialize the JSON body into the target type", BackendProtocolError),
        (401, b"", BackendProtocolError),
        (404, b"Not Found", BackendProtocolError),
        (429, b'{"error":"Model is overloaded","error_type":"overloaded"}', OverloadedError),
        (429, b"Too Many Requests", OverloadedError),
        (503, b"Service Unavailable", BackendUnavailableError),
        (
            424,
            b'{"error":"Request failed during generation: x","error_type":"generation"}',
            GenerationError,
        ),
    ],
)
def test_a_non_200_status_raises_the_error_for_that_status(
    status: int, body: bytes, error_class: type[BackendError]
) -> None:
    stream = RecordedStream([body])
    client = make_client(
        lambda request: httpx.Response(
            status, headers={"content-type": "text/plain"}, stream=stream
        )
    )
    error, _ = run_failing(client)
    assert type(error) is error_class
    assert error.status_code == status
    if error_class is BackendProtocolError:
        assert str(status) in str(error)
    assert stream.closed


def test_non_sse_content_type() -> None:
    stream = RecordedStream([b'{"generated_text":"hi"}'])
    client = make_client(
        lambda request: httpx.Response(
            200, headers={"content-type": "application/json"}, stream=stream
        )
    )
    error, _ = run_failing(client)
    assert type(error) is BackendProtocolError
    assert "application/json" in str(error)
    assert stream.closed


@pytest.mark.parametrize(
    ("exc", "error_class"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), BackendUnavailableError),
        (httpx.ConnectError("[Errno -2] Name or service not known"), BackendUnavailableError),
        (httpx.ReadError("[Errno 104] Connection reset by peer"), BackendUnavailableError),
        (httpx.RemoteProtocolError("Server disconnected"), BackendUnavailableError),
        (httpx.ConnectTimeout("timed out"), BackendTimeoutError),
        (httpx.ReadTimeout("timed out"), BackendTimeoutError),
        (httpx.PoolTimeout("timed out"), BackendTimeoutError),
    ],
)
def test_transport_errors_before_the_response(
    exc: Exception, error_class: type[BackendError]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    error, _ = run_failing(make_client(handler))
    assert type(error) is error_class
    assert error.__cause__ is exc
    assert not isinstance(error, httpx.HTTPError)


# --------------------------------------------------------------------------- the request


def test_request_body_has_model_card_defaults() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return sse_response(RecordedStream([_stream("keepalive.sse")]))

    run_collect(make_client(handler))
    (request,) = seen
    assert request.method == "POST"
    assert request.url == "http://tgi.test/generate_stream"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "text/event-stream"
    assert "authorization" not in request.headers
    assert json.loads(request.content) == {
        "inputs": "Hi",
        "parameters": {
            "max_new_tokens": 2048,
            "temperature": 0.7,
            "top_p": 0.95,
            "do_sample": True,
            "stop": [],
            "details": True,
            "return_full_text": False,
        },
    }


def test_request_with_custom_params_api_key_and_base_path() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return sse_response(RecordedStream([_stream("keepalive.sse")]))

    async def scenario() -> None:
        client = TGIClient(
            "http://gpu-1.internal:8080/tgi/",
            api_key="s3cret",
            transport=httpx.MockTransport(handler),
        )
        params = SamplingParams(max_new_tokens=16, temperature=0.2, top_p=0.5, stop=("\n",), seed=7)
        async with client, client.generate_stream("<prompt>", params) as events:
            async for _ in events:
                pass

    asyncio.run(scenario())
    (request,) = seen
    assert request.url == "http://gpu-1.internal:8080/tgi/generate_stream"
    assert request.headers["authorization"] == "Bearer s3cret"
    assert json.loads(request.content)["parameters"] == {
        "max_new_tokens": 16,
        "temperature": 0.2,
        "top_p": 0.5,
        "do_sample": True,
        "stop": ["\n"],
        "details": True,
        "return_full_text": False,
        "seed": 7,
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": 0.0},
        {"temperature": -1.0},
        {"temperature": float("nan")},
        {"top_p": 1.0},
        {"top_p": 0.0},
        {"max_new_tokens": 0},
        {"max_new_tokens": 1.5},
        {"stop": ("a", "b", "c", "d", "e")},
        {"stop": ("",)},
        {"seed": -1},
    ],
)
def test_invalid_sampling_params_are_refused_before_any_request(kwargs: dict[str, Any]) -> None:
    params = SamplingParams(**kwargs)
    with pytest.raises(ValueError):
        params.to_parameters()

    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request may be sent")

    client = make_client(handler)
    with pytest.raises(ValueError):
        client.generate_stream("Hi", params)
    asyncio.run(client.aclose())


def test_sampling_params_accept_a_list_of_stops() -> None:
    params = SamplingParams(stop=["a", "b"])  # type: ignore[arg-type]
    assert params.stop == ("a", "b")
    assert params.to_parameters()["stop"] == ["a", "b"]
    hash(params)


def test_base_url_must_be_http() -> None:
    with pytest.raises(ValueError):
        TGIClient("tgi:8080")


# --------------------------------------------------------------------------- closing = cancelling


def _live_stream() -> RecordedStream:
    """The first two tokens of an answer, then a backend still generating."""
    return RecordedStream(tiny_chunks(_stream("cut_before_final.sse")), hang=True)


def test_break_closes_the_response() -> None:
    stream = _live_stream()

    async def scenario() -> None:
        client = serve(stream)
        async with client, client.generate_stream("Hi") as events:
            async for event in events:
                assert event.index == 1
                break
            assert not stream.closed
        assert stream.closed

    asyncio.run(scenario())


def test_exception_in_the_block_closes_the_response() -> None:
    stream = _live_stream()

    async def scenario() -> None:
        client = serve(stream)
        async with client:
            with pytest.raises(KeyError):
                async with client.generate_stream("Hi") as events:
                    async for _ in events:
                        raise KeyError("consumer failed")
            assert stream.closed

    asyncio.run(scenario())


def test_task_cancellation_closes_the_response() -> None:
    stream = _live_stream()

    async def scenario() -> None:
        client = serve(stream)
        got: list[StreamEvent] = []
        waiting = asyncio.Event()

        async def consume() -> None:
            async with client.generate_stream("Hi") as events:
                async for event in events:
                    got.append(event)
                    if len(got) == 3:
                        waiting.set()  # the next read hangs: TGI is still generating

        async with client:
            task = asyncio.create_task(consume())
            await waiting.wait()
            await asyncio.sleep(0.01)
            assert not stream.closed
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert stream.closed

    asyncio.run(scenario())


def test_timeout_around_the_block_closes_the_response() -> None:
    stream = _live_stream()

    async def scenario() -> None:
        client = serve(stream)
        async with client:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05), client.generate_stream("Hi") as events:
                    async for _ in events:
                        pass
        assert stream.closed

    asyncio.run(scenario())


def test_a_finished_stream_reads_the_rest_of_the_response_before_closing() -> None:
    stream = RecordedStream([_stream("keepalive.sse"), b":\n\n", b":\n\n"])
    events = run_collect(serve(stream))
    assert events[-1].finish_reason == "length"
    assert stream.sent == 3
    assert stream.closed


def test_a_finished_stream_reads_on_only_so_many_bytes() -> None:
    padding = b":" + b"x" * 4095 + b"\n"
    stream = RecordedStream([_stream("keepalive.sse")] + [padding] * 1000, hang=True)
    started = time.monotonic()
    run_collect(serve(stream))
    assert time.monotonic() - started < DRAIN_SECONDS / 2
    assert stream.sent <= 2 + DRAIN_MAX_BYTES // len(padding)
    assert stream.closed


@pytest.mark.parametrize("failed", [True, False], ids=["error event", "exception in the block"])
def test_a_stream_that_did_not_end_normally_closes_at_once(failed: bool) -> None:
    name = "generation_error.sse" if failed else "keepalive.sse"
    stream = RecordedStream([_stream(name)], hang=True)

    async def scenario() -> None:
        client = serve(stream)
        async with client, client.generate_stream("Hi") as events:
            async for _ in events:
                pass
            raise KeyError("the consumer failed after the final event")

    started = time.monotonic()
    with pytest.raises(GenerationError if failed else KeyError):
        asyncio.run(scenario())
    assert time.monotonic() - started < DRAIN_SECONDS / 2
    assert stream.closed


def test_a_cancellation_while_reading_on_after_the_final_event_closes_the_response() -> None:
    stream = RecordedStream([_stream("keepalive.sse")], hang=True)

    async def scenario() -> None:
        client = serve(stream)
        finished = asyncio.Event()

        async def consume() -> None:
            async with client.generate_stream("Hi") as events:
                async for _ in events:
                    pass
                finished.set()

        async with client:
            task = asyncio.create_task(consume())
            await finished.wait()
            await asyncio.sleep(0.05)
            assert not task.done(), "the block waits for the end of the response"
            assert not stream.closed
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert stream.closed

    asyncio.run(scenario())


def test_stream_cannot_be_used_after_the_block() -> None:
    async def scenario() -> None:
        client = serve(_live_stream())
        async with client:
            async with client.generate_stream("Hi") as events:
                pass
            with pytest.raises(RuntimeError):
                await events.__anext__()

    asyncio.run(scenario())


def test_concurrent_streams_share_one_client() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return sse_response(RecordedStream(tiny_chunks(_stream("reflection_answer.sse"))))

    async def scenario() -> list[str]:
        client = make_client(handler)

        async def one() -> str:
            async with client.generate_stream("Hi") as events:
                return "".join([event.text async for event in events])

        async with client:
            return await asyncio.gather(*(one() for _ in range(80)))

    assert asyncio.run(scenario()) == [REFLECTION_TEXT] * 80


# --------------------------------------------------------------------------- visible_text


@pytest.mark.parametrize("tag", sorted(REFLECTION_TAGS))
def test_visible_text_keeps_reflection_tags(tag: str) -> None:
    assert visible_text(Token(id=1, text=tag, special=True, logprob=None)) == tag
    # A tokenizer may attach whitespace to the tag token; it is part of the text.
    assert visible_text(Token(id=1, text=f" {tag}\n", special=True, logprob=None)) == f" {tag}\n"


@pytest.mark.parametrize(
    "text", ["<|eot_id|>", "</s>", "<|end_of_text|>", "<|start_header_id|>", "<|eom_id|>"]
)
def test_visible_text_drops_other_special_tokens(text: str) -> None:
    assert visible_text(Token(id=2, text=text, special=True, logprob=-0.1)) == ""


@pytest.mark.parametrize("text", [" hello", "", "\n", "<|eot_id|>", "<thinking>"])
def test_visible_text_keeps_normal_tokens_verbatim(text: str) -> None:
    assert visible_text(Token(id=3, text=text, special=False, logprob=-0.1)) == text


def test_every_backend_error_class_has_its_own_code() -> None:
    codes = {
        BackendError: "backend_error",
        OverloadedError: "overloaded",
        BackendValidationError: "validation",
        GenerationError: "generation",
        IncompleteStreamError: "incomplete_stream",
        BackendUnavailableError: "backend_unavailable",
        BackendTimeoutError: "backend_timeout",
        BackendProtocolError: "bad_stream",
    }
    for cls, code in codes.items():
        assert issubclass(cls, BackendError)
        assert cls.code == code
        error = cls("message")
        assert error.message == str(error) == "message"


# --------------------------------------------------------------------------- info, health, metrics
# Asked through inference.backends (the rotation and the dashboard do), of a TGI backend.

TGI_URL = "http://tgi.test"
INFO = {
    "model_id": "mattshumer/Reflection-Llama-3.1-70B",
    "model_sha": None,
    "model_pipeline_tag": "text-generation",
    "max_concurrent_requests": 128,
    "max_best_of": 2,
    "max_stop_sequences": 4,
    "max_input_tokens": 8191,
    "max_total_tokens": 8192,
    "validation_workers": 2,
    "max_client_batch_size": 4,
    "router": "text-generation-router",
    "version": "3.3.6-dev0",
    "sha": None,
    "docker_label": None,
}
METRICS = "# TYPE tgi_queue_size gauge\ntgi_queue_size 3\n"


def asking(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return http_client(timeout=5, transport=httpx.MockTransport(handler))


def _routes(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/info":
        return httpx.Response(200, json=INFO)
    if request.url.path == "/health":
        return httpx.Response(200)
    if request.url.path == "/metrics":
        return httpx.Response(200, text=METRICS)
    return httpx.Response(404)


def test_a_tgi_backend_answers_info_health_and_metrics() -> None:
    with asking(_routes) as client:
        answers = (
            fetch_info(TGI_URL, client),
            check_health(TGI_URL, client).ok,
            fetch_metrics(TGI_URL, client),
        )

    assert answers == (INFO, True, METRICS)


def test_the_bearer_token_goes_with_every_question() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return _routes(request)

    with http_client(timeout=5, api_key="s3cret", transport=httpx.MockTransport(handler)) as client:
        check_health(TGI_URL, client)
        fetch_info(TGI_URL, client)
        fetch_metrics(TGI_URL, client)

    assert seen == ["Bearer s3cret"] * 3


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(503, json={"error": "unhealthy", "error_type": "healthcheck"}),
        httpx.Response(500),
        httpx.Response(204),
        httpx.Response(404),  # a TGI server has /health: no model list to fall back on
    ],
)
def test_health_false_on_non_200(response: httpx.Response) -> None:
    with asking(lambda request: response) as client:
        health = check_health(TGI_URL, client)

    assert health.ok is False
    assert health.reachable and health.detail == f"HTTP {response.status_code}"


def test_health_false_on_connection_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with asking(handler) as client:
        health = check_health(TGI_URL, client)

    assert health.ok is False
    assert not health.reachable and health.detail == "unreachable"
    assert health.error == "ConnectError"


@pytest.mark.parametrize(
    ("response", "error_class"),
    [
        (httpx.Response(200, text="not json"), BackendProtocolError),
        (httpx.Response(200, json=[1, 2]), BackendProtocolError),
        (httpx.Response(500, text="boom"), BackendProtocolError),
        (httpx.Response(502, text="Bad Gateway"), BackendUnavailableError),
    ],
)
def test_info_that_cannot_be_read_is_a_backend_error(
    response: httpx.Response, error_class: type[BackendError]
) -> None:
    with asking(lambda request: response) as client, pytest.raises(error_class):
        fetch_info(TGI_URL, client)


def test_info_and_metrics_connection_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    for call in (fetch_info, fetch_metrics):
        with asking(handler) as client, pytest.raises(BackendUnavailableError):
            call(TGI_URL, client)


# --------------------------------------------------------------------------- real sockets


class FakeTGI:
    """A loopback HTTP/1.1 server speaking just enough of /generate_stream."""

    def __init__(self, script: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> None:
        self.script = script
        self.disconnected = asyncio.Event()
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.decode("latin-1").split("\r\n"):
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        await reader.readexactly(length)
        self.requests += 1
        try:
            await self.script(writer)
            # Wait for the client to hang up: read() returns b"" on EOF.
            while await reader.read(1024):
                pass
            self.disconnected.set()
        except (ConnectionError, asyncio.IncompleteReadError):
            self.disconnected.set()
        finally:
            writer.close()


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"x-accel-buffering: no\r\ntransfer-encoding: chunked\r\n\r\n"
)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _first_events(n: int) -> bytes:
    data = _stream("reflection_answer.sse")
    return b"".join(block + b"\n\n" for block in data.split(b"\n\n")[:n])


def test_leaving_the_block_closes_the_tcp_connection() -> None:
    async def generating(writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD + _chunk(_first_events(2)))
        await writer.drain()
        # ...and TGI keeps generating until the client hangs up.

    async def scenario() -> None:
        tgi = FakeTGI(generating)
        async with TGIClient(await tgi.start(), read_timeout=10) as client:
            async with client.generate_stream("Hi") as events:
                first = await events.__anext__()
                assert first.text == "<thinking>"
            # The connection must go away now, not when the client is closed.
            await asyncio.wait_for(tgi.disconnected.wait(), timeout=5)
        await tgi.stop()

    asyncio.run(scenario())


def test_cancelled_task_closes_the_tcp_connection() -> None:
    async def generating(writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD + _chunk(_first_events(1)))
        await writer.drain()

    async def scenario() -> None:
        tgi = FakeTGI(generating)
        async with TGIClient(await tgi.start(), read_timeout=10) as client:
            started = asyncio.Event()

            async def consume() -> None:
                async with client.generate_stream("Hi") as events:
                    async for _ in events:
                        started.set()

            task = asyncio.create_task(consume())
            await asyncio.wait_for(started.wait(), timeout=5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(tgi.disconnected.wait(), timeout=5)
        await tgi.stop()

    asyncio.run(scenario())


def test_a_stalled_real_backend_times_out_and_is_disconnected() -> None:
    async def stalled(writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD)
        await writer.drain()

    async def scenario() -> None:
        tgi = FakeTGI(stalled)
        async with TGIClient(await tgi.start(), read_timeout=0.2) as client:
            with pytest.raises(BackendTimeoutError):
                async with client.generate_stream("Hi") as events:
                    async for _ in events:
                        pass
            await asyncio.wait_for(tgi.disconnected.wait(), timeout=5)
        await tgi.stop()

    asyncio.run(scenario())


def test_real_connection_dropped_mid_body() -> None:
    async def crash(writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD + _chunk(_first_events(3)))
        await writer.drain()
        writer.transport.abort()

    async def scenario() -> list[StreamEvent]:
        tgi = FakeTGI(crash)
        events: list[StreamEvent] = []
        async with TGIClient(await tgi.start()) as client:
            with pytest.raises(IncompleteStreamError):
                async with client.generate_stream("Hi") as stream:
                    async for event in stream:
                        events.append(event)
        await tgi.stop()
        return events

    assert len(asyncio.run(scenario())) == 3


def test_a_refused_real_connection_is_an_unavailable_backend() -> None:
    async def scenario() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        async with TGIClient(f"http://127.0.0.1:{port}", connect_timeout=2) as client:
            with pytest.raises(BackendUnavailableError):
                async with client.generate_stream("Hi"):
                    pass
        with http_client(timeout=2) as asking_client:
            assert check_health(f"http://127.0.0.1:{port}", asking_client).ok is False

    asyncio.run(scenario())


def test_a_finished_stream_ends_when_the_backend_ends_its_response() -> None:
    ended_at: list[float] = []

    async def finishing_late(writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD + _chunk(_stream("keepalive.sse")))
        await writer.drain()
        await asyncio.sleep(0.3)  # TGI still holds the request's permit meanwhile
        ended_at.append(time.monotonic())
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def scenario() -> float:
        tgi = FakeTGI(finishing_late)
        async with TGIClient(await tgi.start(), read_timeout=10) as client:
            async with client.generate_stream("Hi") as events:
                async for _ in events:
                    pass
            left_at = time.monotonic()
        await tgi.stop()
        return left_at

    left_at = asyncio.run(scenario())
    assert ended_at and left_at >= ended_at[0]


def test_a_backend_that_keeps_the_response_open_costs_the_drain_time_not_the_read_timeout() -> None:
    async def lingering(writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD + _chunk(_stream("keepalive.sse")))
        await writer.drain()

    async def scenario() -> float:
        tgi = FakeTGI(lingering)
        async with TGIClient(await tgi.start(), read_timeout=10) as client:
            started = time.monotonic()
            async with client.generate_stream("Hi") as events:
                async for _ in events:
                    pass
            elapsed = time.monotonic() - started
            await asyncio.wait_for(tgi.disconnected.wait(), timeout=5)
        await tgi.stop()
        return elapsed

    elapsed = asyncio.run(scenario())
    assert DRAIN_SECONDS * 0.9 <= elapsed < DRAIN_SECONDS + 1


def trickling_backend(events: list[bytes], every: float) -> web.Application:
    """A backend that sends a keep-alive every 50 ms and one of `events` every `every` seconds,
    and ends the response after the last; without events it sends keep-alives until the client
    leaves. It serves both protocols' streaming routes."""

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        pending = list(events)
        due = loop.time() + every
        with contextlib.suppress(ConnectionError):
            while True:
                await asyncio.sleep(0.05)
                if not pending or loop.time() < due:
                    await response.write(b":\n\n")
                    continue
                await response.write(pending.pop(0))
                due += every
                if not pending:
                    break
        return response

    app = web.Application()
    app.router.add_post("/generate_stream", stream)
    app.router.add_post("/v1/chat/completions", stream)
    return app


def run_within(seconds: float, client: StreamingClient) -> tuple[BackendError, float]:
    """The BackendError that collecting from `client` ends with, and how long that took; a
    stream still going after `seconds` fails the test."""

    async def scenario() -> None:
        async with asyncio.timeout(seconds):
            await collect(client)

    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        asyncio.run(scenario())
    return info.value, time.monotonic() - started


def test_keep_alives_alone_do_not_stretch_the_read_timeout() -> None:
    with serving(trickling_backend([], every=1.0)) as url:
        error, elapsed = run_within(5, TGIClient(url, read_timeout=0.5))
    assert type(error) is BackendTimeoutError
    assert error.code == "backend_timeout"
    assert 0.45 <= elapsed < 2


def test_events_that_each_come_within_the_read_timeout_are_fine() -> None:
    data = _stream("keepalive.sse")
    events = [block + b"\n\n" for block in data.split(b"\n\n") if block.startswith(b"data:")]
    with serving(trickling_backend(events, every=0.3)) as url:
        started = time.monotonic()
        received = run_collect(TGIClient(url, read_timeout=0.5))
        elapsed = time.monotonic() - started
    assert "".join(e.text for e in received) == "<output>Hello!"
    assert elapsed > 0.5, "longer than one read timeout in all"
