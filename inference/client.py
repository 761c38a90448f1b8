"""Async client for TGI's native streaming API (`/generate_stream`), over plain httpx.

Why not the OpenAI-style route: Reflection's tags are special tokens and the chat stream drops
special tokens. Why not `huggingface_hub`: it keeps streaming responses open until the whole
client is closed, and closing the HTTP response is TGI's only way to cancel a generation.

Rules the rest of the project relies on:

- `generate_stream()` is an async context manager. Leaving it, however that happens, closes the
  response and its connection, so TGI drops the request and frees its slot. Only a stream that
  ended normally (final event seen, the block left without an exception) first reads the rest of
  the response, briefly (`DRAIN_SECONDS`): TGI holds the request's permit until its response
  ends, so a slot handed on at the final event would be one TGI still counts as busy.
- A backend that sends nothing but keep-alives for the read timeout is a `BackendTimeoutError`,
  like one that sends nothing at all: keep-alives do not stretch the wait for the next event.
- TGI answers 200 even for errors and sends them as a last event; those, HTTP failures and broken
  streams all surface as `BackendError` subclasses with a stable `code`. No httpx exception leaks.
- The answer text is the concatenation of `StreamEvent.text`, which keeps Reflection's tags and
  drops other special tokens (see `visible_text`), and holds nothing a database cannot store
  (`storable_text`). An event whose `index` is not past the last one is a replay and skipped. The
  final event's `generated_text` has every special token stripped, so it is never used.

The module is long because these rules are one contract: the errors and their codes, the event
stream that enforces the timeouts, replays and drain, and the pooled client it runs on are read
together, and the OpenAI-compatible client (openai_client.py) builds on all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn, Self

import httpx

from .sanitize import storable_text
from .sse import SSEDecoder, SSELimitError
from .tags import TAGS as REFLECTION_TAGS

MAX_STOP_SEQUENCES = 4  # TGI's default --max-stop-sequences
# Reading on after the final event waits for the response to end, which TGI does at once: these
# bound what a backend that keeps the connection open can cost (what it sends is ignored).
DRAIN_SECONDS = 1.0
DRAIN_MAX_BYTES = 64 * 1024


# --------------------------------------------------------------------------- errors


class BackendError(Exception):
    """Anything that went wrong talking to the backend. `code` is stable and machine-readable."""

    code = "backend_error"

    def __init_subclass__(cls, *, code: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.code = code

    def __init__(
        self, message: str, *, error_type: str | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type  # TGI's error_type, when TGI named one
        self.status_code = status_code  # the HTTP status, when one was the cause


class OverloadedError(BackendError, code="overloaded"):
    """TGI is at max_concurrent_requests; it never queues past that."""


class BackendValidationError(BackendError, code="validation"):
    """TGI rejected the request (prompt too long, bad parameters)."""


class GenerationError(BackendError, code="generation"):
    """A shard failed during prefill or decode (TGI fails the whole batch)."""


class IncompleteStreamError(BackendError, code="incomplete_stream"):
    """The stream ended without a final event: TGI said so, or the connection dropped."""


class BackendUnavailableError(BackendError, code="backend_unavailable"):
    """The backend could not be reached (refused, DNS, reset before a response)."""


class BackendTimeoutError(BackendError, code="backend_timeout"):
    """Connecting, or waiting for the next bytes, took longer than the configured timeout."""


class BackendProtocolError(BackendError, code="bad_stream"):
    """The backend answered something that is not TGI's protocol."""


_ERROR_TYPES: dict[str, type[BackendError]] = {
    "overloaded": OverloadedError,
    "validation": BackendValidationError,
    "generation": GenerationError,
    "incomplete_generation_stream": IncompleteStreamError,
    "incomplete_generation": IncompleteStreamError,
}


def _error_from_payload(payload: dict[str, Any], status_code: int | None = None) -> BackendError:
    """Map a TGI `ErrorResponse` (`{"error", "error_type"}`) to an exception."""
    error = payload.get("error")
    message = str(error)
    if isinstance(error, dict):
        # OpenAI-route shape: {"error": {"message", "http_status_code"}}, without error_type.
        message = str(error.get("message") or error)
    error_type = payload.get("error_type")
    if not isinstance(error_type, str):
        error_type = None
    cls = _ERROR_TYPES.get(error_type or "", BackendError)
    if cls is BackendError and error_type:
        message = f"{error_type}: {message}"
    return cls(message, error_type=error_type, status_code=status_code)


def request_error(exc: httpx.HTTPError, *, mid_stream: bool) -> BackendError:
    """Map an httpx exception; `mid_stream` once response headers have arrived."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        what = "connecting to" if isinstance(exc, httpx.ConnectTimeout) else "waiting for"
        return BackendTimeoutError(f"Timed out {what} the backend: {detail}")
    if isinstance(exc, httpx.DecodingError):
        return BackendProtocolError(f"Could not decode the backend's response: {detail}")
    if isinstance(exc, httpx.TransportError):
        if mid_stream:
            return IncompleteStreamError(f"The backend connection broke mid-stream: {detail}")
        return BackendUnavailableError(f"Backend unavailable: {detail}")
    return BackendError(f"Backend request failed: {detail}")


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings; the defaults are the Reflection model card's recommendation."""

    max_new_tokens: int = 2048
    temperature: float = 0.7
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        # A list passed for `stop` would make the frozen instance unhashable.
        if not isinstance(self.stop, tuple):
            object.__setattr__(self, "stop", tuple(self.stop))

    def validate(self) -> None:
        """Raise ValueError for values that TGI's validation would answer with a 422."""
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int):
            raise ValueError("max_new_tokens must be an integer")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if not math.isfinite(self.temperature) or self.temperature <= 0:
            raise ValueError("temperature must be > 0")
        if not 0 < self.top_p < 1:
            raise ValueError("top_p must be > 0 and < 1")
        if len(self.stop) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed")
        if not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError("stop sequences must be non-empty strings")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0
        ):
            raise ValueError("seed must be a non-negative integer")

    def to_parameters(self) -> dict[str, Any]:
        """The `parameters` object of a TGI generate request."""
        self.validate()
        params: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            # A `parameters` object that omits do_sample gets serde's false, not the
            # route default of true.
            "do_sample": True,
            "stop": list(self.stop),
            "details": True,
            "return_full_text": False,
        }
        if self.seed is not None:
            params["seed"] = self.seed
        return params


@dataclass(frozen=True, slots=True)
class Token:
    id: int
    text: str
    special: bool
    logprob: float | None


@dataclass(frozen=True, slots=True)
class StreamEvent:
    index: int
    token: Token
    text: str  # what this token adds to the answer, per visible_text()
    finish_reason: str | None = None  # only on the final event
    generated_tokens: int | None = None
    input_length: int | None = None  # absent before TGI 2.3


def visible_text(token: Token) -> str:
    """The text a token adds to the answer.

    Reflection's tags are special tokens and carry the answer's structure, so they are kept.
    Other special tokens (`<|eot_id|>`, `</s>`, `<|end_of_text|>`) are control tokens: dropped.
    """
    if not token.special:
        return token.text
    if token.text.strip() in REFLECTION_TAGS:
        return token.text
    return ""


def _shape_error(detail: str, data: str) -> BackendProtocolError:
    snippet = data if len(data) <= 200 else data[:200] + "…"
    return BackendProtocolError(f"Unexpected event from the backend ({detail}): {snippet}")


def _parse_event(data: str) -> tuple[StreamEvent, bool]:
    """Parse one `/generate_stream` payload; returns (event, is_final). Raises BackendError."""
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise _shape_error("invalid JSON", data) from exc
    if not isinstance(obj, dict):
        raise _shape_error("not a JSON object", data)
    if obj.get("error") is not None:
        raise _error_from_payload(obj)
    try:
        tok = obj["token"]
        token = Token(tok["id"], tok["text"], tok["special"], tok.get("logprob"))
        index = obj["index"]
    except (KeyError, TypeError) as exc:
        raise _shape_error("missing field", data) from exc
    if not (
        isinstance(token.text, str)
        and isinstance(token.special, bool)
        and isinstance(token.id, int)
        and isinstance(index, int)
    ):
        raise _shape_error("wrong field type", data)
    details = obj.get("details")
    is_final = details is not None or obj.get("generated_text") is not None
    text = storable_text(visible_text(token))
    if details is None:
        return StreamEvent(index, token, text), is_final
    if not isinstance(details, dict):
        raise _shape_error("details is not an object", data)
    return (
        StreamEvent(
            index,
            token,
            text,
            details.get("finish_reason"),
            details.get("generated_tokens"),
            details.get("input_length"),
        ),
        True,
    )


DEFAULT_PARAMS = SamplingParams()


# --------------------------------------------------------------------------- streaming


class EventStream(AsyncIterator[StreamEvent]):
    """Async iterator over the events of one `/generate_stream` response.

    Iteration stops after the final event (anything TGI sent after it is ignored) and raises a
    `BackendError` for an error event, a broken stream, bytes that are not TGI's protocol, or no
    event within the read timeout. An event that repeats an earlier `index` is skipped.
    """

    __slots__ = (
        "_response",
        "_chunks",
        "_decoder",
        "_pending",
        "_finished",
        "_complete",
        "_eof",
        "_closed",
        "_last_index",
        "_event_timeout",
        "_waited",
    )

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._chunks = response.aiter_bytes()
        self._decoder = SSEDecoder()
        self._pending: deque[str] = deque()
        self._finished = False  # final event seen, or an error raised
        self._complete = False  # the stream ended normally: its final event was seen
        self._eof = False  # the body is fully read; _pending holds the decoder's last events
        self._closed = False
        self._last_index: int | None = None
        # The read timeout the request was sent with (httpx's `timeout` request extension) also
        # bounds the wait for the next event; `_waited` is how much of it reads without an event
        # have used up.
        self._event_timeout: float | None = response.request.extensions["timeout"]["read"]
        self._waited = 0.0

    @property
    def response(self) -> httpx.Response:
        return self._response

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._closed:
            raise RuntimeError("the stream was used after leaving its `async with` block")
        while not self._finished:
            if self._pending:
                event = self._take(self._pending.popleft())
            elif self._eof:
                event = self._at_end()
            else:
                event = await self._read_more()
            if event is not None:
                return event
        raise StopAsyncIteration

    def _at_end(self) -> StreamEvent | None:
        """The body ended with every event read (a protocol may know its answer is whole)."""
        self._fail(IncompleteStreamError("The backend stream ended before the final event"))

    async def _read_more(self) -> StreamEvent | None:
        """Read on; an event when the protocol can end the stream without more bytes."""
        await self._read()
        return None

    def _take(self, data: str) -> StreamEvent | None:
        if data == "[DONE]":
            # The OpenAI routes' end of stream; not sent by /generate_stream, but an
            # OpenAI-minded proxy might add it there too.
            self._pending.clear()
            self._eof = True
            return None
        return self._next_event(data)

    def _next_event(self, data: str) -> StreamEvent | None:
        try:
            event, is_final = _parse_event(data)
        except BackendProtocolError as exc:
            if self._eof:
                # After EOF the only pending event is the decoder's unterminated tail: a payload
                # that does not parse there was cut off by a dropped connection.
                self._fail(IncompleteStreamError("The backend stream ended inside an event"), exc)
            self._fail(exc)
        except BackendError as exc:
            self._fail(exc)
        if self._last_index is not None and event.index <= self._last_index:
            return None  # a replayed event: its token has been given out already
        self._last_index = event.index
        if is_final:
            self._finished = self._complete = True
        return event

    async def _read(self) -> None:
        """Read the next chunk of the body and queue the events it completes."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        timeout = self._event_timeout
        try:
            if timeout is None or not self._waited:
                # httpx's read timeout is the event timeout: it bounds a wait that starts fresh.
                chunk = await self._chunks.__anext__()
            else:
                # It restarts with every byte, keep-alives included, so after reads that brought
                # no event only what is left of it may be waited: keep-alives cannot hold the slot.
                async with asyncio.timeout(timeout - self._waited):
                    chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._eof = True
            self._pending.extend(self._decode(None))
            return
        except TimeoutError:
            self._fail(BackendTimeoutError(f"The backend sent no event for {timeout:g} s"))
        except httpx.HTTPError as exc:
            self._fail(request_error(exc, mid_stream=True), exc)
        events = self._decode(chunk)
        self._waited = 0.0 if events else self._waited + loop.time() - started
        self._pending.extend(events)

    def _decode(self, chunk: bytes | None) -> list[str]:
        """The events that `chunk` completes; None for the end of the body."""
        try:
            return self._decoder.close() if chunk is None else self._decoder.feed(chunk)
        except SSELimitError as exc:
            self._fail(BackendProtocolError(f"Unexpected stream from the backend: {exc}"), exc)

    def _fail(self, error: BackendError, cause: BaseException | None = None) -> NoReturn:
        self._finished = True
        self._pending.clear()
        if cause is None or cause is error:
            raise error
        raise error from cause

    async def aclose(self, *, drain: bool = False) -> None:
        """Close the HTTP response; TGI sees the disconnect and cancels the generation.

        With `drain`, a stream that ended normally first reads the rest of the response, so that
        it ends when TGI has let go of the request (bounded by DRAIN_SECONDS, DRAIN_MAX_BYTES).
        """
        self._closed = True
        self._finished = True
        try:
            if drain and self._complete:
                await self._drain()
        finally:
            # Shielded so that a cancellation arriving while we close (or drain) cannot leave the
            # connection (and TGI's slot) open.
            await asyncio.shield(self._response.aclose())

    async def _drain(self) -> None:
        read = 0
        with contextlib.suppress(TimeoutError, httpx.HTTPError):
            async with asyncio.timeout(DRAIN_SECONDS):
                async for chunk in self._chunks:
                    read += len(chunk)
                    if read > DRAIN_MAX_BYTES:
                        return


StatusErrorMapper = Callable[[httpx.Response, str], BackendError]


class _GenerateStream(AbstractAsyncContextManager[EventStream]):
    """The context manager returned by `generate_stream`: POST, check, then iterate events.

    `path`, `stream_class` and `status_error` make it serve another protocol's streaming route
    (see `inference.openai_client`); the defaults are TGI's `/generate_stream`.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        body: dict[str, Any],
        *,
        path: str = "/generate_stream",
        stream_class: Callable[[httpx.Response], EventStream] | None = None,
        status_error: StatusErrorMapper | None = None,
    ) -> None:
        self._client = client
        self._body = body
        self._path = path
        self._stream_class = stream_class or EventStream
        self._status_error = status_error or tgi_error_for_status
        self._stream: EventStream | None = None

    async def __aenter__(self) -> EventStream:
        if self._stream is not None:
            raise RuntimeError("generate_stream() contexts cannot be re-entered")
        request = self._client.build_request(
            "POST",
            self._path,
            json=self._body,
            headers={"Accept": "text/event-stream"},
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise request_error(exc, mid_stream=False) from exc
        try:
            await _check_stream_response(response, self._status_error)
        except BaseException:
            await asyncio.shield(response.aclose())
            raise
        self._stream = self._stream_class(response)
        return self._stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            await self._stream.aclose(drain=exc_type is None)


async def _read_limited(response: httpx.Response, limit: int = 2048) -> str:
    """Up to `limit` bytes of an error body: enough for a message, bounded for a bad backend."""
    body = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) >= limit:
                break
    except httpx.HTTPError:
        pass
    return body[:limit].decode("utf-8", errors="replace")


def tgi_error_for_status(response: httpx.Response, body: str) -> BackendError:
    status = response.status_code
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and payload.get("error") is not None:
        error = _error_from_payload(payload, status_code=status)
        if type(error) is not BackendError and (status != 429 or error.code == "overloaded"):
            return error  # TGI named a known error_type; trust it
        detail = error.message
    else:
        detail = body.strip()[:200] or response.reason_phrase
    message = f"Backend answered HTTP {status}: {detail}"
    if status == 429:
        return OverloadedError(message, status_code=status)
    if status in (502, 503, 504):
        # A gateway or load balancer in front of TGI: the backend itself is not reachable.
        return BackendUnavailableError(message, status_code=status)
    if status in (401, 403):
        message += " (check the backend API key)"
    return BackendProtocolError(message, status_code=status)


async def _check_stream_response(
    response: httpx.Response, status_error: StatusErrorMapper = tgi_error_for_status
) -> None:
    if response.status_code != 200:
        raise status_error(response, await _read_limited(response))
    content_type = response.headers.get("content-type", "")
    if not content_type.lower().startswith("text/event-stream"):
        body = await _read_limited(response, 200)
        raise BackendProtocolError(
            f"Backend answered {content_type or 'no content-type'} instead of an event stream: "
            f"{body.strip()[:200]}",
            status_code=response.status_code,
        )


# --------------------------------------------------------------------------- client


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """The process's one TLS context for talking to backends.

    Building a context loads the whole CA bundle: tens of ms of CPU, holding the interpreter
    lock that the process's streams need. Every httpx client made for a backend (one per
    generation, and the probes' and scrapes' short-lived ones) is given this one instead.
    """
    return httpx.create_ssl_context()


class HTTPBackendClient:
    """One pooled HTTP client for one backend: what every protocol's client shares.

    Safe to share between concurrent tasks. Subclasses add the protocol's routes.
    """

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 256,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"Backend base URL must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # read_timeout bounds the gap between bytes and, for a stream, between events (keep-alives
        # do not count: see EventStream), not the whole stream. It must cover the longest wait
        # for a first token that is still healthy (TGI's queue and prefill).
        timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
        )
        # Every live stream holds a connection for its whole duration, so the pool must be at
        # least as large as the number of concurrent generations against this backend.
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=min(64, max_connections),
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            limits=limits,
            transport=transport,
            verify=shared_ssl_context(),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()


class TGIClient(HTTPBackendClient):
    """One pooled HTTP client for one TGI backend. Safe to share between concurrent tasks."""

    def generate_stream(
        self, prompt: str, params: SamplingParams = DEFAULT_PARAMS
    ) -> AbstractAsyncContextManager[EventStream]:
        """Stream a generation. Use as `async with client.generate_stream(p) as events:`.

        Raises ValueError at once for invalid params; BackendError subclasses on entering the
        block (HTTP failures) or while iterating (TGI error events, broken streams).
        """
        body = {"inputs": prompt, "parameters": params.to_parameters()}
        return _GenerateStream(self._http, body)
