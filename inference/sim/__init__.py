"""A TGI-compatible simulator: `python -m inference.sim`.

It speaks text-generation-inference's wire format (see shared/reference/tgi-wire-contract.md and
TGI's OpenAPI spec, tests/fixtures/tgi-openapi.json) closely enough for TGI clients to work
against it unchanged, with no GPU and no model:

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

The package, by concern (each module depends only on those listed before it):

- `config`: `SimConfig` and the TGI launcher settings mirrored as fixed values;
- `answers`: the "model": which answer a prompt gets, and its tokens;
- `metrics`: TGI's Prometheus metrics and the dcgm-exporter text;
- `errors`, `wire`: how a request fails; JSON, SSE and request bodies on the wire;
- `generate_request`: parsing and validating TGI's GenerateRequest;
- `engine`: continuous batching;
- `core`: the shared `Simulator` state: permits, engine jobs, accounting;
- `tgi`, `openai`: the routes of each protocol;
- `app`: `create_app`, which wires them (and the extensions) into an aiohttp application;
- `cli`: the command line (`__main__` runs it).
"""

from ..tags import TAGS as REFLECTION_TAGS
from .answers import (
    EOT_TEXT,
    choose_answer,
    extract_last_user_message,
    generic_answer,
    tokenize_answer,
)
from .app import create_app
from .cli import _parser as _parser  # tests build the parser to check its flags
from .cli import main
from .config import TGI_VERSION, SimConfig
from .metrics import render_dcgm

__all__ = [
    "EOT_TEXT",
    "REFLECTION_TAGS",
    "TGI_VERSION",
    "SimConfig",
    "choose_answer",
    "create_app",
    "extract_last_user_message",
    "generic_answer",
    "main",
    "render_dcgm",
    "tokenize_answer",
]
