"""/metrics for Prometheus: who may read it, and the playground's numbers in its text format.

Gauges are what is true now (ops/gauges.py); counters and histograms are the cumulative totals
every process adds to in Redis (ops/metrics.py), so that they only ever go up, whichever
process answers the scrape.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from playground.ops.gauges import Gauges
from playground.ops.metrics import HISTOGRAMS, totals
from playground.visitors import client_ip

CONTENT_TYPE = CONTENT_TYPE_LATEST


def may_read(request: HttpRequest) -> bool:
    """A client in METRICS_ALLOWED_NETWORKS, or one with METRICS_TOKEN as its bearer token."""
    return _from_allowed_network(request) or _bearer_matches(request)


def _from_allowed_network(request: HttpRequest) -> bool:
    if not settings.NUM_PROXIES and "HTTP_X_FORWARDED_FOR" in request.META:
        # Relayed by a proxy we were not told about: its own (often local) address says
        # nothing about the client, so the network list cannot vouch for it.
        return False
    address = client_ip(request)
    if address is None:
        return False
    ip = ipaddress.ip_address(address)
    return any(ip in network for network in settings.METRICS_ALLOWED_NETWORKS)


def _bearer_matches(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def render(gauges: Gauges) -> bytes:
    """The exposition text of `gauges` and the totals in Redis."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_PlaygroundCollector(gauges, totals()))
    return generate_latest(registry)


class _PlaygroundCollector(Collector):
    def __init__(self, gauges: Gauges, totals: dict[str, float]) -> None:
        self.gauges = gauges
        self.totals = totals

    def collect(self) -> Iterator[Metric]:
        g, totals = self.gauges, self.totals
        yield GaugeMetricFamily(
            "playground_queue_waiting", "Questions waiting for a GPU slot.", value=g.waiting
        )
        yield GaugeMetricFamily(
            "playground_generations_running", "Answers being written now.", value=g.running
        )
        yield GaugeMetricFamily(
            "playground_capacity",
            "Generation slots on backends in rotation.",
            value=g.capacity,
        )
        yield GaugeMetricFamily(
            "playground_intake_paused", "1 while an operator pauses intake.", value=int(g.paused)
        )
        yield GaugeMetricFamily(
            "playground_dispatch_draining",
            "1 while an operator drains (no new generations start).",
            value=int(g.draining),
        )
        yield GaugeMetricFamily(
            "playground_websocket_connections",
            "Open WebSocket streams across web processes.",
            value=g.websockets,
        )
        yield from self._backends()
        yield CounterMetricFamily(
            "playground_admitted",
            "Questions admitted to the line.",
            value=totals.get("admitted", 0),
        )
        rejected = CounterMetricFamily(
            "playground_rejected", "Questions refused at admission, by reason.", labels=["reason"]
        )
        for reason, count in _labelled(totals, "rejected"):
            rejected.add_metric([reason], count)
        yield rejected
        finished = CounterMetricFamily(
            "playground_generations_finished",
            "Answers that ended, by final status and error code.",
            labels=["status", "code"],
        )
        for rest, count in _labelled(totals, "finished"):
            status, _, code = rest.partition(":")
            finished.add_metric([status, code], count)
        yield finished
        yield CounterMetricFamily(
            "playground_tokens_generated",
            "Tokens written into answers (counted when each answer ends).",
            value=totals.get("tokens", 0),
        )
        yield CounterMetricFamily(
            "playground_websocket_connections_opened",
            "WebSocket streams opened.",
            value=totals.get("ws_opened", 0),
        )
        for kind, name, help_text in (
            ("wait", "playground_queue_wait_seconds", "Seconds from question to generation start."),
            ("ttft", "playground_time_to_first_token_seconds", "Seconds from start to 1st token."),
            ("duration", "playground_generation_duration_seconds", "Seconds a generation ran."),
        ):
            yield _histogram(name, help_text, kind, totals)

    def _backends(self) -> Iterator[Metric]:
        families = {
            "up": GaugeMetricFamily(
                "playground_backend_up",
                "1 when the backend answers health checks.",
                labels=["backend"],
            ),
            "disabled": GaugeMetricFamily(
                "playground_backend_disabled", "1 when an operator disabled it.", labels=["backend"]
            ),
            "slots": GaugeMetricFamily(
                "playground_backend_slots_in_use",
                "Slots leased on the backend.",
                labels=["backend"],
            ),
            "limit": GaugeMetricFamily(
                "playground_backend_concurrency_limit",
                "In-flight generations allowed on the backend.",
                labels=["backend"],
            ),
        }
        for backend in self.gauges.backends:
            families["up"].add_metric([backend.url], int(backend.healthy))
            families["disabled"].add_metric([backend.url], int(backend.disabled))
            families["slots"].add_metric([backend.url], backend.slots_in_use)
            families["limit"].add_metric([backend.url], backend.limit)
        yield from families.values()


def _labelled(totals: dict[str, float], prefix: str) -> list[tuple[str, float]]:
    return sorted(
        (name[len(prefix) + 1 :], value)
        for name, value in totals.items()
        if name.startswith(prefix + ":")
    )


def _histogram(name: str, help_text: str, kind: str, totals: dict[str, float]) -> Metric:
    bounds = HISTOGRAMS[kind]
    cumulative = 0.0
    buckets: list[tuple[str, float]] = []
    for i, bound in enumerate(bounds):
        cumulative += totals.get(f"hist:{kind}:{i}", 0)
        buckets.append((floatToGoString(bound), cumulative))
    cumulative += totals.get(f"hist:{kind}:{len(bounds)}", 0)
    buckets.append(("+Inf", cumulative))
    return HistogramMetricFamily(
        name, help_text, buckets=buckets, sum_value=totals.get(f"hist:{kind}:sum", 0.0)
    )
