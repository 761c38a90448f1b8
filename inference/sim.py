"""A TGI-compatible simulator: `python -m inference.sim`.

It speaks text-generation-inference's wire format (see shared/reference/tgi-wire-contract.md and
shared/contracts/tgi-openapi.json) closely enough for TGI clients to work against it unchanged,
with no GPU and no model:

- `POST /generate_stream` and `POST /` with `"stream": true`: Server-Sent Events, always HTTP 200,
  errors as a final `{"error", "error_type"}` event; `POST /generate` and `POST /` without stream:
  JSON, errors as HTTP statuses with an ErrorResponse body.
- `GET /info`, `/health`, `/ping`, `/`, `/v1/models`, and `/metrics` with TGI's metric names,
  written by hand because prometheus_client would append `_total` to counters and TGI does not.
- `POST /v1/chat/completions` (streamed or not) as vLLM's OpenAI-compatible server answers it, so
  the playground's OpenAI protocol (`openai+` backends) can be tested without a GPU: the same
  engine, limits and faults; tags dropped unless `skip_special_tokens: false`; `/v1/models`
  reports `max_model_len` as vLLM does. (TGI's own chat route always drops the tags.)
- `GET /sim/stats`: an extension (JSON) so tests can watch concurrency and disconnects.
- `GET /dcgm/metrics`: an extension, simulated GPUs in dcgm-exporter's format (busy with the batch).

The "model" plays back the scripted Reflection-style answer of a sample prompt
(`inference.samples`), or an honest generic answer saying it is a simulator. Tags are special
tokens, as in Reflection-70B's tokenizer, so the final `generated_text` lacks them.

Latency follows TGI's continuous batching (contract section 6): one engine task runs decode steps,
every stream in the running batch gets one token per step, and a step takes
t(B) = t(1) * (1 + batch_slowdown * (B - 1)). A request joins the batch at the first step boundary
after validation and its prefill (prompt tokens / prefill speed). `max_concurrent_requests` is a
non-blocking limit: one request too many fails at once with `overloaded`, as in TGI. A client
that closes its stream is noticed at its next token (or at once, when the runner cancels handlers
on disconnect, as `main()` does) and counted as `tgi_request_failure{err="dropped"}`.

A stream holds its permit (and counts in `/sim/stats` `active`) until its response has ended,
not just until its final event is written: TGI frees the permit only when the response stream
ends. `stream_end_ms` puts a delay between the final event and the end of the response, during
which the request keeps its permit even if the client has left meanwhile; so a client that hangs
up at the final event and at once sends the next request can find the server still full.

For tests and benchmarks it can inject faults (an error event, a cut connection, a slow start),
stamp each token with its emission time, and split the tags into ordinary text pieces.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import random
import re
import signal
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from inference.samples import find_sample_by_prompt

logger = logging.getLogger(__name__)

TGI_VERSION = "3.3.6-dev0"
ROUTER_NAME = "text-generation-router"
MAX_BEST_OF = 2
MAX_STOP_SEQUENCES = 4
MAX_TOP_N_TOKENS = 5
MAX_CLIENT_BATCH_SIZE = 4
VALIDATION_WORKERS = 2
# TGI validates (and reserves KV cache for) at most this many new tokens at a time.
DEFAULT_GENERATION_LENGTH = 1024
PAYLOAD_LIMIT = 2_000_000
KEEP_ALIVE_SECONDS = 15.0

REFLECTION_TAGS = (
    "<thinking>",
    "</thinking>",
    "<reflection>",
    "</reflection>",
    "<output>",
    "</output>",
)
# Ids from the Llama 3.1 reserved special-token range, where Reflection's tags were added.
TAG_TOKEN_IDS = {tag: 128011 + offset for offset, tag in enumerate(REFLECTION_TAGS)}
EOT_TEXT = "<|eot_id|>"
EOT_ID = 128009
_ORDINARY_VOCAB = 128000

_TAG_SPLIT = re.compile("(" + "|".join(re.escape(tag) for tag in REFLECTION_TAGS) + ")")
# A rough imitation of a BPE pre-tokenizer: contractions, words with their leading space,
# numbers in groups of up to three digits, single punctuation marks, runs of newlines, and
# whatever is left one character at a time (so the pieces always add up to the input).
_PIECE = re.compile(
    r"'(?:s|t|re|ve|m|ll|d)\b"
    r"| ?[^\W\d_]+"
    r"|\d{1,3}"
    r"| ?[^\w\s]"
    r"| ?_"
    r"|\n+"
    r"| +"
    r"|[\s\S]"
)
_MAX_PIECE_CHARS = 6
_LAST_USER_TURN = re.compile(
    r"<\|start_header_id\|>user<\|end_header_id\|>\n\n(.*?)(?:<\|eot_id\|>|\Z)", re.DOTALL
)
_QUOTE_CHARS = 160
STAMP_FORMAT = "⟦{:.6f}⟧"


@dataclass
class SimConfig:
    """Everything that shapes the simulator's behaviour; `main()` has one flag per field."""

    model_id: str = "reflection-playground/simulator"
    tokens_per_second: float = 40.0
    batch_slowdown: float = 0.03
    prefill_tokens_per_second: float = 4000
    validation_ms: float = 2.0
    stream_end_ms: float = 0.0
    max_concurrent_requests: int = 128
    max_input_tokens: int = 8191
    max_total_tokens: int = 8192
    seed: int | None = None
    stamp_emission_times: bool = False
    split_tags: bool = False
    fault_error_after_tokens: int | None = None
    fault_drop_after_tokens: int | None = None
    fault_slow_start_seconds: float = 0.0
    fault_rate: float = 1.0

    def __post_init__(self) -> None:
        if self.tokens_per_second <= 0 or self.prefill_tokens_per_second <= 0:
            raise ValueError("tokens_per_second and prefill_tokens_per_second must be > 0")
        delays = (self.validation_ms, self.stream_end_ms, self.fault_slow_start_seconds)
        if self.batch_slowdown < 0 or min(delays) < 0:
            raise ValueError(
                "batch_slowdown, validation_ms, stream_end_ms and fault_slow_start_seconds "
                "must be >= 0"
            )
        if self.max_concurrent_requests < 1:
            raise ValueError("max_concurrent_requests must be >= 1")
        if not 0 < self.max_input_tokens < self.max_total_tokens:
            raise ValueError("need 0 < max_input_tokens < max_total_tokens (as TGI's launcher)")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be between 0 and 1")
        for name in ("fault_error_after_tokens", "fault_drop_after_tokens"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0")


# --------------------------------------------------------------------------------------------
# The "model": choosing an answer and cutting it into tokens


@dataclass(frozen=True, slots=True)
class SimToken:
    id: int
    text: str
    special: bool
    logprob: float


def extract_last_user_message(inputs: str) -> str:
    """The last user turn of a Llama 3.1 chat prompt, or the whole text if it has no such turn."""
    turns = _LAST_USER_TURN.findall(inputs)
    return turns[-1] if turns else inputs


def _quote(question: str) -> str:
    # The quote is echoed inside the answer, so a tag in the question must not end a section.
    text = " ".join(_TAG_SPLIT.sub("", question).split())
    if len(text) > _QUOTE_CHARS:
        text = text[: _QUOTE_CHARS - 1].rstrip() + "…"
    return text or "(an empty message)"


def generic_answer(question: str) -> str:
    """The honest answer for a prompt that is not one of the samples."""
    quote = _quote(question)
    return (
        "<thinking>\n"
        f'The question is: "{quote}"\n\n'
        "To answer it, I would work through it step by step and check each step before "
        "giving a final answer.\n\n"
        "<reflection>\n"
        "I cannot actually do that here. This reply comes from the playground's simulator, "
        "which streams prepared text and has no language model behind it. Any reasoning I "
        "wrote about this question would be made up, so the honest thing is to say so "
        "instead of pretending to answer.\n"
        "</reflection>\n\n"
        "The right answer is to explain where this reply comes from and what would give a "
        "real one.\n"
        "</thinking>\n\n"
        "<output>\n"
        "This answer comes from the playground's **simulator**, not from a real model, so it "
        "cannot actually answer your question:\n\n"
        f"> {quote}\n\n"
        "The sample prompts have prepared answers that show the full reasoning format. For "
        "real answers, connect the playground to a text-generation-inference server.\n"
        "</output>"
    )


def choose_answer(inputs: str) -> str:
    """The scripted answer for a sample prompt, else the generic simulator answer."""
    question = extract_last_user_message(inputs)
    sample = find_sample_by_prompt(question)
    return sample.scripted_answer if sample is not None else generic_answer(question)


@functools.lru_cache(maxsize=65536)
def _token_id(text: str) -> int:
    # The same text always gets the same id, as it would in a real vocabulary.
    return zlib.crc32(text.encode("utf-8")) % _ORDINARY_VOCAB


def _logprob(draw: float, scale: float) -> float:
    # Cubing skews the draws towards 0, as a confident model's logprobs are.
    return -round(draw**3 * scale, 4)


def _ordinary_token(text: str, rng: random.Random) -> SimToken:
    return SimToken(_token_id(text), text, False, _logprob(rng.random(), 2.5))


@functools.lru_cache(maxsize=64)
def _segments(answer: str) -> tuple[tuple[bool, tuple[str, ...]], ...]:
    """The part of tokenizing that needs no randomness: (is_tag, pieces) per segment."""
    segments = []
    for segment in _TAG_SPLIT.split(answer):
        if segment in TAG_TOKEN_IDS:
            segments.append((True, (segment,)))
        elif segment:
            segments.append((False, tuple(m[0] for m in _PIECE.finditer(segment))))
    return tuple(segments)


def _split_tag(tag: str, rng: random.Random) -> list[str]:
    # Ordinary text pieces for a tag, cut at random points so parsers see tags split anywhere.
    cuts = sorted(rng.sample(range(1, len(tag)), k=rng.randint(1, 3)))
    bounds = [0, *cuts, len(tag)]
    return [tag[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def tokenize_answer(answer: str, rng: random.Random, *, split_tags: bool = False) -> list[SimToken]:
    """Cut `answer` into tokens the way a BPE tokenizer roughly would, ending with `<|eot_id|>`.

    The six Reflection tags are single special tokens, unless `split_tags`, which turns each into
    a few ordinary pieces. Non-special token texts plus tag texts concatenate back to `answer`.
    Words longer than six characters are cut into pieces of three to six at random.
    """
    tokens: list[SimToken] = []
    for is_tag, pieces in _segments(answer):
        if is_tag:
            tag = pieces[0]
            if split_tags:
                tokens.extend(_ordinary_token(part, rng) for part in _split_tag(tag, rng))
            else:
                tokens.append(SimToken(TAG_TOKEN_IDS[tag], tag, True, _logprob(rng.random(), 0.1)))
            continue
        for piece in pieces:
            while len(piece) > _MAX_PIECE_CHARS:
                cut = rng.randint(3, _MAX_PIECE_CHARS)
                tokens.append(_ordinary_token(piece[:cut], rng))
                piece = piece[cut:]
            tokens.append(_ordinary_token(piece, rng))
    tokens.append(SimToken(EOT_ID, EOT_TEXT, True, _logprob(rng.random(), 0.1)))
    return tokens


def estimate_prompt_tokens(text: str) -> int:
    """About four bytes of UTF-8 per token, like Llama 3's tokenizer on English text."""
    return math.ceil(len(text.encode("utf-8")) / 4)


# --------------------------------------------------------------------------------------------
# Metrics in Prometheus text format, as metrics-exporter-prometheus renders TGI's


def _duration_buckets() -> list[float]:
    # Computed the way TGI's router does, so the `le` labels match to the last digit.
    buckets = []
    value = 0.0001
    for _ in range(35):
        value *= 1.5
        buckets.append(value)
    return buckets


def _linear_buckets(maximum: int) -> list[float]:
    return [maximum / 100.0 * n for n in range(1, 101)]


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Histogram:
    __slots__ = ("bounds", "counts", "total", "count")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.bounds, value)  # the first bucket with value <= le
        if i < len(self.counts):
            self.counts[i] += 1
        self.total += value
        self.count += 1

    def render(self, name: str) -> list[str]:
        lines = []
        cumulative = 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            cumulative += n
            lines.append(f'{name}_bucket{{le="{_number(bound)}"}} {cumulative}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{name}_sum {_number(self.total)}")
        lines.append(f"{name}_count {self.count}")
        return lines


class Metrics:
    """TGI's request metrics. Like TGI's exporter, a series appears only once it is recorded."""

    def __init__(self, config: SimConfig) -> None:
        self._counters: dict[tuple[str, str], int] = {}
        self._histograms: dict[str, _Histogram] = {}
        duration = _duration_buckets()
        self._buckets = {
            "tgi_request_duration": duration,
            "tgi_request_validation_duration": duration,
            "tgi_request_queue_duration": duration,
            "tgi_request_inference_duration": duration,
            "tgi_request_mean_time_per_token_duration": duration,
            "tgi_request_input_length": _linear_buckets(config.max_input_tokens),
            "tgi_request_generated_tokens": _linear_buckets(config.max_total_tokens),
            "tgi_request_max_new_tokens": _linear_buckets(config.max_total_tokens),
        }

    def inc(self, name: str, labels: str = "") -> None:
        key = (name, labels)
        self._counters[key] = self._counters.get(key, 0) + 1

    def failure(self, err: str) -> None:
        self.inc("tgi_request_failure", f'err="{err}"')

    def observe(self, name: str, value: float) -> None:
        histogram = self._histograms.get(name)
        if histogram is None:
            histogram = self._histograms[name] = _Histogram(self._buckets[name])
        histogram.observe(value)

    def render(self, gauges: dict[str, float]) -> str:
        lines: list[str] = []
        for name in sorted({name for name, _ in self._counters}):
            lines.append(f"# TYPE {name} counter")
            for (counter, labels), value in sorted(self._counters.items()):
                if counter == name:
                    series = f"{name}{{{labels}}}" if labels else name
                    lines.append(f"{series} {value}")
            lines.append("")
        for name, value in sorted(gauges.items()):
            lines += [f"# TYPE {name} gauge", f"{name} {_number(value)}", ""]
        for name in sorted(self._histograms):
            lines.append(f"# TYPE {name} histogram")
            lines += self._histograms[name].render(name)
            lines.append("")
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Simulated GPUs, as NVIDIA's dcgm-exporter reports them (an extension: `GET /dcgm/metrics`)

SIM_GPUS = 2  # a 70B model in bf16 needs two 80 GB GPUs (tensor parallel)
SIM_GPU_MEMORY_MIB = 81559
# TGI reserves its KV cache at start-up, so memory use is high and nearly flat under load.
SIM_GPU_RESERVED_MIB = 75200
_DCGM_HELP = {
    "DCGM_FI_DEV_GPU_UTIL": ("GPU utilization (in %).", "gauge"),
    "DCGM_FI_DEV_FB_USED": ("Framebuffer memory used (in MiB).", "gauge"),
    "DCGM_FI_DEV_FB_FREE": ("Framebuffer memory free (in MiB).", "gauge"),
    "DCGM_FI_DEV_GPU_TEMP": ("GPU temperature (in C).", "gauge"),
    "DCGM_FI_DEV_POWER_USAGE": ("Power draw (in W).", "gauge"),
}


def render_dcgm(batch: int) -> str:
    """Utilization saturates with the batch (every step keeps the GPUs busy); temperature and
    power follow utilization. The model name says "Simulated" so dashboards can tell."""
    util = round(100 * (1 - math.exp(-batch / 4)))
    used = SIM_GPU_RESERVED_MIB + 24 * batch
    values = {
        "DCGM_FI_DEV_GPU_UTIL": util,
        "DCGM_FI_DEV_FB_USED": used,
        "DCGM_FI_DEV_FB_FREE": SIM_GPU_MEMORY_MIB - used,
        "DCGM_FI_DEV_GPU_TEMP": round(34 + 0.45 * util),
        "DCGM_FI_DEV_POWER_USAGE": round(85 + 5.9 * util, 3),
    }
    lines = []
    for name, value in values.items():
        help_text, kind = _DCGM_HELP[name]
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for gpu in range(SIM_GPUS):
            labels = (
                f'gpu="{gpu}",UUID="GPU-5e1a0000-0000-4000-8000-00000000000{gpu}",'
                f'pci_bus_id="00000000:{0x18 + gpu:02X}:00.0",device="nvidia{gpu}",'
                'modelName="Simulated GPU",Hostname="simulator"'
            )
            lines.append(f"{name}{{{labels}}} {_number(value)}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Errors


class InferError(Exception):
    """An error TGI reports as ErrorResponse: an HTTP status, or a final SSE event on streams."""

    def __init__(self, status: int, error_type: str, message: str, metric: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.metric = metric

    def body(self) -> dict[str, str]:
        return {"error": self.message, "error_type": self.error_type}


def _validation(detail: str) -> InferError:
    return InferError(422, "validation", f"Input validation error: {detail}", "validation")


def _overloaded() -> InferError:
    return InferError(429, "overloaded", "Model is overloaded", "overloaded")


def _generation(detail: str) -> InferError:
    return InferError(
        424, "generation", f"Request failed during generation: {detail}", "generation"
    )


class _Rejection(Exception):
    """A request that axum's JSON extractor rejects before TGI's code runs: plain text."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text

    def response(self) -> web.Response:
        return web.Response(status=self.status, text=self.text, content_type="text/plain")


class _ClientGone(Exception):
    """The client closed the connection before the generation ended."""


class _SimulatedDrop(Exception):
    """The fault injection asks to cut the connection."""


# --------------------------------------------------------------------------------------------
# Request parsing, with serde's type rules for GenerateRequest


_DESERIALIZE = "Failed to deserialize the JSON body into the target type"


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f"string {json.dumps(value)}"
    if isinstance(value, list):
        return "sequence"
    return "map"


def _type_error(path: str, value: Any, expected: str) -> _Rejection:
    return _Rejection(
        422, f"{_DESERIALIZE}: {path}: invalid type: {_describe(value)}, expected {expected}"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_UNSIGNED = {"u32": 2**32 - 1, "u64": 2**64 - 1, "usize": 2**64 - 1}


def _opt_uint(params: dict[str, Any], name: str, kind: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if not _is_int(value):
        raise _type_error(f"parameters.{name}", value, kind)
    if not 0 <= value <= _UNSIGNED[kind]:
        raise _Rejection(
            422,
            f"{_DESERIALIZE}: parameters.{name}: invalid value: integer `{value}`, expected {kind}",
        )
    return value


def _opt_int(params: dict[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if not _is_int(value):
        raise _type_error(f"parameters.{name}", value, "i32")
    if not -(2**31) <= value < 2**31:
        raise _Rejection(
            422,
            f"{_DESERIALIZE}: parameters.{name}: invalid value: integer `{value}`, expected i32",
        )
    return value


def _opt_float(params: dict[str, Any], name: str) -> float | None:
    value = params.get(name)
    if value is None:
        return None
    if not _is_number(value):
        raise _type_error(f"parameters.{name}", value, "f32")
    return float(value)


def _flag(params: dict[str, Any], name: str, default: bool) -> bool:
    if name not in params:
        return default
    value = params[name]
    if not isinstance(value, bool):
        raise _type_error(f"parameters.{name}", value, "a boolean")
    return value


@dataclass
class GenerateRequest:
    """A parsed GenerateRequest; fields mirror TGI's GenerateParameters."""

    inputs: str
    stream: bool = False
    best_of: int | None = None
    temperature: float | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    typical_p: float | None = None
    do_sample: bool = False
    max_new_tokens: int | None = None
    return_full_text: bool | None = None
    stop: list[str] = field(default_factory=list)
    truncate: int | None = None
    watermark: bool = False
    details: bool = False
    decoder_input_details: bool = False
    seed: int | None = None
    top_n_tokens: int | None = None

    @property
    def sampling(self) -> bool:
        # TGI samples when asked to, or when any logits warper is active.
        return (
            self.do_sample
            or self.watermark
            or (self.temperature is not None and self.temperature != 1.0)
            or bool(self.top_k)
            or (self.top_p is not None and self.top_p < 1.0)
            or (self.typical_p is not None and self.typical_p < 1.0)
        )


def parse_generate_request(body: Any, *, compat: bool) -> GenerateRequest:
    """Apply serde's rules for GenerateRequest (CompatGenerateRequest when `compat`)."""
    if not isinstance(body, dict):
        target = "CompatGenerateRequest" if compat else "GenerateRequest"
        raise _Rejection(
            422, f"{_DESERIALIZE}: invalid type: {_describe(body)}, expected struct {target}"
        )
    if "inputs" not in body:
        raise _Rejection(422, f"{_DESERIALIZE}: missing field `inputs`")
    inputs = body["inputs"]
    if not isinstance(inputs, str):
        raise _type_error("inputs", inputs, "a string")
    stream = False
    if compat and "stream" in body:
        stream = body["stream"]
        if not isinstance(stream, bool):
            raise _type_error("stream", stream, "a boolean")
    if "parameters" not in body:
        # TGI's default_parameters(): the one place where do_sample defaults to true.
        return GenerateRequest(inputs=inputs, stream=stream, do_sample=True)
    params = body["parameters"]
    if not isinstance(params, dict):
        raise _type_error("parameters", params, "struct GenerateParameters")
    stop = params.get("stop", [])
    if not isinstance(stop, list):
        raise _type_error("parameters.stop", stop, "a sequence")
    for item in stop:
        if not isinstance(item, str):
            raise _type_error("parameters.stop", item, "a string")
    return_full_text = params.get("return_full_text")
    if return_full_text is not None and not isinstance(return_full_text, bool):
        raise _type_error("parameters.return_full_text", return_full_text, "a boolean")
    adapter_id = params.get("adapter_id")
    if adapter_id is not None and not isinstance(adapter_id, str):
        raise _type_error("parameters.adapter_id", adapter_id, "a string")
    grammar = params.get("grammar")
    if grammar is not None and not (isinstance(grammar, dict) and "type" in grammar):
        raise _Rejection(
            422, f"{_DESERIALIZE}: parameters.grammar: expected internally tagged enum GrammarType"
        )
    return GenerateRequest(
        inputs=inputs,
        stream=stream,
        best_of=_opt_uint(params, "best_of", "usize"),
        temperature=_opt_float(params, "temperature"),
        repetition_penalty=_opt_float(params, "repetition_penalty"),
        frequency_penalty=_opt_float(params, "frequency_penalty"),
        top_k=_opt_int(params, "top_k"),
        top_p=_opt_float(params, "top_p"),
        typical_p=_opt_float(params, "typical_p"),
        do_sample=_flag(params, "do_sample", False),
        max_new_tokens=_opt_uint(params, "max_new_tokens", "u32"),
        return_full_text=return_full_text,
        stop=stop,
        truncate=_opt_uint(params, "truncate", "usize"),
        watermark=_flag(params, "watermark", False),
        details=_flag(params, "details", False),
        decoder_input_details=_flag(params, "decoder_input_details", False),
        seed=_opt_uint(params, "seed", "u64"),
        top_n_tokens=_opt_uint(params, "top_n_tokens", "u32"),
    )


@dataclass(frozen=True)
class _Validated:
    input_length: int
    max_new_tokens: int  # the whole budget (TGI re-queues every 1024 tokens; one stream to us)
    chunk: int  # min(max_new_tokens, 1024): what TGI validates and reserves per turn


def validate_request(req: GenerateRequest, config: SimConfig) -> _Validated:
    """TGI's Validation::validate, in its order, with its messages."""
    best_of = req.best_of if req.best_of is not None else 1
    sampling_asked = req.do_sample or any(
        v is not None for v in (req.temperature, req.top_k, req.top_p, req.typical_p)
    )
    if best_of > 1 and not sampling_asked:
        raise _validation("you must use sampling when `best_of` is > 1")
    if (req.temperature if req.temperature is not None else 1.0) <= 0.0:
        raise _validation("`temperature` must be strictly positive")
    if (req.repetition_penalty if req.repetition_penalty is not None else 1.0) <= 0.0:
        raise _validation("`repetition_penalty` must be strictly positive")
    if not -2.0 <= (req.frequency_penalty or 0.0) <= 2.0:
        raise _validation("`frequency_penalty` must be >= -2.0 and <= 2.0")
    if req.top_p is not None and not 0.0 < req.top_p < 1.0:
        raise _validation("`top_p` must be > 0.0 and < 1.0")
    if req.typical_p is not None and not 0.0 < req.typical_p < 1.0:
        raise _validation("`typical_p` must be > 0.0 and < 1.0")
    if req.top_k is not None and req.top_k <= 0:
        raise _validation("`top_k` must be strictly positive")
    if req.max_new_tokens == 0:
        raise _validation("`max_new_tokens` must be strictly positive")
    if len(req.stop) > MAX_STOP_SEQUENCES:
        raise _validation(
            f"`stop` supports up to {MAX_STOP_SEQUENCES} stop sequences. Given: {len(req.stop)}"
        )
    if req.seed is not None and best_of > 1:
        raise _validation("`seed` must not be set when `best_of` > 1")
    if req.top_n_tokens is not None and req.top_n_tokens > MAX_TOP_N_TOKENS:
        raise _validation(
            f"`top_n_tokens` must be >= 0 and <= {MAX_TOP_N_TOKENS}. Given: {req.top_n_tokens}"
        )
    if not req.inputs:
        raise _validation("`inputs` cannot be empty")
    if req.truncate is not None and not 0 < req.truncate <= config.max_input_tokens:
        raise _validation(
            "`truncate` must be strictly positive and less than "
            f"{config.max_input_tokens}. Given: {req.truncate}"
        )
    input_length = estimate_prompt_tokens(req.inputs)
    if req.truncate is not None:
        input_length = min(input_length, req.truncate)
    if req.max_new_tokens is not None:
        budget = req.max_new_tokens
    else:
        budget = max(config.max_total_tokens - input_length, 0)
    chunk = min(budget, DEFAULT_GENERATION_LENGTH)
    if input_length + chunk > config.max_total_tokens:
        raise _validation(
            f"`inputs` tokens + `max_new_tokens` must be <= {config.max_total_tokens}. "
            f"Given: {input_length} `inputs` tokens and {chunk} `max_new_tokens`"
        )
    if input_length > config.max_input_tokens:
        raise _validation(
            f"`inputs` must have less than {config.max_input_tokens} tokens. Given: {input_length}"
        )
    return _Validated(input_length=input_length, max_new_tokens=budget, chunk=chunk)


# --------------------------------------------------------------------------------------------
# The OpenAI-compatible chat route, as vLLM serves it


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
    if not _is_number(value):
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
    if max_tokens is not None and (not _is_int(max_tokens) or max_tokens < 1):
        raise _bad_request("`max_tokens` must be a positive integer", "max_tokens")
    temperature = _number_field(body, "temperature")
    if temperature is not None and temperature < 0:
        raise _bad_request("`temperature` must be >= 0", "temperature")
    top_p = _number_field(body, "top_p")
    if top_p is not None and not 0 < top_p <= 1:
        raise _bad_request("`top_p` must be in (0, 1]", "top_p")
    seed = body.get("seed")
    if seed is not None and (not _is_int(seed) or seed < 0):
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


# --------------------------------------------------------------------------------------------
# The engine: continuous batching on one asyncio task

_TOKEN = "token"
_ERROR = "error"
_DROP = "drop"
_SHUTDOWN = "shutdown"
_KEEP_ALIVE = "keep-alive"


@dataclass(eq=False)
class _Job:
    tokens: list[SimToken]
    max_new_tokens: int
    stop: list[str]
    input_length: int
    reserved_tokens: int
    seed: int
    stamp: bool
    error_after: int | None
    drop_after: int | None
    prefill_seconds: float
    outbox: asyncio.Queue[tuple[Any, ...]] = field(default_factory=asyncio.Queue)
    emitted: int = 0
    generated: list[str] = field(default_factory=list)  # non-special texts, for generated_text
    tail: str = ""  # the end of everything generated, for stop sequences
    done: bool = False  # out of the engine: finished, failed or cancelled
    settled: bool = False  # the handler has accounted for its outcome
    finish_reason: str | None = None
    timer: asyncio.TimerHandle | None = None
    queued_at: float = 0.0
    joined_at: float = 0.0
    last_item_at: float = 0.0  # when the engine last gave the handler something to send


def _report_engine_exit(task: asyncio.Task[None]) -> None:
    # Every stream would hang without the engine, so a crash must at least be loud.
    if not task.cancelled() and task.exception() is not None:
        logger.error("simulator engine stopped", exc_info=task.exception())


class Engine:
    """Runs decode steps for the batch; requests join it after their prefill."""

    def __init__(self, config: SimConfig) -> None:
        self._config = config
        self._waiting: set[_Job] = set()  # validated, prefill timer running
        self._ready: list[_Job] = []  # prefilled, join at the next step boundary
        self._active: dict[_Job, None] = {}  # the running batch, in join order
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = False

    @property
    def queue_size(self) -> int:
        return len(self._waiting) + len(self._ready)

    @property
    def batch_size(self) -> int:
        return len(self._active)

    @property
    def batch_max_tokens(self) -> int:
        return sum(job.reserved_tokens for job in self._active)

    def step_seconds(self, batch: int) -> float:
        config = self._config
        return (1.0 / config.tokens_per_second) * (1.0 + config.batch_slowdown * (batch - 1))

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run(), name="sim-engine"),
            loop.create_task(self._keep_alive(), name="sim-keep-alive"),
        ]
        for task in self._tasks:
            task.add_done_callback(_report_engine_exit)

    async def close(self) -> None:
        """Stop stepping and end every job without a final event (as a dying server would)."""
        self.closed = True
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for job in [*self._waiting, *self._ready, *self._active]:
            self.cancel(job)
            job.outbox.put_nowait((_SHUTDOWN,))

    def submit(self, job: _Job, delay: float) -> None:
        loop = asyncio.get_running_loop()
        job.queued_at = job.last_item_at = loop.time()
        job.timer = loop.call_later(delay, self._prefilled, job)
        self._waiting.add(job)

    def cancel(self, job: _Job) -> None:
        """Take a job out wherever it is; its slot in the batch is free from the next step."""
        job.done = True
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None
        self._waiting.discard(job)
        if job in self._ready:
            self._ready.remove(job)
        self._active.pop(job, None)

    def _prefilled(self, job: _Job) -> None:
        job.timer = None
        self._waiting.discard(job)
        self._ready.append(job)
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            if not self._active:
                while not self._ready:
                    self._wake.clear()
                    await self._wake.wait()
                now = loop.time()
                deadline = now
                self._admit(now, time.time())
            else:
                # Sleeping even when late (sleep(0) just yields) lets the handlers send what
                # the last step produced; a late engine must not hog the loop to catch up.
                await asyncio.sleep(max(deadline - loop.time(), 0.0))
                now = loop.time()
                wall = time.time()
                for job in list(self._active):
                    self._advance(job, now, wall)
                self._admit(now, wall)
            if self._active:
                # Deadlines advance from the previous deadline, not from `now`, so sleep
                # overshoot does not accumulate; a loop that fell behind steps at once.
                deadline = max(deadline + self.step_seconds(len(self._active)), now)

    def _admit(self, now: float, wall: float) -> None:
        ready, self._ready = self._ready, []
        for job in ready:
            job.joined_at = now
            self._active[job] = None
            # The prefill forward pass yields the first token.
            self._advance(job, now, wall)

    async def _keep_alive(self) -> None:
        # One timer for all streams instead of a timeout around every token: axum sends a
        # comment after KEEP_ALIVE_SECONDS without events, e.g. during a long prefill.
        loop = asyncio.get_running_loop()
        while True:
            interval = KEEP_ALIVE_SECONDS
            await asyncio.sleep(min(1.0, interval / 4))
            now = loop.time()
            for job in (*self._waiting, *self._ready, *self._active):
                if now - job.last_item_at >= interval:
                    job.last_item_at = now
                    job.outbox.put_nowait((_KEEP_ALIVE,))

    def _advance(self, job: _Job, now: float, wall: float) -> None:
        job.last_item_at = now
        n = job.emitted
        if job.error_after is not None and n >= job.error_after:
            self.cancel(job)
            job.outbox.put_nowait((_ERROR, n))
            return
        if job.drop_after is not None and n >= job.drop_after:
            self.cancel(job)
            job.outbox.put_nowait((_DROP, n))
            return
        token = job.tokens[n]
        job.emitted = n + 1
        if not token.special:
            job.generated.append(token.text)
        # Like TGI's StoppingCriteria: length first, then EOS, then stop sequences, which match
        # only at the very end of the output so far (special token texts included).
        finish = None
        if job.emitted >= job.max_new_tokens:
            finish = "length"
        elif token.id == EOT_ID:
            finish = "eos_token"
        elif job.stop:
            keep = max(len(stop) for stop in job.stop)
            job.tail = (job.tail + token.text)[-keep:] if keep else ""
            if any(job.tail.endswith(stop) for stop in job.stop):
                finish = "stop_sequence"
        text = token.text
        if job.stamp and not token.special:
            text = STAMP_FORMAT.format(wall) + text
        if finish is not None:
            job.finish_reason = finish
            self.cancel(job)
        job.outbox.put_nowait((_TOKEN, token, text, finish))


# --------------------------------------------------------------------------------------------
# HTTP


def _json_bytes(payload: Any) -> bytes:
    # serde_json writes compact JSON and leaves non-ASCII characters as they are.
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _sse(payload: Any) -> bytes:
    return b"data: " + _json_bytes(payload) + b"\n\n"


def _token_json(token: SimToken, text: str) -> dict[str, Any]:
    return {"id": token.id, "text": text, "logprob": token.logprob, "special": token.special}


def _json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status, body=_json_bytes(payload), content_type="application/json", headers=headers
    )


@dataclass
class Stats:
    requests: int = 0
    active: int = 0
    peak_active: int = 0
    completed: int = 0
    dropped: int = 0
    overloaded: int = 0
    validation_errors: int = 0
    generation_errors: int = 0
    faults: int = 0


class Simulator:
    """The server state and the route handlers."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.metrics = Metrics(config)
        self.stats = Stats()
        self.engine = Engine(config)
        self._rng = random.Random(config.seed)
        self._permits = 0

    # ---- lifecycle

    async def on_startup(self, app: web.Application) -> None:
        self.engine.start()

    async def on_shutdown(self, app: web.Application) -> None:
        await self.engine.close()

    # ---- small routes

    async def info(self, request: web.Request) -> web.Response:
        config = self.config
        return _json_response(
            {
                "model_id": config.model_id,
                "model_sha": None,
                "model_pipeline_tag": "text-generation",
                "max_concurrent_requests": config.max_concurrent_requests,
                "max_best_of": MAX_BEST_OF,
                "max_stop_sequences": MAX_STOP_SEQUENCES,
                "max_input_tokens": config.max_input_tokens,
                "max_total_tokens": config.max_total_tokens,
                "validation_workers": VALIDATION_WORKERS,
                "max_client_batch_size": MAX_CLIENT_BATCH_SIZE,
                "router": ROUTER_NAME,
                "version": TGI_VERSION,
                "sha": None,
                "docker_label": None,
            }
        )

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def models(self, request: web.Request) -> web.Response:
        model_id = self.config.model_id
        return _json_response(
            {
                "object": "list",
                # max_model_len as vLLM reports it, so OpenAI-protocol clients learn the window.
                "data": [
                    {
                        "id": model_id,
                        "object": "model",
                        "created": 0,
                        "owned_by": model_id,
                        "max_model_len": self.config.max_total_tokens,
                    }
                ],
            }
        )

    async def metrics_route(self, request: web.Request) -> web.Response:
        engine = self.engine
        text = self.metrics.render(
            {
                "tgi_queue_size": engine.queue_size,
                "tgi_batch_current_size": engine.batch_size,
                "tgi_batch_current_max_tokens": engine.batch_max_tokens,
            }
        )
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    async def dcgm_metrics(self, request: web.Request) -> web.Response:
        """Simulated GPUs in dcgm-exporter's format, busy in step with the batch."""
        text = render_dcgm(self.engine.batch_size)
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    async def sim_stats(self, request: web.Request) -> web.Response:
        payload = dataclasses.asdict(self.stats)
        payload["queued"] = self.engine.queue_size
        payload["batch"] = self.engine.batch_size
        return _json_response(payload)

    # ---- generation routes

    async def generate(self, request: web.Request) -> web.StreamResponse:
        try:
            req = parse_generate_request(await _read_json(request), compat=False)
        except _Rejection as rejection:
            return rejection.response()
        return await self._generate(request, req)

    async def generate_stream(self, request: web.Request) -> web.StreamResponse:
        try:
            req = parse_generate_request(await _read_json(request), compat=False)
        except _Rejection as rejection:
            return rejection.response()
        return await self._generate_stream(request, req)

    async def compat_generate(self, request: web.Request) -> web.StreamResponse:
        try:
            req = parse_generate_request(await _read_json(request), compat=True)
        except _Rejection as rejection:
            return rejection.response()
        if req.return_full_text is None:
            # TGI's default for `/` follows the Hub pipeline tag, which is text-generation here.
            req.return_full_text = True
        if req.stream:
            return await self._generate_stream(request, req)
        return await self._generate(request, req, as_list=True)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        """`POST /v1/chat/completions`, as vLLM's OpenAI-compatible server answers it.

        Tags are special tokens, dropped unless the request says `skip_special_tokens: false`
        (vLLM's extension); the end-of-turn token never appears. Errors before the stream are
        HTTP statuses with `{"error": {message, type, param, code}}` (overloaded: 429); a fault
        during the stream is one such error event, then `[DONE]`.
        """
        try:
            chat = parse_chat_request(await _read_json(request), self.config)
        except _Rejection as rejection:
            return _json_response(
                _openai_error(rejection.status, rejection.text, "BadRequestError"),
                status=rejection.status,
            )
        except _ChatRejection as rejection:
            return _json_response(rejection.body(), status=rejection.status)
        if chat.stream:
            return await self._chat_stream(request, chat)
        return await self._chat_json(request, chat)

    # ---- the shared machinery

    @contextlib.contextmanager
    def _permit(self, n: int) -> Iterator[None]:
        # TGI's permits come from a semaphore it never waits on: no slot, no queueing.
        if self._permits + n > self.config.max_concurrent_requests:
            raise _overloaded()
        self._permits += n
        self.stats.active = self._permits
        self.stats.peak_active = max(self.stats.peak_active, self._permits)
        try:
            yield
        finally:
            self._permits -= n
            self.stats.active = self._permits

    def _record_failure(self, error: InferError) -> None:
        if error.metric is not None:
            self.metrics.failure(error.metric)
        if error.error_type == "overloaded":
            self.stats.overloaded += 1
        elif error.error_type == "validation":
            self.stats.validation_errors += 1
        elif error.error_type == "generation":
            self.stats.generation_errors += 1

    def _record_drop(self) -> None:
        self.metrics.failure("dropped")
        self.stats.dropped += 1

    @contextlib.contextmanager
    def _request_jobs(self) -> Iterator[list[_Job]]:
        """The engine jobs of one request (the handler adds them): they leave the engine however
        the handler ends, and a handler cancelled because its client left (handler_cancellation)
        counts as a dropped request unless every job had already settled."""
        jobs: list[_Job] = []
        try:
            yield jobs
        except asyncio.CancelledError:
            if jobs and not all(job.settled for job in jobs):
                self._record_drop()
            raise
        finally:
            for job in jobs:
                self.engine.cancel(job)

    def _count_request(self) -> None:
        self.metrics.inc("tgi_request_count")
        self.stats.requests += 1

    async def _start_jobs(self, req: GenerateRequest, n: int) -> list[_Job]:
        """Validate as TGI does once the permits are taken, then queue `n` jobs for prefill."""
        config = self.config
        if self.engine.closed:
            raise _generation("Server error: the simulator is shutting down")
        if config.validation_ms > 0:
            await asyncio.sleep(config.validation_ms / 1000)
        validated = validate_request(req, config)
        self.metrics.observe("tgi_request_input_length", validated.input_length)
        self.metrics.observe("tgi_request_max_new_tokens", validated.chunk)
        faulty = self._rng.random() < config.fault_rate
        answer = choose_answer(req.inputs)
        jobs = []
        for _ in range(n):
            seed = req.seed if req.seed is not None else self._rng.getrandbits(64)
            # Splitting depends only on (seed, answer), so a fixed seed replays the same tokens.
            rng = random.Random(f"{seed}\x00{answer}")
            job = _Job(
                tokens=tokenize_answer(answer, rng, split_tags=config.split_tags),
                max_new_tokens=validated.max_new_tokens,
                stop=list(req.stop),
                input_length=validated.input_length,
                reserved_tokens=validated.input_length + validated.chunk,
                seed=seed,
                stamp=config.stamp_emission_times,
                error_after=config.fault_error_after_tokens if faulty else None,
                drop_after=config.fault_drop_after_tokens if faulty else None,
                prefill_seconds=validated.input_length / config.prefill_tokens_per_second,
            )
            slow = config.fault_slow_start_seconds if faulty else 0.0
            self.engine.submit(job, job.prefill_seconds + slow)
            jobs.append(job)
        return jobs

    def _record_success(self, job: _Job, started: float) -> None:
        now = asyncio.get_running_loop().time()
        metrics = self.metrics
        timing = _timing(job, started, now)
        metrics.inc("tgi_request_success")
        metrics.observe("tgi_request_duration", timing.total)
        metrics.observe("tgi_request_validation_duration", timing.validation)
        metrics.observe("tgi_request_queue_duration", timing.queue)
        metrics.observe("tgi_request_inference_duration", timing.inference)
        metrics.observe("tgi_request_mean_time_per_token_duration", timing.per_token)
        metrics.observe("tgi_request_generated_tokens", job.emitted)
        self.stats.completed += 1
        job.settled = True

    def _fault_error(self, job: _Job, emitted: int) -> InferError:
        self.stats.faults += 1
        job.settled = True
        return _generation(
            f"Server error: simulated fault injected by the simulator after {emitted} tokens"
        )

    async def _generate_stream(
        self, request: web.Request, req: GenerateRequest
    ) -> web.StreamResponse:
        started = asyncio.get_running_loop().time()
        self._count_request()
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "x-compute-type": _compute_type(),
                "x-compute-characters": str(len(req.inputs)),
                "X-Accel-Buffering": "no",
            },
        )
        with self._request_jobs() as jobs:
            try:
                # Axum sends the headers before the stream yields anything, errors included.
                await response.prepare(request)
                if (req.best_of if req.best_of is not None else 1) != 1:
                    raise _validation("`best_of` != 1 is not supported when streaming tokens")
                if req.decoder_input_details:
                    raise _validation(
                        "`decoder_input_details` == true is not supported when streaming tokens"
                    )
                with self._permit(1):
                    jobs.extend(await self._start_jobs(req, 1))
                    await self._stream_job(request, response, req, jobs[0], started)
            except InferError as error:
                self._record_failure(error)
                with contextlib.suppress(ConnectionError):
                    await response.write(_sse(error.body()))
            except ConnectionError:
                # A write found the connection closed: the client left (or never stayed).
                if jobs and not jobs[0].settled:
                    self._record_drop()
        return response

    async def _stream_job(
        self,
        request: web.Request,
        response: web.StreamResponse,
        req: GenerateRequest,
        job: _Job,
        started: float,
    ) -> None:
        index = 0
        while True:
            item = await job.outbox.get()
            kind = item[0]
            if kind == _KEEP_ALIVE:
                # Also how a client that left during a long wait is noticed.
                await response.write(b":\n\n")
                continue
            if kind == _TOKEN:
                _, token, text, finish = item
                index += 1
                if finish is None:
                    event = {
                        "index": index,
                        "token": _token_json(token, text),
                        "generated_text": None,
                        "details": None,
                    }
                    await response.write(_sse(event))
                    continue
                # TGI records success before it yields the final event.
                self._record_success(job, started)
                generated = "".join(job.generated)
                if req.return_full_text:
                    generated = req.inputs + generated
                details = None
                if req.details:
                    details = {
                        "finish_reason": finish,
                        "generated_tokens": job.emitted,
                        "seed": job.seed if req.sampling else None,
                        "input_length": job.input_length,
                    }
                final = {
                    "index": index,
                    "token": _token_json(token, text),
                    "generated_text": generated,
                    "details": details,
                }
                await self._end_stream(response, _sse(final))
                return
            job.settled = True
            if kind == _ERROR:
                raise self._fault_error(job, item[1])
            if kind == _DROP:
                self.stats.faults += 1
                _abort(request)
            return  # dropped on purpose, or shutting down: no final event

    async def _end_stream(self, response: web.StreamResponse, last: bytes) -> None:
        """Write the last bytes of a finished stream and end the response, `stream_end_ms` later.

        Called while the request holds its permit, which it keeps until the response has ended
        (as TGI does), through the delay even if the client leaves and the handler is cancelled.
        """
        with contextlib.suppress(ConnectionError):
            await response.write(last)
        if self.config.stream_end_ms > 0:
            await _sleep_through_cancellation(self.config.stream_end_ms / 1000)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()

    async def _generate(
        self, request: web.Request, req: GenerateRequest, *, as_list: bool = False
    ) -> web.StreamResponse:
        started = asyncio.get_running_loop().time()
        self._count_request()
        best_of = req.best_of if req.best_of is not None else 1
        with self._request_jobs() as jobs:
            try:
                if best_of > MAX_BEST_OF:
                    raise _validation(
                        f"`best_of` must be > 0 and <= {MAX_BEST_OF}. Given: {best_of}"
                    )
                n = max(best_of, 1)
                # A best_of=n request holds n permits, as in TGI.
                with self._permit(n):
                    jobs.extend(await self._start_jobs(req, n))
                    outcomes = await self._collect_all(request, jobs)
                    for job in jobs:
                        self._record_success(job, started)
            except InferError as error:
                self._record_failure(error)
                return _json_response(error.body(), status=error.status)
            except _SimulatedDrop:
                self.stats.faults += 1
                _abort(request)
                return web.Response()  # goes nowhere: the connection is closed
            except _ClientGone:
                self._record_drop()
                return web.Response()

        # Like best_of in TGI: the most likely sequence wins, the others come as extras.
        ranked = sorted(
            zip(jobs, outcomes, strict=True),
            key=lambda pair: sum(token.logprob for token, _ in pair[1]),
            reverse=True,
        )
        best_job, best_tokens = ranked[0]
        prefix = req.inputs if req.return_full_text else ""
        payload: dict[str, Any] = {"generated_text": prefix + "".join(best_job.generated)}
        if req.details or req.decoder_input_details:
            details = self._details(req, best_job, best_tokens)
            if best_of > 1:
                details["best_of_sequences"] = [
                    {"generated_text": prefix + "".join(job.generated)}
                    | self._details(req, job, tokens)
                    for job, tokens in ranked[1:]
                ]
            payload["details"] = details
        timing = _timing(best_job, started, asyncio.get_running_loop().time())
        headers = {
            "x-compute-type": _compute_type(),
            "x-compute-time": repr(timing.total),
            "x-compute-characters": str(len(req.inputs)),
            "x-total-time": _millis(timing.total),
            "x-validation-time": _millis(timing.validation),
            "x-queue-time": _millis(timing.queue),
            "x-inference-time": _millis(timing.inference),
            "x-time-per-token": _millis(timing.per_token),
            "x-prompt-tokens": str(best_job.input_length),
            "x-generated-tokens": str(best_job.emitted),
        }
        # The compat route wraps the GenerateResponse in a list, as api-inference does.
        return _json_response([payload] if as_list else payload, headers=headers)

    def _details(
        self, req: GenerateRequest, job: _Job, tokens: list[tuple[SimToken, str]]
    ) -> dict[str, Any]:
        return {
            "finish_reason": job.finish_reason,
            "generated_tokens": job.emitted,
            "seed": job.seed if req.sampling else None,
            # Prefill logprobs need TGI's --enable-prefill-logprobs; without it, this is empty.
            "prefill": [],
            "tokens": [_token_json(token, text) for token, text in tokens],
        }

    async def _collect_all(
        self, request: web.Request, jobs: list[_Job]
    ) -> list[list[tuple[SimToken, str]]]:
        if len(jobs) == 1:
            return [await self._collect(request, jobs[0])]
        tasks = [asyncio.ensure_future(self._collect(request, job)) for job in jobs]
        try:
            return await asyncio.gather(*tasks)
        finally:
            # gather leaves the other sequences running when one fails.
            for task in tasks:
                task.cancel()

    async def _collect(self, request: web.Request, job: _Job) -> list[tuple[SimToken, str]]:
        """Wait for a job that is not streamed; its tokens with their emitted texts."""
        tokens: list[tuple[SimToken, str]] = []
        while True:
            item = await job.outbox.get()
            kind = item[0]
            if kind == _TOKEN:
                _, token, text, finish = item
                tokens.append((token, text))
                # Nothing is written until the end, so look at the connection to notice a
                # client that left (aiohttp does not cancel handlers unless asked to).
                if request.transport is None or request.transport.is_closing():
                    raise _ClientGone
                if finish is not None:
                    return tokens
            elif kind == _KEEP_ALIVE:
                continue
            elif kind == _ERROR:
                raise self._fault_error(job, item[1])
            elif kind == _DROP:
                job.settled = True
                raise _SimulatedDrop
            else:
                job.settled = True
                raise _generation("Server error: the simulator is shutting down")

    # ---- the chat route's responses

    @staticmethod
    def _chat_text(token: SimToken, text: str, chat: ChatRequest) -> str:
        if token.id == EOT_ID:
            return ""  # vLLM removes the end-of-turn token's text even when keeping specials
        if token.special and chat.skip_special_tokens:
            return ""
        return text

    @staticmethod
    def _chat_finish(job: _Job, finish: str) -> tuple[str, str | None]:
        """OpenAI's finish_reason, and vLLM's stop_reason (the stop string that matched)."""
        if finish == "length":
            return "length", None
        matched = next((stop for stop in job.stop if job.tail.endswith(stop)), None)
        return "stop", matched if finish == "stop_sequence" else None

    @staticmethod
    def _usage(job: _Job) -> dict[str, int]:
        return {
            "prompt_tokens": job.input_length,
            "completion_tokens": job.emitted,
            "total_tokens": job.input_length + job.emitted,
        }

    async def _chat_stream(self, request: web.Request, chat: ChatRequest) -> web.StreamResponse:
        started = asyncio.get_running_loop().time()
        self._count_request()
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )
        with self._request_jobs() as jobs:
            try:
                # Unlike TGI's native route, validation and overload answer before the stream.
                with self._permit(1):
                    jobs.extend(await self._start_jobs(chat.generate, 1))
                    await response.prepare(request)
                    await self._stream_chat_job(request, response, chat, jobs[0], started)
            except InferError as error:
                self._record_failure(error)
                if not response.prepared:
                    status = _CHAT_STATUS.get(error.status, error.status)
                    return _json_response(_chat_error(error), status=status)
                with contextlib.suppress(ConnectionError):
                    await response.write(_sse(_chat_error(error)) + b"data: [DONE]\n\n")
            except ConnectionError:
                if jobs and not jobs[0].settled:
                    self._record_drop()
        return response

    async def _stream_chat_job(
        self,
        request: web.Request,
        response: web.StreamResponse,
        chat: ChatRequest,
        job: _Job,
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
            return _sse(
                {
                    "id": chunk_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": self.config.model_id,
                    "choices": [choice],
                }
            )

        await response.write(chunk({"role": "assistant", "content": ""}))
        while True:
            item = await job.outbox.get()
            kind = item[0]
            if kind == _KEEP_ALIVE:
                await response.write(b":\n\n")
                continue
            if kind == _TOKEN:
                _, token, text, finish = item
                content = self._chat_text(token, text, chat)
                if finish is None:
                    if content:
                        await response.write(chunk({"content": content}))
                    continue
                self._record_success(job, started)
                reason, stop = self._chat_finish(job, finish)
                tail = chunk({"content": content}, reason, stop)
                if chat.include_usage:
                    tail += _sse(
                        {
                            "id": chunk_id,
                            "object": "chat.completion.chunk",
                            "created": created,
                            "model": self.config.model_id,
                            "choices": [],
                            "usage": self._usage(job),
                        }
                    )
                await self._end_stream(response, tail + b"data: [DONE]\n\n")
                return
            job.settled = True
            if kind == _ERROR:
                raise self._fault_error(job, item[1])
            if kind == _DROP:
                self.stats.faults += 1
                _abort(request)
            return

    async def _chat_json(self, request: web.Request, chat: ChatRequest) -> web.StreamResponse:
        started = asyncio.get_running_loop().time()
        self._count_request()
        with self._request_jobs() as jobs:
            try:
                with self._permit(1):
                    jobs.extend(await self._start_jobs(chat.generate, 1))
                    tokens = await self._collect(request, jobs[0])
                    self._record_success(jobs[0], started)
            except InferError as error:
                self._record_failure(error)
                status = _CHAT_STATUS.get(error.status, error.status)
                return _json_response(_chat_error(error), status=status)
            except _SimulatedDrop:
                self.stats.faults += 1
                _abort(request)
                return web.Response()
            except _ClientGone:
                self._record_drop()
                return web.Response()
        job = jobs[0]
        reason, stop = self._chat_finish(job, job.finish_reason or "eos_token")
        content = "".join(self._chat_text(token, text, chat) for token, text in tokens)
        return _json_response(
            {
                "id": f"chatcmpl-{job.seed:016x}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.config.model_id,
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


@dataclass(frozen=True)
class _Timing:
    total: float
    validation: float
    queue: float
    inference: float
    per_token: float


def _timing(job: _Job, started: float, now: float) -> _Timing:
    # TGI's "start" is when the request entered a batch, i.e. before its prefill ran.
    inference_start = job.joined_at - job.prefill_seconds
    inference = now - inference_start
    return _Timing(
        total=now - started,
        validation=job.queued_at - started,
        queue=max(inference_start - job.queued_at, 0.0),
        inference=inference,
        per_token=inference / max(job.emitted, 1),
    )


def _millis(seconds: float) -> str:
    return str(int(seconds * 1000))


async def _sleep_through_cancellation(seconds: float) -> None:
    """Sleep for `seconds` even if cancelled meanwhile; the cancellation is raised after that."""
    sleeper = asyncio.ensure_future(asyncio.sleep(seconds))
    try:
        await asyncio.shield(sleeper)
    except asyncio.CancelledError:
        await sleeper
        raise


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


def _compute_type() -> str:
    return os.environ.get("COMPUTE_TYPE", "gpu+optimized")


async def _read_json(request: web.Request) -> Any:
    """Read the body as axum's Json extractor would, with its plain-text rejections."""
    mime = request.content_type.lower()
    if not (
        mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))
    ):
        raise _Rejection(415, "Expected request with `Content-Type: application/json`")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise _Rejection(413, "Failed to buffer the request body: length limit exceeded") from exc
    try:
        return json.loads(raw, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Rejection(400, f"Failed to parse the request body as JSON: {exc}") from exc


def _not_json(constant: str) -> Any:
    # Python accepts NaN and Infinity; serde_json (and the JSON spec) do not.
    raise ValueError(f"invalid number {constant}")


SIMULATOR_KEY = web.AppKey("simulator", Simulator)


def create_app(config: SimConfig | None = None) -> web.Application:
    """The simulator as an aiohttp application; the engine starts with the app."""
    sim = Simulator(config or SimConfig())
    app = web.Application(client_max_size=PAYLOAD_LIMIT)
    app[SIMULATOR_KEY] = sim
    app.on_startup.append(sim.on_startup)
    app.on_shutdown.append(sim.on_shutdown)
    app.router.add_post("/", sim.compat_generate)
    app.router.add_post("/generate", sim.generate)
    app.router.add_post("/generate_stream", sim.generate_stream)
    app.router.add_get("/", sim.health)
    app.router.add_get("/health", sim.health)
    app.router.add_get("/ping", sim.health)
    app.router.add_get("/info", sim.info)
    app.router.add_get("/metrics", sim.metrics_route)
    app.router.add_get("/v1/models", sim.models)
    app.router.add_post("/v1/chat/completions", sim.chat_completions)
    app.router.add_get("/sim/stats", sim.sim_stats)
    app.router.add_get("/dcgm/metrics", sim.dcgm_metrics)
    return app


# --------------------------------------------------------------------------------------------
# CLI


_HELP = {
    "model_id": "model id reported by /info (say that it is a simulator)",
    "tokens_per_second": "decode speed of a single stream (batch of 1)",
    "batch_slowdown": "alpha in t(B) = t(1) * (1 + alpha * (B - 1)) for B streams in the batch",
    "prefill_tokens_per_second": "prompt tokens per second of prefill (time to first token)",
    "validation_ms": "time spent validating each request",
    "stream_end_ms": "delay from a stream's final event to the end of its response (slot kept)",
    "max_concurrent_requests": "requests beyond this fail at once with `overloaded`",
    "max_input_tokens": "longest accepted prompt, in tokens (about 4 UTF-8 bytes each)",
    "max_total_tokens": "prompt plus min(max_new_tokens, 1024) must fit in this",
    "seed": "makes token splitting, request seeds and fault choice repeatable",
    "stamp_emission_times": "prefix each non-special token text with ⟦unix time⟧ when emitted",
    "split_tags": "emit the Reflection tags as ordinary text pieces, not special tokens",
    "fault_error_after_tokens": "send a `generation` error event after N tokens",
    "fault_drop_after_tokens": "close the connection after N tokens, without a final event",
    "fault_slow_start_seconds": "extra delay before the first token",
    "fault_rate": "probability that a request gets the configured faults",
}


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("", "none") else int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inference.sim",
        description="A TGI-compatible simulator of a Reflection-style model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on; 0 picks one")
    for spec in dataclasses.fields(SimConfig):
        flag = "--" + spec.name.replace("_", "-")
        options: dict[str, Any] = {"default": spec.default, "help": _HELP[spec.name]}
        # Annotations are strings here (from __future__ import annotations).
        if spec.type == "bool":
            options["action"] = argparse.BooleanOptionalAction
        elif spec.type == "int | None":
            options.update(type=_optional_int, metavar="N")
        elif spec.type == "float":
            options.update(type=float, metavar="X")
        elif spec.type == "int":
            options.update(type=int, metavar="N")
        parser.add_argument(flag, **options)
    return parser


async def _serve(config: SimConfig, host: str, port: int) -> None:
    app = create_app(config)
    # Cancelling a handler when its client disconnects is how a dropped stream frees its
    # slot even while it waits for its first token.
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=2.0, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        print(f"simulator listening on http://{shown}:{bound}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until Ctrl-C or SIGTERM."""
    args = vars(_parser().parse_args(argv))
    host = args.pop("host")
    port = args.pop("port")
    try:
        config = SimConfig(**args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config, host, port))


if __name__ == "__main__":
    main()
