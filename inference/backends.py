"""Which protocol a backend speaks, and a client for it.

A backend is named by its URL in `TGI_URL`. A plain `http(s)://` URL is a TGI server spoken to
with TGI's native `/generate_stream`; a URL prefixed `openai+` (`openai+http://vllm:8000`) is an
OpenAI-compatible chat server (vLLM, SGLang, llama.cpp, TGI's Messages API). The full string,
prefix included, stays the backend's name everywhere (slot leases, controls, the dashboard);
only the clients see the plain URL.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from .client import TGIClient
from .openai_client import OPENAI_PREFIX, OpenAIClient, info_from_models, strip_openai_prefix

Protocol = Literal["tgi", "openai"]
PROTOCOLS: tuple[Protocol, ...] = ("tgi", "openai")
# `openai+` is optional; what follows must be an http(s) URL with a host.
_BACKEND_URL = re.compile(r"(?:openai\+)?https?://[^\s/]+(?:/\S*)?")


def protocol_of(url: str) -> Protocol:
    return "openai" if url.startswith(OPENAI_PREFIX) else "tgi"


def http_url(url: str) -> str:
    """The plain http(s) URL of a backend (its name without a protocol prefix)."""
    return strip_openai_prefix(url)


def is_backend_url(url: str) -> bool:
    """`http(s)://host[/path]`, optionally prefixed `openai+`."""
    return _BACKEND_URL.fullmatch(url) is not None


def open_client(url: str, **kwargs: Any) -> TGIClient | OpenAIClient:
    """A client for the backend named `url`; keyword arguments go to the client (timeouts,
    `api_key`, `transport`, `max_connections`)."""
    if protocol_of(url) == "openai":
        return OpenAIClient(url, **kwargs)
    return TGIClient(url, **kwargs)


def health_paths(url: str) -> tuple[str, ...]:
    """Paths to try, in order, for a health check (the next one only after a 404 or 405)."""
    return ("/health", "/v1/models") if protocol_of(url) == "openai" else ("/health",)


def info_path(url: str) -> str:
    return "/v1/models" if protocol_of(url) == "openai" else "/info"


def info_from_payload(url: str, payload: Any) -> dict[str, Any]:
    """A backend's info in TGI's `/info` keys, from the JSON of its `info_path`.

    Raises `BackendProtocolError` when an OpenAI server's model list has no model; a TGI
    payload that is not an object gives `{}`.
    """
    if protocol_of(url) == "openai":
        return info_from_models(payload)
    return payload if isinstance(payload, dict) else {}
