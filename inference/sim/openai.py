"""The OpenAI-compatible routes, as vLLM's server answers them: `POST /v1/chat/completions`
(streamed or not) and `GET /v1/models`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .answers import EOT_ID, EOT_TEXT, SimToken, estimate_prompt_tokens
from .config import SimConfig
from .core import Simulator
from .engine import Job
from .errors import ClientGone, InferError, Rejection, SimulatedDrop
from .generate_request import GenerateRequest, is_int, is_number
from .wire import abort, json_response, read_json, sse


class _ChatRejection(Exception):
    """An OpenAI-style error answer: HTTP status with `{"error": {message, type, param, code}}`."""

    def __init__(self, status: int, message: str, kind: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param

    def body(self) -> dict[str, Any]:
        return _openai_error(self.status, self.message, self.kind, self.param)


def _openai_error(status: int, message: str, kind: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


def _bad_request(message: str, param: str | None = None) -> _ChatRejection:
    return _ChatRejection(400, message, "BadRequestError", param)


_CHAT_ERROR_KINDS = {
    "validation": "BadRequestError",
    "overloaded": "overloaded",
    "generation": "InternalServerError",
}
# TGI's validation answers 422; vLLM (and OpenAI) answer a bad request with 400.
_CHAT_STATUS = {422: 400, 424: 500}


def _chat_error(error: InferError) -> dict[str, Any]:
    status = _CHAT_STATUS.get(error.status, error.status)
    return _openai_error(status, error.message, _CHAT_ERROR_KINDS.get(error.error_type, "error"))


@dataclass
class ChatRequest:
    """A parsed chat completion request and the generate request it becomes."""

    generate: GenerateRequest
    stream: bool = False
    include_usage: bool = False
    skip_special_tokens: bool = True


def _content_text(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only text parts are understood here
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text"):
                raise _bad_request(f"messages[{index}]: only text content parts are supported")
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    if content is None:
        return ""
    raise _bad_request(f"messages[{index}].content must be a string or a list of parts")


def render_chat(messages: list[tuple[str, str]]) -> str:
    """The Llama 3.1 chat template, roughly as a chat server applies it (no date header)."""
    parts = ["<|begin_of_text|>"]
    for role, content in messages:
        parts.append(f"<|start_header_id|>{role}<|end_header_id|>\n\n{content.strip()}{EOT_TEXT}")
    parts.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(parts)


def _number_field(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if not is_number(value):
        raise _bad_request(f"`{name}` must be a number", name)
    return float(value)


def parse_chat_request(body: Any, config: SimConfig) -> ChatRequest:
    """vLLM's rules for the fields the playground sends; anything else is ignored, as there."""
    if not isinstance(body, dict):
        raise _bad_request("The request body must be a JSON object")
    model = body.get("model")
    if model is not None and model != config.model_id:
        raise _ChatRejection(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise _bad_request("`messages` must be a non-empty list", "messages")
    messages = []
    for index, item in enumerate(raw_messages):
        if not isinstance(item, dict) or not isinstance(item.get("role"), str):
            raise _bad_request(f"messages[{index}] must be an object with a role", "messages")
        messages.append((item["role"], _content_text(item.get("content"), index)))
    flags = {}
    for name, default in (("stream", False), ("skip_special_tokens", True)):
        value = body.get(name, default)
        if not isinstance(value, bool):
            raise _bad_request(f"`{name}` must be a boolean", name)
        flags[name] = value
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise _bad_request("`stream_options` must be an object", "stream_options")
    if body.get("n", 1) != 1:
        raise _bad_request("Only n=1 is supported", "n")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (not is_int(max_tokens) or max_tokens < 1):
        raise _bad_request("`max_tokens` must be a positive integer", "max_tokens")
    temperature = _number_field(body, "temperature")
    if temperature is not None and temperature < 0:
        raise _bad_request("`temperature` must be >= 0", "temperature")
    top_p = _number_field(body, "top_p")
    if top_p is not None and not 0 < top_p <= 1:
        raise _bad_request("`top_p` must be in (0, 1]", "top_p")
    seed = body.get("seed")
    if seed is not None and (not is_int(seed) or seed < 0):
        raise _bad_request("`seed` must be a non-negative integer", "seed")
    stop = body.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
        raise _bad_request("`stop` must be a string or a list of strings", "stop")
    inputs = render_chat(messages)
    prompt_tokens = estimate_prompt_tokens(inputs)
    if max_tokens is not None and prompt_tokens + max_tokens > config.max_total_tokens:
        # vLLM's check (TGI would only cap the generation): the window is max_model_len.
        raise _bad_request(
            f"This model's maximum context length is {config.max_total_tokens} tokens. "
            f"However, you requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in "
            f"the messages, {max_tokens} in the completion). Please reduce the length of the "
            "messages or completion."
        )
    greedy = temperature == 0
    generate = GenerateRequest(
        inputs=inputs,
        stream=flags["stream"],
        # Temperature 0 is greedy decoding; top_p 1 is no nucleus filter at all.
        temperature=None if greedy else temperature,
        top_p=None if top_p is None or top_p >= 1 else top_p,
        do_sample=not greedy,
        max_new_tokens=max_tokens,
        stop=stop,
        seed=seed,
        details=True,
    )
    return ChatRequest(
        generate=generate,
        stream=flags["stream"],
        include_usage=options.get("include_usage") is True,
        skip_special_tokens=flags["skip_special_tokens"],
    )


class OpenAIRoutes:
    """The handlers of the OpenAI-compatible routes, on the shared simulator state."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    async def models(self, request: web.Request) -> web.Response:
        model_id = self.sim.config.model_id
        return json_response(
            {
                "object": "list",
                # max_model_len as vLLM reports it, so OpenAI-protocol clients learn the window.
                "data": [
                    {
                        "id": model_id,
                        "object": "model",
                        "created": 0,
                        "owned_by": model_id,
                        "max_model_len": self.sim.config.max_total_tokens,
                    }
                ],
            }
        )

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        """`POST /v1/chat/completions`, as vLLM's OpenAI-compatible server answers it.

        Tags are special tokens, dropped unless the request says `skip_special_tokens: false`
        (vLLM's extension); the end-of-turn token never appears. Errors before the stream are
        HTTP statuses with `{"error": {message, type, param, code}}` (overloaded: 429); a fault
        during the stream is one such error event, then `[DONE]`.
        """
        try:
            chat = parse_chat_request(await read_json(request), self.sim.config)
        except Rejection as rejection:
            return json_response(
                _openai_error(rejection.status, rejection.text, "BadRequestError"),
                status=rejection.status,
            )
        except _ChatRejection as rejection:
            return json_response(rejection.body(), status=rejection.status)
        if chat.stream:
            return await self._chat_stream(request, chat)
        return await self._chat_json(request, chat)

    # ---- the responses

    @staticmethod
    def _chat_text(token: SimToken, text: str, chat: ChatRequest) -> str:
        if token.id == EOT_ID:
            return ""  # vLLM removes the end-of-turn token's text even when keeping specials
        if token.special and chat.skip_special_tokens:
            return ""
        return text

    @staticmethod
    def _chat_finish(job: Job, finish: str) -> tuple[str, str | None]:
        """OpenAI's finish_reason, and vLLM's stop_reason (the stop string that matched)."""
        if finish == "length":
            return "length", None
        matched = next((stop for stop in job.stop if job.tail.endswith(stop)), None)
        return "stop", matched if finish == "stop_sequence" else None

    @staticmethod
    def _usage(job: Job) -> dict[str, int]:
        return {
            "prompt_tokens": job.input_length,
            "completion_tokens": job.emitted,
            "total_tokens": job.input_length + job.emitted,
        }

    async def _chat_stream(self, request: web.Request, chat: ChatRequest) -> web.StreamResponse:
        started = asyncio.get_running_loop().time()
        self.sim.count_request()
        response = self.sim.event_stream()
        with self.sim.streaming_jobs() as jobs:
            try:
                # Unlike TGI's native route, validation and overload answer before the stream.
                with self.sim.permit(1):
                    jobs.extend(await self.sim.start_jobs(chat.generate, 1))
                    await response.prepare(request)
                    await self._stream_chat_job(request, response, chat, jobs[0], started)
            except InferError as error:
                self.sim.record_failure(error)
                if not response.prepared:
                    status = _CHAT_STATUS.get(error.status, error.status)
                    return json_response(_chat_error(error), status=status)
                with contextlib.suppress(ConnectionError):
                    await response.write(sse(_chat_error(error)) + b"data: [DONE]\n\n")
        return response

    async def _stream_chat_job(
        self,
        request: web.Request,
        response: web.StreamResponse,
        chat: ChatRequest,
        job: Job,
        started: float,
    ) -> None:
        chunk_id = f"chatcmpl-{job.seed:016x}"
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None, stop: Any = None) -> bytes:
            choice = {
                "index": 0,
                "delta": delta,
                "logprobs": None,
                "finish_reason": finish,
                "stop_reason": stop,
            }
            return sse(
                {
                    "id": chunk_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": self.sim.config.model_id,
                    "choices": [choice],
                }
            )

        await response.write(chunk({"role": "assistant", "content": ""}))
        async for token, text, finish in self.sim.streamed_tokens(request, response, job):
            content = self._chat_text(token, text, chat)
            if finish is None:
                if content:
                    await response.write(chunk({"content": content}))
                continue
            self.sim.record_success(job, started)
            reason, stop = self._chat_finish(job, finish)
            tail = chunk({"content": content}, reason, stop)
            if chat.include_usage:
                tail += sse(
                    {
                        "id": chunk_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": self.sim.config.model_id,
                        "choices": [],
                        "usage": self._usage(job),
                    }
                )
            await self.sim.end_stream(response, tail + b"data: [DONE]\n\n")

    async def _chat_json(self, request: web.Request, chat: ChatRequest) -> web.StreamResponse:
        started = asyncio.get_running_loop().time()
        self.sim.count_request()
        with self.sim.request_jobs() as jobs:
            try:
                with self.sim.permit(1):
                    jobs.extend(await self.sim.start_jobs(chat.generate, 1))
                    tokens = await self.sim.collect(request, jobs[0])
                    self.sim.record_success(jobs[0], started)
            except InferError as error:
                self.sim.record_failure(error)
                status = _CHAT_STATUS.get(error.status, error.status)
                return json_response(_chat_error(error), status=status)
            except SimulatedDrop:
                self.sim.stats.faults += 1
                abort(request)
                return web.Response()
            except ClientGone:
                self.sim.record_drop()
                return web.Response()
        job = jobs[0]
        reason, stop = self._chat_finish(job, job.finish_reason or "eos_token")
        content = "".join(self._chat_text(token, text, chat) for token, text in tokens)
        return json_response(
            {
                "id": f"chatcmpl-{job.seed:016x}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.sim.config.model_id,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "logprobs": None,
                        "finish_reason": reason,
                        "stop_reason": stop,
                    }
                ],
                "usage": self._usage(job),
            }
        )
