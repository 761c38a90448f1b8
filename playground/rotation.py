"""The configured model backends and their health: which are up (a probe every reconcile,
a mark when one fails), their cached /info, and the public name visitors see for each.
"""

from __future__ import annotations

import json
import logging

import httpx
from django.conf import settings

from inference.backends import check_health, fetch_info, http_client
from inference.client import BackendError
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


def _http_client() -> httpx.Client:
    return http_client(timeout=settings.TGI_CONNECT_TIMEOUT, api_key=settings.TGI_API_KEY)


def probe(backend: str) -> bool:
    """Health-check a backend (`inference.backends.check_health`): back into rotation when it
    is healthy, out of it when not."""
    with _http_client() as client:
        health = check_health(backend, client)
    if not health.ok:
        because = f" ({health.error})" if health.error else ""
        mark_down(backend, f"health check: {health.detail}{because}")
        return False
    redis_clients.redis_client().delete(health_key(backend))
    return True


def backend_info(backend: str) -> dict:
    """A backend's model and limits in TGI's /info keys (`inference.backends.fetch_info`),
    cached in Redis so each generation need not ask; {} when it cannot be read."""
    client = redis_clients.redis_client()
    cached = client.get(_info_key(backend))
    if cached:
        return json.loads(cached)
    try:
        with _http_client() as http:
            info = fetch_info(backend, http)
    except BackendError as exc:
        log.warning("could not read the model info of %s: %s", backend, exc)
        return {}
    if not info:
        return {}
    client.set(_info_key(backend), json.dumps(info), ex=INFO_CACHE_SECONDS)
    return info
