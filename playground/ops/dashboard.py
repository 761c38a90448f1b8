"""What the operators' dashboard shows, as plain JSON-able data (`snapshot`), and the sampler
that keeps the last hour of it for the charts (`sample`, every few seconds from Celery beat).
"""

from __future__ import annotations

import logging
from typing import Any

from django.utils import timezone

from playground import controls
from playground.models import Block, Message
from playground.ops import accuracy, audit, gauges, gpu, metrics, scrape

log = logging.getLogger(__name__)

ACTIVE_LIST_LIMIT = 25
AUDIT_LIST_LIMIT = 15
BLOCK_LIST_LIMIT = 50


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


def active_blocks() -> list[Block]:
    return list(
        Block.objects.filter(expires__gt=timezone.now()).order_by("expires")[:BLOCK_LIST_LIMIT]
    )


def _backend_state(backend: gauges.BackendGauges) -> str:
    if backend.disabled:
        return "disabled"
    return "in rotation" if backend.healthy else "down"


def _tokens_per_second(window: metrics.Window) -> float:
    return round(window.counts.get("tokens", 0) / window.seconds, 1)


def snapshot(since: float | None = None) -> dict[str, Any]:
    """Everything the dashboard shows; `since` limits the chart series to newer points."""
    now = metrics.clock()
    state = controls.state()
    current = gauges.current(state)
    scraped = scrape.scrape_backends([b.url for b in current.backends])
    last_minute = metrics.window(metrics.RATE_WINDOW, now)
    finished = last_minute.by_prefix("finished")
    errors: dict[str, int] = {}
    for key, count in finished.items():
        status, _, code = key.partition(":")
        if status == Message.Status.ERROR:
            errors[code or "error"] = errors.get(code or "error", 0) + count
    backends = [
        {
            **scraped.get(b.url, {}),
            "url": b.url,
            "state": _backend_state(b),
            "slots_in_use": b.slots_in_use,
            "limit": b.limit,
            "override": state.concurrency.get(b.url),
        }
        for b in current.backends
    ]
    nvml = gpu.read_nvml()
    return {
        "now": now,
        "controls": {
            "paused": state.paused,
            "banner": state.banner,
            "draining": state.draining,
        },
        "queue": {
            "waiting": current.waiting,
            "running": current.running,
            "capacity": current.capacity,
        },
        "last_minute": {
            "seconds": round(last_minute.seconds, 1),
            "admitted": last_minute.counts.get("admitted", 0),
            "rejected": last_minute.by_prefix("rejected"),
            "errors": dict(sorted(errors.items(), key=lambda item: -item[1])),
            "tokens": last_minute.counts.get("tokens", 0),
            "tokens_per_second": _tokens_per_second(last_minute),
        },
        "latency": metrics.latencies(metrics.PERCENTILE_WINDOW, now),
        "websockets": current.websockets,
        "backends": backends,
        "host_gpus": [reading.as_dict() for reading in nvml] if nvml is not None else None,
        "active": _active_messages(),
        "audit": audit.latest(AUDIT_LIST_LIMIT),
        "series": metrics.series(since, now),
        # Correct / total per sample: last hour, last 24 hours, all time.
        "accuracy": accuracy.summary(),
    }


# --- the sampler (Celery beat) --------------------------------------------------------------


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


def sample() -> dict[str, Any] | None:
    """Append one point to the last-hour series, unless another process just did."""
    if not metrics.claim_sample():
        return None
    now = metrics.clock()
    current = gauges.current()
    last_minute = metrics.window(metrics.RATE_WINDOW, now)
    latency = metrics.latencies(metrics.PERCENTILE_WINDOW, now)
    try:
        readings = _all_gpu_readings(scrape.scrape_backends([b.url for b in current.backends]))
    except Exception:  # a GPU panel problem must not cost the queue its chart
        log.warning("GPU scrape for the sampler failed", exc_info=True)
        readings = []
    gpus = gpu.summary(readings)
    point = {
        "waiting": current.waiting,
        "running": current.running,
        "capacity": current.capacity,
        "tokens_per_second": _tokens_per_second(last_minute),
        "ttft_p95": latency["ttft"]["p95"],
        "gpu_utilization": gpus["utilization"],
        "gpu_memory": gpus["memory"],
    }
    metrics.store_point(point, now)
    return point
