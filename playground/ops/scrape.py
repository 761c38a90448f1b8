"""The dashboard's look at each backend and its GPUs: health, model info and the server's own
metrics (through inference.backends, which knows each protocol), and the GPU exporter's DCGM
readings.

Everything is fetched in parallel with a short timeout (OPS_SCRAPE_TIMEOUT) and the result is
kept in Redis for a few seconds, so several operators polling every 1.5 s cost each backend one
scrape per few seconds, and an unreachable endpoint shows as "unreachable" instead of stalling
the page.
"""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from inference.backends import (
    Health,
    check_health,
    fetch_info,
    fetch_metrics,
    http_client,
    http_url,
    protocol_of,
)
from inference.client import BackendError, BackendProtocolError, shared_ssl_context
from playground import rotation
from playground.ops import gpu, metrics
from playground.realtime import redis_clients

SCRAPE_CACHE_SECONDS = 3
INFO_FIELDS = (
    "model_id",
    "model_sha",
    "version",
    "max_concurrent_requests",
    "max_input_tokens",
    "max_total_tokens",
)


def _scrape_key(backend: str) -> str:
    return f"pg:ops:scrape:{backend}"


# The same two gauges in OpenAI-compatible servers' own metrics (llama.cpp needs --metrics).
_QUEUE_GAUGES = ("vllm:num_requests_waiting", "sglang:num_queue_reqs", "llamacpp:requests_deferred")
_BATCH_GAUGES = (
    "vllm:num_requests_running",
    "sglang:num_running_reqs",
    "llamacpp:requests_processing",
)


def parse_tgi_metrics(text: str) -> dict[str, Any]:
    """The few TGI router metrics an operator needs, from its Prometheus text (queue and batch
    size also from vLLM's, SGLang's or llama.cpp's metrics)."""
    found: dict[str, Any] = {
        "queue_size": None,
        "batch_current_size": None,
        "mean_time_per_token_ms": None,
        "requests": None,
        "failures": {},
    }
    per_token = {"sum": 0.0, "count": 0.0}
    for family in text_string_to_metric_families(text):
        name = family.name
        for sample in family.samples:
            if name in _QUEUE_GAUGES or name in _BATCH_GAUGES:
                key = "queue_size" if name in _QUEUE_GAUGES else "batch_current_size"
                found[key] = (found[key] or 0) + sample.value  # summed over models
            elif name == "tgi_queue_size":
                found["queue_size"] = sample.value
            elif name == "tgi_batch_current_size":
                found["batch_current_size"] = sample.value
            elif name == "tgi_request_count":
                found["requests"] = sample.value
            elif name == "tgi_request_failure":
                err = sample.labels.get("err", "unknown")
                found["failures"][err] = found["failures"].get(err, 0) + sample.value
            elif name == "tgi_request_mean_time_per_token_duration":
                if sample.name.endswith("_sum"):
                    per_token["sum"] = sample.value
                elif sample.name.endswith("_count"):
                    per_token["count"] = sample.value
    if per_token["count"]:
        found["mean_time_per_token_ms"] = round(1000 * per_token["sum"] / per_token["count"], 2)
    return found


def _backend_result(
    url: str,
    health: Future[Health],
    info: Future[dict[str, Any]],
    server_metrics: Future[str],
) -> dict[str, Any]:
    checked = health.result()
    result: dict[str, Any] = {
        "url": url,
        "protocol": protocol_of(url),
        "reachable": checked.reachable,
        "health": checked.detail,
        "error": checked.error,
        "info": None,
        "tgi": None,
    }
    try:
        payload = info.result()
        if payload:
            result["info"] = {key: payload.get(key) for key in INFO_FIELDS}
    except BackendProtocolError as exc:
        if exc.status_code is None:  # it answered, but not with model info
            result["info_error"] = exc.message
    except BackendError:
        pass  # no answer, or an error status: the health column says why
    try:
        result["tgi"] = parse_tgi_metrics(server_metrics.result())
    except BackendError:
        pass  # no /metrics (llama-cpp-python has none): nothing to show
    except ValueError:
        result["tgi_error"] = "not Prometheus text"
    return result


def _exporter_page(client: httpx.Client, url: str) -> tuple[str | None, str | None]:
    """(an exporter's metrics text, or why there is none)."""
    try:
        # The simulator's exporter is found at its backend's name, which may carry `openai+`.
        response = client.get(http_url(url))
    except httpx.HTTPError as exc:
        return None, exc.__class__.__name__
    if response.status_code != 200:
        return None, f"HTTP {response.status_code}"
    return response.text, None


def _gpu_result(
    source: str, url: str | None, page: Future[tuple[str | None, str | None]] | None
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "source": source,
        "url": url,
        "status": "not configured",
        "error": None,
        "simulated": False,
        "readings": [],
    }
    if url is None or page is None:
        return result
    text, error = page.result()
    if text is None:
        result["status"] = "unreachable"
        result["error"] = error
        return result
    try:
        readings = gpu.parse_dcgm(text)
    except gpu.GpuMetricsError:
        result["status"] = "unparsable"
        return result
    result["status"] = "ok"
    result["readings"] = [reading.as_dict() for reading in readings]
    result["simulated"] = any(reading.simulated for reading in readings)
    return result


def _scrape(urls: list[str]) -> dict[str, dict[str, Any]]:
    """Every backend's health, model info and metrics, and its GPU exporter, in parallel."""
    timeout = settings.OPS_SCRAPE_TIMEOUT
    results: dict[str, dict[str, Any]] = {}
    with (
        http_client(timeout=timeout, api_key=settings.TGI_API_KEY) as backend_client,
        # The exporters are other servers: they get no backend's token.
        httpx.Client(timeout=httpx.Timeout(timeout), verify=shared_ssl_context()) as plain_client,
        ThreadPoolExecutor(max_workers=min(32, 4 * len(urls)), thread_name_prefix="ops") as pool,
    ):
        asked = {
            url: (
                pool.submit(check_health, url, backend_client),
                pool.submit(fetch_info, url, backend_client),
                pool.submit(fetch_metrics, url, backend_client),
            )
            for url in urls
        }
        # Configured exporters need not wait for the model info: fetch them in the same round.
        gpu_urls: dict[str, tuple[str | None, str]] = {
            url: gpu.metrics_url_for(url, None) for url in urls
        }
        gpu_pages = {
            target: pool.submit(_exporter_page, plain_client, target)
            for target, _ in gpu_urls.values()
            if target is not None
        }
        for url in urls:
            results[url] = _backend_result(url, *asked[url])
        # Without GPU_METRICS_URL, only the simulator (known from its model info) has one.
        for url in urls:
            if gpu_urls[url][0] is None:
                gpu_urls[url] = gpu.metrics_url_for(url, results[url]["info"])
                target = gpu_urls[url][0]
                if target is not None and target not in gpu_pages:
                    gpu_pages[target] = pool.submit(_exporter_page, plain_client, target)
        for url in urls:
            target, source = gpu_urls[url]
            page = gpu_pages[target] if target is not None else None
            results[url]["gpu"] = _gpu_result(source, target, page)
            results[url]["scraped_at"] = metrics.clock()
    return results


def scrape_backends(urls: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Each backend's scrape, from the short Redis cache where fresh."""
    urls = rotation.backends() if urls is None else urls
    if not urls:
        return {}
    client = redis_clients.redis_client()
    cached = client.mget([_scrape_key(url) for url in urls])
    results = {url: json.loads(raw) for url, raw in zip(urls, cached, strict=True) if raw}
    missing = [url for url in urls if url not in results]
    if missing:
        fresh = _scrape(missing)
        pipe = client.pipeline(transaction=False)
        for url, result in fresh.items():
            pipe.set(_scrape_key(url), json.dumps(result), ex=SCRAPE_CACHE_SECONDS)
        pipe.execute()
        results.update(fresh)
    return {url: results[url] for url in urls}
