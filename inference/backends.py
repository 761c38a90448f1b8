"""Which protocol a backend speaks, a client for it, and how to ask it about itself.

A backend is named by its URL in `TGI_URL`. A plain `http(s)://` URL is a TGI server spoken to
with TGI's native `/generate_stream`; a URL prefixed `openai+` (`openai+http://vllm:8000`) is an
OpenAI-compatible chat server (vLLM, SGLang, llama.cpp, TGI's Messages API), whose URL may also
carry options (`?grammar=tags`, see `inference.openai_client.chat_options`). The full string,
prefix and options included, stays the backend's name everywhere (slot leases, controls, the
dashboard); only the HTTP requests use the plain URL.

Streaming goes through `open_client`. The short questions the rotation (every reconcile) and
the operators' dashboard ask are answered here, synchronously, over an `httpx.Client` from
`http_client`: `check_health`, `fetch_info` (TGI's `/info`, or an OpenAI-compatible server's
`/v1/models` in `/info`'s keys) and `fetch_metrics` (the server's own Prometheus text).
Which route each protocol is asked, and what its answer means, is decided here and nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from .client import (
    BackendProtocolError,
    StatusErrorMapper,
    TGIClient,
    request_error,
    shared_ssl_context,
    tgi_error_for_status,
)
from .openai_client import (
    MODELS_PATH,
    OPENAI_PREFIX,
    OpenAIClient,
    info_from_models,
    openai_error_for_status,
    plain_url,
)

Protocol = Literal["tgi", "openai"]
PROTOCOLS: tuple[Protocol, ...] = ("tgi", "openai")
# `openai+` is optional; what follows must be an http(s) URL with a host.
_BACKEND_URL = re.compile(r"(?:openai\+)?https?://[^\s/]+(?:/\S*)?")


def protocol_of(url: str) -> Protocol:
    return "openai" if url.startswith(OPENAI_PREFIX) else "tgi"


def http_url(url: str) -> str:
    """The plain http(s) URL of a backend (its name without a protocol prefix or options)."""
    return plain_url(url)


def is_backend_url(url: str) -> bool:
    """`http(s)://host[/path]`, optionally prefixed `openai+`."""
    return _BACKEND_URL.fullmatch(url) is not None


def open_client(url: str, **kwargs: Any) -> TGIClient | OpenAIClient:
    """A client for the backend named `url`; keyword arguments go to the client (timeouts,
    `api_key`, `transport`, `max_connections`)."""
    if protocol_of(url) == "openai":
        return OpenAIClient(url, **kwargs)
    return TGIClient(url, **kwargs)


# --------------------------------------------------------------------------- asking a backend

# llama-cpp-python answers every route only after the generation it is running: a model list
# that does not come within this long means busy, not down.
BUSY_MODEL_LIST_SECONDS = 2.0


def http_client(
    *, timeout: float, api_key: str | None = None, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """A client for the short questions below: the bearer token when the backends want one, and
    the process's one TLS context. Safe to share between threads; close it when done."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(
        headers=headers,
        timeout=httpx.Timeout(timeout),
        verify=shared_ssl_context(),
        transport=transport,
    )


@dataclass(frozen=True)
class Health:
    ok: bool
    status: int | None = None  # the last HTTP status received; None when nothing answered
    error: str | None = None  # when nothing answered: what httpx raised (ConnectError, …)

    @property
    def reachable(self) -> bool:
        return self.status is not None

    @property
    def detail(self) -> str:
        """`ok`, `HTTP 503` or `unreachable`, as the dashboard shows it."""
        if self.ok:
            return "ok"
        return f"HTTP {self.status}" if self.status is not None else "unreachable"


def check_health(
    url: str, client: httpx.Client, *, busy_seconds: float = BUSY_MODEL_LIST_SECONDS
) -> Health:
    """GET /health: healthy on 200. An OpenAI-compatible server without /health (404 or 405:
    llama-cpp-python's) is checked by its model list instead, waiting at most `busy_seconds`
    for it: one that answered /health but not the model list in time is busy, and healthy."""
    base = http_url(url)
    try:
        response = client.get(base + "/health")
        if response.status_code in (404, 405) and protocol_of(url) == "openai":
            wait = min(busy_seconds, client.timeout.read or busy_seconds)
            try:
                response = client.get(base + MODELS_PATH, timeout=wait)
            except httpx.TimeoutException:
                return Health(ok=True, status=response.status_code)
    except httpx.HTTPError as exc:
        return Health(ok=False, error=exc.__class__.__name__)
    return Health(ok=response.status_code == 200, status=response.status_code)


def fetch_info(url: str, client: httpx.Client) -> dict[str, Any]:
    """A backend's model and limits in TGI's `/info` keys: TGI's `/info` itself, or an
    OpenAI-compatible server's `/v1/models` mapped by `info_from_models`.

    Raises a `BackendError`: `backend_unavailable` or `backend_timeout` when nothing answered,
    the protocol's error for an HTTP error status (401: "check the backend API key"), and
    `BackendProtocolError` without a `status_code` for a 200 that is not model info.
    """
    path = MODELS_PATH if protocol_of(url) == "openai" else "/info"
    response = _get(url, client, path)
    try:
        payload = response.json()
    except ValueError as exc:
        raise BackendProtocolError(f"Backend {path} is not JSON") from exc
    if protocol_of(url) == "openai":
        return info_from_models(payload)
    if not isinstance(payload, dict):
        raise BackendProtocolError("Backend /info is not a JSON object")
    return payload


def fetch_metrics(url: str, client: httpx.Client) -> str:
    """GET /metrics: the server's own Prometheus text. Raises a `BackendError` as `fetch_info`."""
    return _get(url, client, "/metrics").text


def _get(url: str, client: httpx.Client, path: str) -> httpx.Response:
    try:
        response = client.get(http_url(url) + path)
    except httpx.HTTPError as exc:
        raise request_error(exc, mid_stream=False) from exc
    if response.status_code != 200:
        raise _status_error(url)(response, response.text[:2048])
    return response


def _status_error(url: str) -> StatusErrorMapper:
    return openai_error_for_status if protocol_of(url) == "openai" else tgi_error_for_status
