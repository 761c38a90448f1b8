"""The configured model backends and their health: which are up (a probe every reconcile,
a mark when one fails), their cached /info, and the public name visitors see for each.
"""

from __future__ import annotations

import json
import logging

import httpx
from django.conf import settings

from inference.backends import health_paths, http_url, info_from_payload, info_path
from inference.client import BackendError, shared_ssl_context
from playground.realtime import redis_clients

log = logging.getLogger(__name__)


INFO_CACHE_SECONDS = 60


# A backend marked down stays out until a probe (every reconcile) finds it healthy again; the
# expiry only guards against a flag outliving every reconciler.
DOWN_SECONDS = 300


def _info_key(backend: str) -> str:
    return f"pg:backend:info:{backend}"


def health_key(backend: str) -> str:
    return f"pg:backend:down:{backend}"


def backends() -> list[str]:
    return list(settings.TGI_URLS)


def public_name(backend: str) -> str | None:
    """How visitors and share viewers see a backend: its place in TGI_URL. Its address is
    for operators (the dashboard), never for the public."""
    if not backend:
        return None
    urls = backends()
    return f"backend-{urls.index(backend) + 1}" if backend in urls else "backend"


def mark_down(backend: str, reason: str) -> None:
    """Take a backend out of rotation until a later probe finds it healthy again."""
    log.warning("backend %s leaves rotation: %s", backend, reason)
    redis_clients.redis_client().set(health_key(backend), reason, ex=DOWN_SECONDS)


# A server that answered /health with 404 is up; its model list only confirms it, and
# llama-cpp-python answers every route after the running generation: do not wait long.
BUSY_MODEL_LIST_SECONDS = 2.0


def _backend_get(backend: str, path: str, timeout: float | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {settings.TGI_API_KEY}"} if settings.TGI_API_KEY else {}
    return httpx.get(
        http_url(backend) + path,
        headers=headers,
        timeout=settings.TGI_CONNECT_TIMEOUT if timeout is None else timeout,
        verify=shared_ssl_context(),
    )


def probe(backend: str) -> bool:
    """Health-check a backend: GET /health. An OpenAI-compatible server without /health (404,
    as llama-cpp-python's) is checked by its model list instead; when that is slow to answer,
    the server is busy generating (llama-cpp-python serves one request at a time), not down."""
    try:
        response = _backend_get(backend, "/health")
        if response.status_code in (404, 405) and len(health_paths(backend)) > 1:
            try:
                response = _backend_get(
                    backend,
                    health_paths(backend)[1],
                    timeout=min(settings.TGI_CONNECT_TIMEOUT, BUSY_MODEL_LIST_SECONDS),
                )
            except httpx.TimeoutException:
                response = httpx.Response(200)  # it answered /health: up, and busy
    except httpx.HTTPError as exc:
        mark_down(backend, f"health check failed: {exc.__class__.__name__}")
        return False
    if response.status_code != 200:
        mark_down(backend, f"health check answered {response.status_code}")
        return False
    redis_clients.redis_client().delete(health_key(backend))
    return True


def backend_info(backend: str) -> dict:
    """A backend's model and limits in TGI's /info keys (an OpenAI-compatible server's
    /v1/models, mapped), cached in Redis so each generation need not ask."""
    client = redis_clients.redis_client()
    cached = client.get(_info_key(backend))
    if cached:
        return json.loads(cached)
    path = info_path(backend)
    try:
        response = _backend_get(backend, path)
        response.raise_for_status()
        info = info_from_payload(backend, response.json())
    except (httpx.HTTPError, ValueError, BackendError) as exc:
        log.warning("could not read %s%s: %s", backend, path, exc)
        return {}
    if not info:
        return {}
    client.set(_info_key(backend), json.dumps(info), ex=INFO_CACHE_SECONDS)
    return info
