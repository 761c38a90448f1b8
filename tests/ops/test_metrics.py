"""/metrics for Prometheus: who may read it, and that its numbers add up across processes."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from playground import controls, rotation, slots
from playground.env import env_networks
from playground.models import Message
from playground.ops import dashboard, metrics
from playground.realtime import redis_clients
from tests.support.rows import stored_answer

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = "203.0.113.50"  # TEST-NET-3: never in an allowed network here


def scrape(client: Client, **extra: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a successful /metrics response."""
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


# --- who may read it ------------------------------------------------------------------------


def test_without_a_token_or_an_allowed_address_it_is_refused(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = None

    response = client.get("/metrics", REMOTE_ADDR=OUTSIDE)

    assert response.status_code == 403
    assert b"playground_" not in response.content


def test_a_missing_or_wrong_token_is_asked_for_with_401(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = "s3cret-token"

    missing = client.get("/metrics", REMOTE_ADDR=OUTSIDE)
    wrong = client.get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION="Bearer nope")
    basic = client.get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION="Basic czNjcmV0")

    for response in (missing, wrong, basic):
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert b"playground_" not in response.content


def test_the_bearer_token_opens_it_from_anywhere(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = "s3cret-token"

    response = client.get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION="Bearer s3cret-token")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert b"playground_queue_waiting" in response.content


def test_an_allowed_network_needs_no_token(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = "s3cret-token"
    settings.METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network("10.20.0.0/16")]

    inside = client.get("/metrics", REMOTE_ADDR="10.20.3.4")
    outside = client.get("/metrics", REMOTE_ADDR="10.21.3.4")

    assert inside.status_code == 200
    assert outside.status_code == 401


def test_loopback_is_allowed_by_default(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = None

    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200


def test_a_request_relayed_by_an_unconfigured_proxy_is_not_vouched_for_by_its_address(
    client: Client, settings: Any
) -> None:
    settings.METRICS_TOKEN = None
    settings.NUM_PROXIES = 0

    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=OUTSIDE)

    assert response.status_code == 403


def test_behind_a_configured_proxy_the_forwarded_client_address_decides(
    client: Client, settings: Any
) -> None:
    settings.METRICS_TOKEN = None
    settings.NUM_PROXIES = 1
    settings.METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network("10.0.0.0/8")]

    allowed = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.1.2.3")
    refused = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=OUTSIDE)

    assert allowed.status_code == 200
    assert refused.status_code == 403


def test_metrics_only_answers_get(client: Client) -> None:
    assert client.post("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 405


def test_allowed_networks_are_parsed_strictly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_ALLOWED_NETWORKS", " 10.0.0.0/8 , 192.168.1.7, ::1/128 ")
    assert env_networks("METRICS_ALLOWED_NETWORKS") == [
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.7/32"),
        ipaddress.ip_network("::1/128"),
    ]
    for bad in ("10.0.0.1/8", "10.0.0.0/33", "localhost", "10.0.0.0/8;"):
        monkeypatch.setenv("METRICS_ALLOWED_NETWORKS", bad)
        with pytest.raises(ImproperlyConfigured, match="^METRICS_ALLOWED_NETWORKS="):
            env_networks("METRICS_ALLOWED_NETWORKS")


# --- what it says ---------------------------------------------------------------------------


def finished(session: str, *, wait: float, ttft: float, tokens: int, code: str = "") -> Message:
    """An answer that waited `wait` s, got its first token after `ttft` s and then ended."""
    now = timezone.now()
    started = now - timedelta(seconds=5)
    message = stored_answer(
        session,
        Message.Status.RUNNING,
        created=started - timedelta(seconds=wait),
        started_at=started,
        dispatched_at=started,
    )
    first_token = started + timedelta(seconds=ttft)
    if code:
        assert message.fail(
            code, "failed", sections={}, deltas=[], tokens=tokens, first_token_at=first_token
        )
    else:
        assert message.finish(
            sections={},
            deltas=[],
            tokens=tokens,
            finish_reason="eos_token",
            first_token_at=first_token,
        )
    return message


def test_counts_and_histograms_follow_the_recorded_events(
    client: Client, backend: str, settings: Any
) -> None:
    for _ in range(3):
        metrics.record_admitted()
    metrics.record_rejected("queue_full")
    metrics.record_rejected("queue_full")
    metrics.record_rejected("paused")
    finished("a", wait=0.3, ttft=0.2, tokens=100)
    finished("b", wait=4.0, ttft=0.7, tokens=50)
    finished("c", wait=40.0, ttft=3.0, tokens=7, code="backend_timeout")
    cancelled = stored_answer("d", Message.Status.QUEUED)
    assert cancelled.cancel()

    samples = scrape(client)

    assert samples[("playground_admitted_total", ())] == 3
    assert samples[("playground_rejected_total", (("reason", "queue_full"),))] == 2
    assert samples[("playground_rejected_total", (("reason", "paused"),))] == 1
    done = ("playground_generations_finished_total", (("code", ""), ("status", "done")))
    timeout = (
        "playground_generations_finished_total",
        (("code", "backend_timeout"), ("status", "error")),
    )
    gave_up = ("playground_generations_finished_total", (("code", ""), ("status", "cancelled")))
    assert samples[done] == 2 and samples[timeout] == 1 and samples[gave_up] == 1
    assert samples[("playground_tokens_generated_total", ())] == 157
    wait = "playground_queue_wait_seconds"
    assert samples[(f"{wait}_bucket", (("le", "0.5"),))] == 1
    assert samples[(f"{wait}_bucket", (("le", "5.0"),))] == 2
    assert samples[(f"{wait}_bucket", (("le", "30.0"),))] == 2
    assert samples[(f"{wait}_bucket", (("le", "60.0"),))] == 3
    assert samples[(f"{wait}_bucket", (("le", "+Inf"),))] == 3
    assert samples[(f"{wait}_count", ())] == 3
    assert samples[(f"{wait}_sum", ())] == pytest.approx(44.3, abs=0.01)
    ttft = "playground_time_to_first_token_seconds"
    assert samples[(f"{ttft}_bucket", (("le", "0.25"),))] == 1
    assert samples[(f"{ttft}_bucket", (("le", "1.0"),))] == 2
    assert samples[(f"{ttft}_count", ())] == 3
    assert samples[("playground_generation_duration_seconds_count", ())] == 3


def test_gauges_show_the_line_the_backends_and_the_controls(client: Client, backend: str) -> None:
    stored_answer("w1", Message.Status.QUEUED)
    stored_answer("w2", Message.Status.QUEUED)
    running = stored_answer(
        "r1", Message.Status.RUNNING, dispatched_at=timezone.now(), backend=backend
    )
    slots.restore_leases([(running.pk, backend)])
    controls.set_paused("Paused.")
    controls.set_concurrency(backend, 5)

    samples = scrape(client)

    by_backend = (("backend", backend),)
    assert samples[("playground_queue_waiting", ())] == 2
    assert samples[("playground_generations_running", ())] == 1
    assert samples[("playground_capacity", ())] == 5
    assert samples[("playground_intake_paused", ())] == 1
    assert samples[("playground_dispatch_draining", ())] == 0
    assert samples[("playground_backend_up", by_backend)] == 1
    assert samples[("playground_backend_disabled", by_backend)] == 0
    assert samples[("playground_backend_slots_in_use", by_backend)] == 1
    assert samples[("playground_backend_concurrency_limit", by_backend)] == 5


def test_a_backend_that_is_down_or_disabled_says_so(client: Client, backend: str) -> None:
    rotation.mark_down(backend, "test")
    controls.set_backend_enabled(backend, False)

    samples = scrape(client)

    assert samples[("playground_backend_up", (("backend", backend),))] == 0
    assert samples[("playground_backend_disabled", (("backend", backend),))] == 1
    assert samples[("playground_capacity", ())] == 0


def test_events_recorded_by_other_processes_add_up(client: Client, backend: str) -> None:
    metrics.record_admitted()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "playground.settings"}
    program = (
        "import django; django.setup()\n"
        "from playground.ops import metrics\n"
        "metrics.record_admitted(); metrics.record_admitted()\n"
        "metrics.record_rejected('rate_limited')\n"
    )
    subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env, check=True, timeout=60)

    samples = scrape(client)

    assert samples[("playground_admitted_total", ())] == 3
    assert samples[("playground_rejected_total", (("reason", "rate_limited"),))] == 1


def test_counters_keep_counting_after_the_dashboard_window_has_moved_on(
    client: Client, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "clock", lambda: 1_000_000_005.0)
    metrics.record_admitted()
    monkeypatch.setattr(metrics, "clock", lambda: 1_000_000_005.0 + 3600)
    metrics.record_admitted()

    assert metrics.window().counts["admitted"] == 1, "the dashboard shows the last minute"
    assert scrape(client)[("playground_admitted_total", ())] == 2, "Prometheus sees them all"


def test_websocket_connections_are_counted_per_live_process(client: Client, backend: str) -> None:
    async def connect_two_close_one() -> None:
        await metrics.websocket_opened()
        await metrics.websocket_opened()
        await metrics.websocket_opened()
        await metrics.websocket_closed()

    asyncio.run(connect_two_close_one())

    samples = scrape(client)
    assert samples[("playground_websocket_connections", ())] == 2
    assert samples[("playground_websocket_connections_opened_total", ())] == 3


def test_a_process_that_died_stops_counting_its_websockets(backend: str) -> None:
    asyncio.run(metrics.websocket_opened())
    assert metrics.websocket_viewers() == 1

    # Its heartbeat lapses, as it does when the process is gone.
    redis_clients.redis_client().delete(metrics._alive_key(metrics._PROCESS))

    assert metrics.websocket_viewers() == 0


def test_recording_never_breaks_the_caller_when_redis_is_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unreachable = redis.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.2)
    monkeypatch.setattr(redis_clients, "redis_client", lambda: unreachable)

    metrics.record_admitted()
    metrics.record_rejected("queue_full")

    monkeypatch.undo()
    assert metrics.totals() == {}


# --- the numbers the dashboard reads --------------------------------------------------------


def test_percentiles_are_nearest_rank() -> None:
    assert metrics.percentile([], 50) is None
    assert metrics.percentile([3.0], 95) == 3.0
    assert metrics.percentile([1, 2, 3, 10], 50) == 2
    assert metrics.percentile([1, 2, 3, 10], 95) == 10
    assert metrics.percentile(list(range(1, 101)), 95) == 95


def test_the_minute_window_sums_its_ten_second_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    base = 1_000_000_000.0
    for offset, count in ((-70, 4), (-45, 2), (-5, 1), (0, 3)):
        monkeypatch.setattr(metrics, "clock", lambda offset=offset: base + offset)
        for _ in range(count):
            metrics.record_admitted()

    window = metrics.window(60, now=base + 5)

    assert window.counts["admitted"] == 6, "the bucket 70 s ago is outside the minute"
    assert window.seconds == 55


def test_the_sampler_keeps_one_point_per_interval_for_the_last_hour(
    backend: str, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.TGI_URLS = []
    stored_answer("w1", Message.Status.QUEUED)
    monkeypatch.setattr(metrics, "clock", lambda: 1_000_000_000.0)

    point = dashboard.sample()
    again = dashboard.sample()

    assert point is not None and point["waiting"] == 1
    assert again is None, "another sampler just took this interval"
    assert [p["waiting"] for p in metrics.series()] == [1]
    assert metrics.series(since=1_000_000_000.0) == []
    assert metrics.series(now=1_000_000_000.0 + 3601) == [], "older than an hour"


def test_the_chart_history_lives_in_redis_and_expires_an_hour_after_its_last_point(
    backend: str,
) -> None:
    metrics.store_point({"waiting": 1}, now=1_000_000_000.0)
    metrics.store_point({"waiting": 2}, now=1_000_000_005.0)
    client = redis_clients.redis_client()

    # Read back from Redis, where a restarted web or worker process finds them as they were.
    assert [p["waiting"] for p in metrics.series(now=1_000_000_006.0)] == [1, 2]
    assert 0 < client.ttl(metrics.SERIES_KEY) <= metrics.SERIES_SECONDS


def test_a_stream_viewer_counts_while_connected(backend: str) -> None:
    from channels.testing import WebsocketCommunicator

    from playground.consumers import MessageStreamConsumer
    from tests.support.sessions import visitor_session

    session = visitor_session()
    message = stored_answer(session.session_key, Message.Status.QUEUED)

    async def watch() -> tuple[int, int]:
        socket = WebsocketCommunicator(
            MessageStreamConsumer.as_asgi(), f"/ws/messages/{message.pk}/"
        )
        socket.scope["url_route"] = {"kwargs": {"message_id": message.pk}}
        socket.scope["session"] = session
        await socket.connect()
        await socket.receive_output(3)  # the queued event
        during = await asyncio.to_thread(metrics.websocket_viewers)
        await socket.disconnect()
        after = await asyncio.to_thread(metrics.websocket_viewers)
        return during, after

    during, after = asyncio.run(watch())

    assert (during, after) == (1, 0)
