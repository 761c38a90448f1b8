"""What the operators' dashboard and /metrics show: live gauges, backend and GPU scrapes, the
dashboard's numbers, and the sampler that keeps the last hour for the charts.

Backends and GPU exporters are scraped in parallel with a short timeout and the result is kept
in Redis for a few seconds, so several operators polling every 1.5 s cost each backend one
scrape per few seconds, and an unreachable endpoint shows as "unreachable" instead of stalling
the page.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from inference.backends import http_url, info_from_payload, info_path, protocol_of
from inference.client import BackendError, shared_ssl_context
from playground import answer_checks, controls, gpu, metrics, rotation, services, slots
from playground.models import AuditLog, Block, Message
from playground.realtime import redis_clients

log = logging.getLogger(__name__)

SCRAPE_CACHE_SECONDS = 3
ACTIVE_LIST_LIMIT = 25
AUDIT_LIST_LIMIT = 15
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


# --- live gauges ----------------------------------------------------------------------------


def current_gauges(state: controls.ControlState | None = None) -> metrics.Gauges:
    state = state or controls.state()
    healthy = set(slots.healthy_backends(include_disabled=True))
    backends = [
        metrics.BackendGauges(
            url=url,
            healthy=url in healthy,
            disabled=url in state.disabled,
            slots_in_use=slots.slots_in_use(url),
            limit=state.concurrency.get(url, settings.GENERATION_CONCURRENCY),
        )
        for url in rotation.backends()
    ]
    running = Message.objects.filter(
        role=Message.Role.ASSISTANT, status=Message.Status.RUNNING
    ).count()
    return metrics.Gauges(
        waiting=services.waiting_count(),
        running=running,
        capacity=sum(b.limit for b in backends if b.healthy and not b.disabled),
        paused=state.paused,
        draining=state.draining,
        websockets=metrics.websocket_viewers(),
        backends=backends,
    )


# --- scraping backends and GPU exporters ----------------------------------------------------


@dataclass
class _Fetched:
    status: int | None = None
    text: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200


def _get(client: httpx.Client, url: str, headers: dict[str, str]) -> _Fetched:
    try:
        # A backend's name may carry its protocol (`openai+http://…`); the request does not.
        response = client.get(http_url(url), headers=headers)
    except httpx.HTTPError as exc:
        return _Fetched(error=exc.__class__.__name__)
    return _Fetched(status=response.status_code, text=response.text)


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
    url: str, health: _Fetched, info: _Fetched, tgi_metrics: _Fetched
) -> dict[str, Any]:
    protocol = protocol_of(url)
    answered = info.ok or info.error == "ReadTimeout"
    if protocol == "openai" and health.status in (404, 405) and answered:
        # llama-cpp-python's server has no /health: its model list answering is the health,
        # and a model list that timed out means busy (it serves one request at a time).
        health = _Fetched(status=200)
    result: dict[str, Any] = {
        "url": url,
        "protocol": protocol,
        "reachable": health.status is not None,
        "health": "unreachable",
        "error": health.error,
        "info": None,
        "tgi": None,
    }
    if health.status is not None:
        result["health"] = "ok" if health.ok else f"HTTP {health.status}"
    if info.ok:
        try:
            payload = info_from_payload(url, json.loads(info.text))
            if payload:
                result["info"] = {key: payload.get(key) for key in INFO_FIELDS}
        except ValueError:
            result["info_error"] = "not JSON"
        except BackendError:
            result["info_error"] = "no model listed"
    if tgi_metrics.ok:
        try:
            result["tgi"] = parse_tgi_metrics(tgi_metrics.text)
        except ValueError:
            result["tgi_error"] = "not Prometheus text"
    return result


def _gpu_result(source: str, url: str | None, fetched: _Fetched | None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "source": source,
        "url": url,
        "status": "not configured",
        "error": None,
        "simulated": False,
        "readings": [],
    }
    if url is None or fetched is None:
        return result
    if not fetched.ok:
        result["status"] = "unreachable"
        result["error"] = fetched.error or f"HTTP {fetched.status}"
        return result
    try:
        readings = gpu.parse_dcgm(fetched.text)
    except gpu.GpuMetricsError:
        result["status"] = "unparsable"
        return result
    result["status"] = "ok"
    result["readings"] = [reading.as_dict() for reading in readings]
    result["simulated"] = any(reading.simulated for reading in readings)
    return result


def _scrape(urls: list[str]) -> dict[str, dict[str, Any]]:
    """Scrape every backend's /health, /info (/v1/models for an OpenAI-compatible server) and
    /metrics and its GPU exporter, in parallel."""
    timeout = settings.OPS_SCRAPE_TIMEOUT
    tgi_headers = (
        {"Authorization": f"Bearer {settings.TGI_API_KEY}"} if settings.TGI_API_KEY else {}
    )
    results: dict[str, dict[str, Any]] = {}
    with (
        httpx.Client(timeout=httpx.Timeout(timeout), verify=shared_ssl_context()) as client,
        ThreadPoolExecutor(max_workers=min(32, 4 * len(urls)), thread_name_prefix="ops") as pool,
    ):
        pages = {
            (url, page): pool.submit(_get, client, url + path, tgi_headers)
            for url in urls
            for page, path in (
                ("health", "/health"),
                ("info", info_path(url)),
                ("metrics", "/metrics"),
            )
        }
        # Configured exporters need not wait for /info: fetch them in the same round.
        gpu_urls: dict[str, tuple[str | None, str]] = {
            url: gpu.metrics_url_for(url, None) for url in urls
        }
        gpu_pages = {
            target: pool.submit(_get, client, target, {})
            for target, _ in gpu_urls.values()
            if target is not None
        }
        for url in urls:
            results[url] = _backend_result(
                url, *(pages[(url, page)].result() for page in ("health", "info", "metrics"))
            )
        # Without GPU_METRICS_URL, only the simulator (known from its /info) has an exporter.
        for url in urls:
            if gpu_urls[url][0] is None:
                gpu_urls[url] = gpu.metrics_url_for(url, results[url]["info"])
                target = gpu_urls[url][0]
                if target is not None and target not in gpu_pages:
                    gpu_pages[target] = pool.submit(_get, client, target, {})
        for url in urls:
            target, source = gpu_urls[url]
            fetched = gpu_pages[target].result() if target is not None else None
            results[url]["gpu"] = _gpu_result(source, target, fetched)
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


def _all_gpu_readings(scraped: dict[str, dict[str, Any]]) -> list[gpu.GpuReading]:
    readings: dict[str, gpu.GpuReading] = {}
    for result in scraped.values():
        for raw in result.get("gpu", {}).get("readings", []):
            reading = gpu.GpuReading(**raw)
            # Two backends on one GPU host report the same GPUs: count each once.
            readings[reading.uuid or f"{reading.host}/{reading.gpu}"] = reading
    for reading in gpu.read_nvml() or []:
        readings.setdefault(reading.uuid or f"{reading.host}/{reading.gpu}", reading)
    return list(readings.values())


# --- the dashboard's numbers ----------------------------------------------------------------


def _active_messages() -> list[dict[str, Any]]:
    now = timezone.now()
    active = (
        Message.objects.filter(role=Message.Role.ASSISTANT, status__in=Message.ACTIVE)
        .select_related("conversation")
        .order_by("-status", "created", "id")[:ACTIVE_LIST_LIMIT]
    )
    return [
        {
            "id": message.pk,
            "conversation": message.conversation_id,
            "status": message.status,
            "backend": message.backend or None,
            "client_ip": message.client_ip,
            "age_seconds": round((now - message.created).total_seconds(), 1),
            "prompt": message.prompt[:120],
        }
        for message in active
    ]


def _audit_entries() -> list[dict[str, Any]]:
    return [
        {
            "when": entry.created.isoformat(),
            "who": entry.actor_name,
            "action": entry.action,
            "target": entry.target,
            "detail": entry.detail,
        }
        for entry in AuditLog.objects.all()[:AUDIT_LIST_LIMIT]
    ]


def active_blocks() -> list[Block]:
    return list(Block.objects.filter(expires__gt=timezone.now()).order_by("expires")[:50])


def snapshot(since: float | None = None) -> dict[str, Any]:
    """Everything the dashboard shows, as plain JSON-able data."""
    now = metrics.clock()
    state = controls.state()
    gauges = current_gauges(state)
    scraped = scrape_backends([b.url for b in gauges.backends])
    last_minute = metrics.window(metrics.RATE_WINDOW, now)
    finished = last_minute.by_prefix("finished")
    errors: dict[str, int] = {}
    for key, count in finished.items():
        status, _, code = key.partition(":")
        if status == Message.Status.ERROR:
            errors[code or "error"] = errors.get(code or "error", 0) + count
    backends = []
    for b in gauges.backends:
        scrape = scraped.get(b.url, {})
        if b.disabled:
            state_text = "disabled"
        elif not b.healthy:
            state_text = "down"
        else:
            state_text = "in rotation"
        backends.append(
            {
                **scrape,
                "url": b.url,
                "state": state_text,
                "slots_in_use": b.slots_in_use,
                "limit": b.limit,
                "override": state.concurrency.get(b.url),
            }
        )
    nvml = gpu.read_nvml()
    return {
        "now": now,
        "controls": {
            "paused": state.paused,
            "banner": state.banner,
            "draining": state.draining,
        },
        "queue": {
            "waiting": gauges.waiting,
            "running": gauges.running,
            "capacity": gauges.capacity,
        },
        "last_minute": {
            "seconds": round(last_minute.seconds, 1),
            "admitted": last_minute.counts.get("admitted", 0),
            "rejected": last_minute.by_prefix("rejected"),
            "errors": dict(sorted(errors.items(), key=lambda item: -item[1])),
            "tokens": last_minute.counts.get("tokens", 0),
            "tokens_per_second": round(
                last_minute.counts.get("tokens", 0) / last_minute.seconds, 1
            ),
        },
        "latency": metrics.latencies(metrics.PERCENTILE_WINDOW, now),
        "websockets": gauges.websockets,
        "backends": backends,
        "host_gpus": [reading.as_dict() for reading in nvml] if nvml is not None else None,
        "active": _active_messages(),
        "audit": _audit_entries(),
        "series": metrics.series(since, now),
        # Correct / total per sample: last hour, last 24 hours, all time (answer_checks).
        "accuracy": answer_checks.accuracy(),
    }


# --- the sampler (Celery beat) --------------------------------------------------------------


def sample() -> dict[str, Any] | None:
    """Append one point to the last-hour series, unless another process just did."""
    if not metrics.claim_sample():
        return None
    now = metrics.clock()
    gauges = current_gauges()
    last_minute = metrics.window(metrics.RATE_WINDOW, now)
    latency = metrics.latencies(metrics.PERCENTILE_WINDOW, now)
    try:
        readings = _all_gpu_readings(scrape_backends([b.url for b in gauges.backends]))
    except Exception:  # a GPU panel problem must not cost the queue its chart
        log.warning("GPU scrape for the sampler failed", exc_info=True)
        readings = []
    gpus = gpu.summary(readings)
    point = {
        "waiting": gauges.waiting,
        "running": gauges.running,
        "capacity": gauges.capacity,
        "tokens_per_second": round(last_minute.counts.get("tokens", 0) / last_minute.seconds, 1),
        "ttft_p95": latency["ttft"]["p95"],
        "gpu_utilization": gpus["utilization"],
        "gpu_memory": gpus["memory"],
    }
    metrics.store_point(point, now)
    return point
