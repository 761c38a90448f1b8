"""Async client for OpenAI-compatible chat servers: `POST /v1/chat/completions` with `stream: true`.

vLLM, SGLang, llama.cpp's `llama-server`, llama-cpp-python's server and TGI's Messages API all
serve this route. They apply the model's chat template themselves, so the client sends messages
(see `inference.chat.ChatPrompt`), not a rendered prompt string.

It follows the same rules as `inference.client.TGIClient`, so the rest of the playground treats
both alike:

- `generate_stream()` is an async context manager; leaving it closes the HTTP response, which is
  how these servers, too, learn that a generation is abandoned (vLLM and SGLang abort it). As for
  TGI, a stream that ended normally first reads the rest of the response, within
  `inference.client.DRAIN_SECONDS`, so the server is done with the request when the block ends.
- Every failure is a `BackendError` subclass with a stable `code`: 429 and 503 are `overloaded`,
  400/413/422 `validation`, an error event in the stream `generation` (or what its type says),
  connection failures `backend_unavailable`, timeouts `backend_timeout`, bytes that are not the
  protocol `bad_stream`, and a stream that ends without a `finish_reason` `incomplete_stream`.
- Events are `StreamEvent`s: one per chunk with text, then one final event (empty text) carrying
  the finish reason in TGI's words (`eos_token`, `stop_sequence`, `length`) and the token counts
  from `usage` (requested with `stream_options.include_usage`; counted chunks otherwise).
  Event text holds nothing a database cannot store (`inference.sanitize.storable_text`).

**Special tokens.** Reflection's tags are special tokens, and these servers drop special tokens
from their output by default. The request asks vLLM and SGLang to keep them
(`skip_special_tokens: false`); llama.cpp's `llama-server` keeps them only when started with
`--special`; TGI's Messages API always drops them (use TGI's native protocol for Reflection).
Servers that keep special tokens may also emit end-of-turn markers such as `<|eot_id|>`; those
are removed from the text here (the tags are kept), as `visible_text` does for TGI.

**Options.** A backend's URL may ask for request fields only some servers know, in its query
string: `openai+http://127.0.0.1:8080?grammar=tags` sends a GBNF grammar (`inference.grammar`)
that llama.cpp's servers sample within. Requests go to the URL without them; an option or value
this client does not know is a ValueError (`chat_options`), which the settings report at start-up.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from .chat import DEFAULT_MAX_INPUT_TOKENS, ChatMessage
from .client import (
    _ERROR_TYPES,
    DEFAULT_PARAMS,
    BackendError,
    BackendProtocolError,
    BackendUnavailableError,
    BackendValidationError,
    EventStream,
    GenerationError,
    HTTPBackendClient,
    IncompleteStreamError,
    OverloadedError,
    SamplingParams,
    StreamEvent,
    Token,
    _GenerateStream,
    _shape_error,
)
from .grammar import GRAMMARS
from .sanitize import storable_text

OPENAI_PREFIX = "openai+"
CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
# After the finish_reason only `usage` and `[DONE]` are left to come; a server that keeps the
# connection open without sending them must not cost a finished answer its read timeout.
FINISH_GRACE_SECONDS = 2.0
# End-of-turn markers that a server keeping special tokens may emit. Not `</s>`: that is also
# ordinary HTML (strikethrough) that a model may write.
CONTROL_MARKERS = ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|im_end|>", "<|endoftext|>")
_FINISH_REASONS = {"length": "length", "eos_token": "eos_token", "stop_sequence": "stop_sequence"}


def plain_url(url: str) -> str:
    """The plain http(s) base URL of a backend named `openai+http://…?options` (or already
    plain): what requests go to, without the prefix and the options."""
    return urlsplit(url)._replace(query="").geturl().removeprefix(OPENAI_PREFIX).rstrip("/")


@dataclass(frozen=True)
class ChatOptions:
    """What an `openai+` backend's URL asks of every request beyond the protocol, read from its
    query string. Each is for servers that know the field, so none is sent by default.

    `?grammar=tags`: the GBNF grammar `inference.grammar.GRAMMARS["tags"]` in the `grammar`
    field, which llama.cpp's and llama-cpp-python's servers sample within (other servers
    ignore the field or refuse the request).
    """

    grammar: str | None = None


def chat_options(url: str) -> ChatOptions:
    """The options in a backend URL's query string; ValueError names any it cannot take."""
    query = urlsplit(url).query
    if not query:
        return ChatOptions()
    if not url.startswith(OPENAI_PREFIX):
        raise ValueError("only openai+ backends take options (?grammar=…)")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise ValueError("the options must read name=value&name=value") from None
    options = dict(pairs)
    if len(options) != len(pairs):
        raise ValueError("an option is given twice")
    unknown = sorted(set(options) - {"grammar"})
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} (known: grammar)")
    name = options["grammar"]
    if name not in GRAMMARS:
        known = ", ".join(sorted(GRAMMARS))
        raise ValueError(f"unknown grammar {name!r} (known: {known})")
    return ChatOptions(grammar=GRAMMARS[name])


def visible_content(content: str) -> str:
    """A chunk's content without end-of-turn markers; Reflection's tags stay."""
    for marker in CONTROL_MARKERS:
        if marker in content:
            content = content.replace(marker, "")
    return content


# --------------------------------------------------------------------------- errors


def _error_detail(payload: Any) -> tuple[str | None, str | None, int | None]:
    """(message, type, code) from any of the error bodies these servers send, or Nones."""
    if not isinstance(payload, dict):
        return None, None, None
    error = payload.get("error")
    message: Any = None
    error_type: Any = payload.get("error_type")  # TGI: {"error": "…", "error_type": "…"}
    code: Any = None
    if isinstance(error, dict):
        # OpenAI, vLLM, llama.cpp: {"error": {"message", "type", "code"}}
        message = error.get("message") or json.dumps(error)[:200]
        error_type = error.get("type") or error_type
        code = error.get("code")
    elif error is not None:
        message = error
    elif payload.get("object") == "error" or "message" in payload:
        # Older vLLM: {"object": "error", "message", "type", "code"}
        message = payload.get("message")
        error_type = payload.get("type")
        code = payload.get("code")
    elif "detail" in payload:
        # FastAPI (llama-cpp-python): {"detail": "…"} or {"detail": [{"msg": …}, …]}
        detail = payload["detail"]
        if isinstance(detail, list):
            message = "; ".join(
                str(item.get("msg", item)) if isinstance(item, dict) else str(item)
                for item in detail
            )
        else:
            message = detail
    if message is None:
        return None, None, None
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    return (
        str(message),
        str(error_type) if error_type else None,
        code if isinstance(code, int) and not isinstance(code, bool) else None,
    )


def _classify(status: int | None, error_type: str | None) -> type[BackendError] | None:
    kind = (error_type or "").lower()
    if kind in _ERROR_TYPES:
        return _ERROR_TYPES[kind]
    if status in (429, 503) or "overload" in kind or "rate_limit" in kind:
        return OverloadedError
    if status in (400, 413, 422) or kind in (
        "invalid_request_error",
        "badrequesterror",
        "validation_error",
    ):
        return BackendValidationError
    return None


def openai_error_for_status(response: httpx.Response, body: str) -> BackendError:
    """The BackendError for a non-200 answer of an OpenAI-compatible server."""
    status = response.status_code
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    message, error_type, _ = _error_detail(payload)
    detail = message or body.strip()[:200] or response.reason_phrase
    text = f"Backend answered HTTP {status}: {detail}"
    cls = _classify(status, error_type)
    if cls is None:
        if status in (401, 403):
            text += " (check the backend API key)"
            cls = BackendProtocolError
        elif status == 404:
            text += " (is this an OpenAI-compatible server, and is the model name right?)"
            cls = BackendProtocolError
        elif status in (502, 504):
            # A gateway in front of the server: the server itself is not reachable.
            cls = BackendUnavailableError
        elif status == 500:
            cls = GenerationError
        else:
            cls = BackendProtocolError
    return cls(text, error_type=error_type, status_code=status)


def _stream_error(payload: dict[str, Any]) -> BackendError:
    """An error event inside the stream (vLLM, llama.cpp and TGI send one and stop)."""
    message, error_type, code = _error_detail(payload)
    cls = _classify(code, error_type) or GenerationError
    return cls(message or "The backend reported an error", error_type=error_type)


# --------------------------------------------------------------------------- streaming


def _finish_reason(reason: str, stop_reason: Any) -> str:
    """OpenAI's finish_reason in TGI's words, which the rest of the playground uses."""
    if reason == "stop":
        # vLLM and SGLang say which stop string matched (a token id, or null, for EOS).
        return "stop_sequence" if isinstance(stop_reason, str) else "eos_token"
    return _FINISH_REASONS.get(reason, reason)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class ChatEventStream(EventStream):
    """Async iterator over the chunks of one streamed chat completion, as `StreamEvent`s.

    Chunks without text (the role announcement, keep-alives) yield nothing. The final event
    comes after `[DONE]` (or the end of the body, or a short grace period) once a chunk has
    carried a `finish_reason`; the stream ending before that is an `IncompleteStreamError`.
    """

    __slots__ = ("_finish", "_stop_reason", "_usage", "_chunks_with_text", "_index")

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response)
        self._finish: str | None = None
        self._stop_reason: Any = None
        self._usage: dict[str, Any] = {}
        self._chunks_with_text = 0
        self._index = 0

    def _at_end(self) -> StreamEvent | None:
        if self._finish is not None:
            return self._final_event()
        self._fail(IncompleteStreamError("The backend stream ended before a finish_reason"))

    async def _read_more(self) -> StreamEvent | None:
        if self._finish is None:
            return await super()._read_more()
        try:
            async with asyncio.timeout(FINISH_GRACE_SECONDS):
                await self._read()
        except (TimeoutError, BackendError):
            # The answer is complete; only the usage figures may be missing.
            return self._final_event()
        return None

    def _final_event(self) -> StreamEvent:
        self._finished = self._complete = True
        self._pending.clear()
        self._index += 1
        generated = _count(self._usage.get("completion_tokens"))
        return StreamEvent(
            self._index,
            Token(-1, "", False, None),
            "",
            _finish_reason(self._finish or "", self._stop_reason),
            generated if generated is not None else self._chunks_with_text,
            _count(self._usage.get("prompt_tokens")),
        )

    def _next_event(self, data: str) -> StreamEvent | None:
        try:
            obj = json.loads(data)
        except ValueError as exc:
            if self._eof:
                self._fail(IncompleteStreamError("The backend stream ended inside an event"), exc)
            self._fail(_shape_error("invalid JSON", data), exc)
        if not isinstance(obj, dict):
            self._fail(_shape_error("not a JSON object", data))
        if obj.get("error") is not None or obj.get("object") == "error":
            self._fail(_stream_error(obj))
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
        choices = obj.get("choices")
        if choices is None and usage is not None:
            return None  # a usage-only chunk without the empty choices list
        if not isinstance(choices, list):
            self._fail(_shape_error("no choices list", data))
        if not choices:
            return None
        choice = choices[0]
        if not isinstance(choice, dict):
            self._fail(_shape_error("a choice is not an object", data))
        delta = choice.get("delta")
        if delta is None:
            delta = {}
        if not isinstance(delta, dict):
            self._fail(_shape_error("delta is not an object", data))
        content = delta.get("content")
        finish = choice.get("finish_reason")
        if not isinstance(content, str | None) or not isinstance(finish, str | None):
            self._fail(_shape_error("wrong field type", data))
        if finish is not None:
            self._finish = finish
            # vLLM says `stop_reason`, SGLang `matched_stop`: the stop string or token id.
            self._stop_reason = choice.get("stop_reason", choice.get("matched_stop"))
        if not content:
            return None
        self._chunks_with_text += 1
        text = storable_text(visible_content(content))
        if not text:
            return None
        self._index += 1
        return StreamEvent(self._index, Token(-1, content, False, None), text)


# --------------------------------------------------------------------------- models


def info_from_models(payload: Any) -> dict[str, Any]:
    """`GET /v1/models` in the keys the playground reads from TGI's `/info`.

    `model_id` is the first model listed. vLLM (and recent SGLang) say how long the context is
    (`max_model_len`); other servers get `DEFAULT_MAX_INPUT_TOKENS` as the prompt budget.
    """
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list) or not data:
        raise BackendProtocolError("Backend GET /v1/models lists no model")
    model = data[0]
    model_id = model.get("id") if isinstance(model, dict) else None
    if not isinstance(model_id, str) or not model_id:
        raise BackendProtocolError("Backend GET /v1/models: the first model has no id")
    info: dict[str, Any] = {
        "model_id": model_id,
        "model_sha": None,
        "version": None,
        "protocol": "openai",
        "owned_by": model.get("owned_by"),
    }
    max_len = _count(model.get("max_model_len"))
    if max_len is not None and max_len > 1:
        info["max_input_tokens"] = max_len - 1
        info["max_total_tokens"] = max_len
    else:
        info["max_input_tokens"] = DEFAULT_MAX_INPUT_TOKENS
    return info


# --------------------------------------------------------------------------- client


class OpenAIClient(HTTPBackendClient):
    """One pooled HTTP client for one OpenAI-compatible server. Safe to share between tasks.

    `base_url` may carry the `openai+` prefix the playground uses to name such backends, and
    options in its query string (`ChatOptions`; ValueError for one it cannot take).
    `model` is sent when a prompt does not name one (most servers default to their only model).
    """

    def __init__(self, base_url: str, *, model: str | None = None, **kwargs: Any) -> None:
        super().__init__(plain_url(base_url), **kwargs)
        self.model = model
        self.options = chat_options(base_url)

    def request_body(
        self,
        prompt: str | Sequence[Mapping[str, str]],
        params: SamplingParams = DEFAULT_PARAMS,
    ) -> dict[str, Any]:
        """The JSON body of a streamed chat completion (ValueError for invalid params)."""
        params.validate()
        messages: list[ChatMessage]
        if hasattr(prompt, "messages"):  # a ChatPrompt
            messages = [dict(m) for m in prompt.messages]
        elif isinstance(prompt, str):
            messages = [{"role": "user", "content": prompt}]
        else:
            messages = [dict(m) for m in prompt]
        body: dict[str, Any] = {
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            # Keep Reflection's tags (special tokens): vLLM and SGLang honour these; servers
            # that do not know them ignore them.
            "skip_special_tokens": False,
            "spaces_between_special_tokens": False,
        }
        model = getattr(prompt, "model", None) or self.model
        if model:
            body["model"] = model
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if self.options.grammar is not None:
            body["grammar"] = self.options.grammar
        return body

    def generate_stream(
        self,
        prompt: str | Sequence[Mapping[str, str]],
        params: SamplingParams = DEFAULT_PARAMS,
    ) -> AbstractAsyncContextManager[EventStream]:
        """Stream a chat completion. Use as `async with client.generate_stream(p) as events:`.

        `prompt` is a `ChatPrompt` (its messages are sent), a list of messages, or a plain
        string (sent as one user message). Raises ValueError at once for invalid params;
        BackendError subclasses on entering the block or while iterating.
        """
        return _GenerateStream(
            self._http,
            self.request_body(prompt, params),
            path=CHAT_PATH,
            stream_class=ChatEventStream,
            status_error=openai_error_for_status,
        )
