"""The operators' dashboard: staff only, the numbers it shows, its panels and its controls."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern
from django.utils import timezone

from devtools.processes import free_port
from inference.sim import TGI_VERSION
from playground import controls, services, slots
from playground.models import AuditLog, Block, Message
from playground.ops import actions, audit, dashboard, metrics, scrape
from playground.ops import urls as ops_urls
from playground.realtime import redis_clients
from tests.ops.operators import logged_in, post
from tests.ops.test_controls import concurrency_limit
from tests.ops.test_metrics import finished
from tests.support.rows import stored_answer
from tests.support.simulator import running_simulator

pytestmark = pytest.mark.django_db(transaction=True)

NOW = 1_000_000_005.0  # 5 s into a ten-second bucket: the minute window covers 55 s

GET_URLS = ["/ops/", "/ops/data"]
POST_URLS = [
    "/ops/pause",
    "/ops/resume",
    "/ops/drain",
    "/ops/undrain",
    "/ops/backends/concurrency",
    "/ops/backends/state",
    "/ops/messages/cancel",
    "/ops/blocks",
    "/ops/blocks/1/lift",
]


def last_audit() -> AuditLog:
    entry = AuditLog.objects.first()
    assert entry is not None, "the control was audited"
    return entry


# --- who may see and use it -----------------------------------------------------------------


def test_every_ops_url_is_covered_by_the_access_tests() -> None:
    routes = {f"/ops/{p.pattern}" for p in ops_urls.urlpatterns if isinstance(p, URLPattern)}
    tested = {re.sub(r"/1/", "/<int:block_id>/", url) for url in GET_URLS + POST_URLS}

    assert routes == tested


@pytest.mark.parametrize(
    ("method", "url"), [("get", u) for u in GET_URLS + POST_URLS] + [("post", u) for u in POST_URLS]
)
def test_anonymous_visitors_are_sent_to_the_login(
    method: str, url: str, dead_backend: str, client: Client
) -> None:
    response = getattr(client, method)(url)

    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={url}"
    assert controls.pause_banner() is None and not controls.draining()


@pytest.mark.parametrize(
    ("method", "url"), [("get", u) for u in GET_URLS + POST_URLS] + [("post", u) for u in POST_URLS]
)
def test_logged_in_non_staff_users_get_a_403(method: str, url: str, dead_backend: str) -> None:
    client = logged_in(staff=False)

    response = getattr(client, method)(url, {"banner": "x", "backend": dead_backend})

    assert response.status_code == 403
    assert b"staff" in response.content
    assert controls.pause_banner() is None and not controls.draining()
    assert not AuditLog.objects.exists()


def test_staff_see_the_dashboard_and_its_data(dead_backend: str) -> None:
    client = logged_in(staff=True)

    page = client.get("/ops/")
    data = client.get("/ops/data")

    assert page.status_code == 200 and b"Backends" in page.content
    assert page["Cache-Control"].startswith("max-age=0")
    assert data.status_code == 200 and data["Content-Type"] == "application/json"


def test_a_control_post_without_the_csrf_token_is_refused(operator: Client) -> None:
    response = operator.post("/ops/pause", {"banner": "Forged"})

    assert response.status_code == 403
    assert controls.pause_banner() is None
    assert not AuditLog.objects.exists()


def test_controls_only_answer_post(dead_backend: str, operator: Client) -> None:
    assert operator.get("/ops/drain").status_code == 405
    assert not controls.draining()


# --- the numbers ----------------------------------------------------------------------------


def test_the_dashboard_shows_the_numbers_of_a_scripted_scenario(
    dead_backend: str, enqueued: list[str], monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    monkeypatch.setattr(metrics, "clock", lambda: NOW)
    # Four visitors are admitted: two take the backend's two slots (one already running), two wait.
    visitors = [
        services.submit(session_key=f"v{i}", client_ip=f"10.0.0.{i}", prompt="Count the r's")
        for i in range(4)
    ]
    assert visitors[0].mark_running()
    # The fifth finds the line full; the sixth comes while intake is paused.
    settings.QUEUE_MAX_WAITING = 2
    for session, expected in (("v5", "queue_full"), ("v6", "paused")):
        controls.set_paused("Back soon." if session == "v6" else None)
        with pytest.raises(services.PlaygroundError) as refused:
            services.submit(session_key=session, client_ip="10.0.1.1", prompt="hello")
        assert refused.value.code == expected
    controls.set_paused(None)
    # Four earlier answers ended in the last minute: two done, two failed.
    finished("f1", wait=1.0, ttft=0.5, tokens=100)
    finished("f2", wait=2.0, ttft=0.5, tokens=200)
    finished("f3", wait=3.0, ttft=1.0, tokens=300, code="backend_timeout")
    finished("f4", wait=10.0, ttft=2.0, tokens=500, code="generation")

    # Two people watch streams.
    async def two_viewers() -> None:
        await metrics.websocket_opened()
        await metrics.websocket_opened()

    asyncio.run(two_viewers())
    client = logged_in(staff=True)

    data = client.get("/ops/data").json()
    page = client.get("/ops/").content.decode()

    assert data["queue"] == {"waiting": 2, "running": 1, "capacity": 2}
    backend = data["backends"][0]
    assert (backend["slots_in_use"], backend["limit"], backend["state"]) == (2, 2, "in rotation")
    minute = data["last_minute"]
    assert minute["admitted"] == 4
    assert minute["rejected"] == {"queue_full": 1, "paused": 1}
    assert minute["errors"] == {"backend_timeout": 1, "generation": 1}
    assert minute["tokens"] == 1100
    assert minute["seconds"] == 55.0
    assert minute["tokens_per_second"] == 20.0
    assert data["latency"]["wait"] == {"p50": 2.0, "p95": 10.0, "count": 4}
    assert data["latency"]["ttft"] == {"p50": 0.5, "p95": 2.0, "count": 4}
    assert data["websockets"] == 2
    assert [m["status"] for m in data["active"]] == ["running", "queued", "queued", "queued"]
    assert '<p class="big" data-field="queue.waiting">2</p>' in page
    assert '<span data-field="queue.running">1</span>' in page
    assert "<li><span>1</span> queue_full</li>" in page
    assert "<li><span>1</span> backend_timeout</li>" in page


def test_the_chart_series_comes_from_the_sampler(
    dead_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored_answer("w1", Message.Status.QUEUED)
    monkeypatch.setattr(metrics, "clock", lambda: NOW)
    dashboard.sample()
    monkeypatch.setattr(metrics, "clock", lambda: NOW + 5)
    stored_answer("w2", Message.Status.QUEUED)
    redis_clients.redis_client().delete(metrics.SAMPLE_LOCK_KEY)  # the next interval has come
    dashboard.sample()
    client = logged_in(staff=True)

    everything = client.get("/ops/data").json()["series"]
    newer = client.get(f"/ops/data?since={NOW}").json()["series"]

    assert [(p["t"], p["waiting"]) for p in everything] == [(NOW, 1), (NOW + 5, 2)]
    assert [p["waiting"] for p in newer] == [2]
    for junk in ("banana", "nan", "inf", "-1e999"):
        assert client.get(f"/ops/data?since={junk}").json()["series"] == everything


# --- backends and GPUs ----------------------------------------------------------------------


def test_the_backends_panel_reads_a_live_simulator_and_marks_its_gpus_simulated(
    settings: Any,
) -> None:
    settings.GPU_METRICS_URLS = []
    with running_simulator(max_concurrent_requests=1, tokens_per_second=50) as url:
        settings.TGI_URLS = [url]
        small = {"inputs": "hi", "parameters": {"max_new_tokens": 3}}
        httpx.post(f"{url}/generate", json=small, timeout=10)
        body = {"inputs": "hold", "parameters": {"max_new_tokens": 300}}
        with (
            httpx.Client(timeout=30) as http,
            http.stream("POST", f"{url}/generate_stream", json=body) as stream,
        ):
            lines = stream.iter_lines()
            next(lines)
            assert httpx.post(f"{url}/generate", json=small, timeout=10).status_code == 429
            client = logged_in(staff=True)
            data = client.get("/ops/data").json()
            page = client.get("/ops/").content.decode()

    backend = data["backends"][0]
    assert backend["health"] == "ok" and backend["reachable"] is True
    assert backend["info"] == {
        "model_id": "reflection-playground/simulator",
        "model_sha": None,
        "version": TGI_VERSION,
        "max_concurrent_requests": 1,
        "max_input_tokens": 8191,
        "max_total_tokens": 8192,
    }
    assert backend["tgi"]["batch_current_size"] == 1
    assert backend["tgi"]["queue_size"] == 0
    assert backend["tgi"]["failures"] == {"overloaded": 1}
    assert backend["tgi"]["mean_time_per_token_ms"] > 0
    gpus = backend["gpu"]
    assert gpus["source"] == "simulator" and gpus["status"] == "ok" and gpus["simulated"]
    assert [g["gpu"] for g in gpus["readings"]] == ["0", "1"]
    assert all(g["utilization"] > 0 for g in gpus["readings"]), "busy with the held stream"
    assert "reflection-playground/simulator" in page
    assert '<span class="badge badge-sim">simulated</span>' in page


def test_an_unreachable_backend_and_gpu_exporter_show_as_unreachable(
    dead_backend: str, settings: Any
) -> None:
    settings.GPU_METRICS_URLS = [f"http://127.0.0.1:{free_port()}/metrics"]
    client = logged_in(staff=True)

    page = client.get("/ops/")
    data = client.get("/ops/data").json()

    assert page.status_code == 200
    assert "unreachable (ConnectError)" in page.content.decode()
    backend = data["backends"][0]
    assert backend["health"] == "unreachable" and backend["error"] == "ConnectError"
    assert backend["info"] is None and backend["tgi"] is None
    assert backend["gpu"]["status"] == "unreachable" and backend["gpu"]["source"] == "dcgm"


@contextmanager
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """Accepts connections and never answers, like a backend that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()


def test_a_hanging_backend_is_cut_off_by_the_scrape_timeout_and_scraped_once_per_cache(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.OPS_SCRAPE_TIMEOUT = 0.2
    settings.GPU_METRICS_URLS = []
    monkeypatch.setattr(scrape, "SCRAPE_CACHE_SECONDS", 60)
    client = logged_in(staff=True)
    with silent_server() as (url, connections):
        settings.TGI_URLS = [url]
        first = client.get("/ops/data").json()
        second = client.get("/ops/data").json()
        page = client.get("/ops/")

    assert first["backends"][0]["health"] == "unreachable"
    assert first["backends"][0]["error"] == "ReadTimeout"
    assert second["backends"][0]["error"] == "ReadTimeout"
    assert page.status_code == 200
    assert len(connections) == 3, "/health, /info and /metrics once; later polls use the cache"


# --- the controls ---------------------------------------------------------------------------


def test_pausing_sets_the_banner_and_is_audited(dead_backend: str, operator: Client) -> None:
    response = post(operator, "/ops/pause", {"banner": "  Back at   18:00 UTC. "})

    assert response.status_code == 302 and response["Location"] == "/ops/"
    assert controls.pause_banner() == "Back at 18:00 UTC."
    entry = last_audit()
    assert (entry.actor_name, entry.action) == ("operator", "pause")
    assert entry.detail == {"banner": "Back at 18:00 UTC."}
    assert "Intake paused" in operator.get("/ops/").content.decode()


def test_resuming_removes_the_banner_and_is_audited(dead_backend: str, operator: Client) -> None:
    controls.set_paused("Paused.")

    post(operator, "/ops/resume")

    assert controls.pause_banner() is None
    assert last_audit().action == "resume"


def test_draining_and_undraining_are_audited(
    dead_backend: str, operator: Client, enqueued: list[str]
) -> None:
    post(operator, "/ops/drain")
    assert controls.draining() and last_audit().action == "drain"
    message = services.submit(session_key="s", client_ip="10.0.0.1", prompt="hi")
    assert enqueued == []

    post(operator, "/ops/undrain")

    assert not controls.draining() and last_audit().action == "undrain"
    assert enqueued == [message.pk], "the line moves at once"


def test_a_drain_tells_everyone_waiting_at_once_that_the_line_is_on_hold(
    dead_backend: str, operator: Client, enqueued: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from playground.realtime import channel_groups

    controls.set_draining(True)
    waiting = services.submit(session_key="s", client_ip="10.0.0.1", prompt="hi")
    controls.set_draining(False)
    told: list[dict[str, Any]] = []
    monkeypatch.setattr(channel_groups, "publish_to_line", told.append)

    post(operator, "/ops/drain")

    places = [services.place_in(event, waiting.pk) for event in told]
    assert places and all(place and place["on_hold"] for place in places)
    assert services.message_payload(waiting)["on_hold"] is True


def test_setting_and_resetting_a_backends_concurrency(
    dead_backend: str, operator: Client, enqueued: list[str]
) -> None:
    post(operator, "/ops/backends/concurrency", {"backend": dead_backend, "concurrency": "12"})
    assert concurrency_limit(dead_backend) == 12
    entry = last_audit()
    assert (entry.action, entry.target, entry.detail) == (
        "concurrency",
        dead_backend,
        {"before": None, "after": 12},
    )

    post(operator, "/ops/backends/concurrency", {"backend": dead_backend, "reset": "1"})

    assert concurrency_limit(dead_backend) == 2
    assert last_audit().action == "concurrency_reset"


def test_disabling_and_enabling_a_backend(dead_backend: str, operator: Client) -> None:
    post(operator, "/ops/backends/state", {"backend": dead_backend, "action": "disable"})
    assert slots.healthy_backends() == [] and last_audit().action == "disable_backend"
    assert '<span data-b="state">disabled</span>' in operator.get("/ops/").content.decode()

    post(operator, "/ops/backends/state", {"backend": dead_backend, "action": "enable"})

    assert slots.healthy_backends() == [dead_backend]
    assert last_audit().action == "enable_backend"


def test_staff_can_cancel_any_visitors_answer(
    dead_backend: str, operator: Client, enqueued: list[str]
) -> None:
    running = [
        services.submit(session_key=f"someone-{i}", client_ip=f"10.0.0.{i}", prompt="hi")
        for i in range(2)
    ]
    third = services.submit(session_key="third", client_ip="10.0.0.3", prompt="hi")

    response = post(operator, "/ops/messages/cancel", {"message_id": third.pk})

    assert response.status_code == 302
    third.refresh_from_db()
    assert third.status == Message.Status.CANCELLED
    entry = last_audit()
    assert (entry.action, entry.target, entry.detail) == (
        "cancel",
        third.pk,
        {"status": "cancelled"},
    )
    assert enqueued == [m.pk for m in running], "the others keep their slots"
    page = Client().get(services.share_url(third.conversation)).content.decode()
    assert "Stopped by the site" in page
    assert "The site&#x27;s operators stopped this answer." in page


def test_blocking_an_ip_refuses_that_visitor_and_lifting_it_lets_them_back(
    dead_backend: str, operator: Client, enqueued: list[str]
) -> None:
    post(operator, "/ops/blocks", {"kind": "ip", "value": "198.51.100.7", "duration": "2h"})
    block = Block.objects.get()
    assert block.label == "198.51.100.7" and block.active
    assert abs(block.expires - (timezone.now() + timedelta(hours=2))) < timedelta(minutes=1)
    assert last_audit().action == "block"
    with pytest.raises(services.PlaygroundError):
        services.submit(session_key="s", client_ip="198.51.100.7", prompt="hi")

    post(operator, f"/ops/blocks/{block.pk}/lift")

    assert services.submit(session_key="s", client_ip="198.51.100.7", prompt="hi")
    assert last_audit().action == "lift_block"


def test_blocking_a_session_by_its_conversation_refuses_it_on_any_address(
    dead_backend: str, operator: Client, enqueued: list[str]
) -> None:
    message = services.submit(session_key="pest", client_ip="10.0.0.1", prompt="hi")
    services.cancel(message)

    post(
        operator,
        "/ops/blocks",
        {"kind": "session", "value": message.conversation_id, "duration": "30", "reason": "spam"},
    )

    block = Block.objects.get()
    assert block.label == f"session of conversation {message.conversation_id}"
    assert block.reason == "spam" and "pest" not in block.value
    with pytest.raises(services.PlaygroundError) as refused:
        services.submit(session_key="pest", client_ip="10.9.9.9", prompt="hi")
    assert refused.value.code == "blocked"


@pytest.mark.parametrize(
    ("url", "data", "says"),
    [
        ("/ops/pause", {"banner": "   "}, "Write the banner"),
        ("/ops/pause", {"banner": "x" * 301}, "limited to 300"),
        ("/ops/backends/concurrency", {"concurrency": "-3"}, "whole number"),
        ("/ops/backends/concurrency", {"concurrency": "0"}, "between 1 and 1024"),
        ("/ops/backends/concurrency", {"concurrency": "1025"}, "between 1 and 1024"),
        ("/ops/backends/concurrency", {"concurrency": "lots"}, "whole number"),
        (
            "/ops/backends/concurrency",
            {"backend": "http://evil:80", "concurrency": "4"},
            "No such backend",
        ),
        (
            "/ops/backends/state",
            {"backend": "http://evil:80", "action": "disable"},
            "No such backend",
        ),
        ("/ops/messages/cancel", {"message_id": "nope"}, "No answer has that id"),
        ("/ops/blocks", {"kind": "ip", "value": "300.1.1.1", "duration": "1h"}, "not an IP"),
        (
            "/ops/blocks",
            {"kind": "ip", "value": "10.0.0.1", "duration": "0m"},
            "between one minute",
        ),
        (
            "/ops/blocks",
            {"kind": "ip", "value": "10.0.0.1", "duration": "31d"},
            "between one minute",
        ),
        ("/ops/blocks", {"kind": "ip", "value": "10.0.0.1", "duration": "soon"}, "duration"),
        (
            "/ops/blocks",
            {"kind": "session", "value": "unknown-id", "duration": "1h"},
            "No conversation",
        ),
        (
            "/ops/blocks",
            {"kind": "user", "value": "x", "duration": "1h"},
            "IP address or a session",
        ),
        ("/ops/blocks/999/lift", {}, "No such block"),
    ],
)
def test_bad_control_input_is_refused_with_a_clear_error_and_changes_nothing(
    url: str, data: dict[str, str], says: str, dead_backend: str, operator: Client
) -> None:
    if "concurrency" in url and "backend" not in data:
        data = {**data, "backend": dead_backend}

    # Unconfirmed: what was typed is checked before anyone is asked to confirm it.
    response = post(operator, url, data, confirmed=False)

    assert response.status_code == 400
    assert says in response.content.decode()
    assert controls.state() == controls.ControlState(banner=None, draining=False)
    assert not Block.objects.exists()
    assert not AuditLog.objects.exists()


def test_a_hostile_prompt_is_escaped_on_the_dashboard(
    dead_backend: str, enqueued: list[str]
) -> None:
    services.submit(session_key="x", client_ip="10.0.0.1", prompt="<img src=x onerror=alert(1)>")

    page = logged_in(staff=True).get("/ops/").content.decode()

    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_the_dashboard_uses_its_own_vendored_chart_library(dead_backend: str) -> None:
    page = logged_in(staff=True).get("/ops/").content.decode()

    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert "/static/vendor/uplot/uPlot.iife.min.js" in sources
    assert "/static/ops/dashboard.js" in sources
    assert not [s for s in sources if s.startswith(("http:", "https:", "//"))], "no CDN"
    assert Client().get("/static/vendor/uplot/uPlot.iife.min.js").status_code == 200


# --- validating what an operator typed ------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "0", "1025", "abc", "2.5", "", None, "99999999"])
def test_concurrency_outside_1_to_1024_is_refused(value: Any) -> None:
    with pytest.raises(actions.ControlError):
        actions.clean_concurrency(value)


@pytest.mark.parametrize(("value", "expected"), [("1", 1), (" 64 ", 64), ("1024", 1024)])
def test_concurrency_within_bounds_is_accepted(value: str, expected: int) -> None:
    assert actions.clean_concurrency(value) == expected


@pytest.mark.parametrize("value", ["", "   ", None, "x" * 301])
def test_an_empty_or_overlong_banner_is_refused(value: Any) -> None:
    with pytest.raises(actions.ControlError):
        actions.clean_banner(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("90", timedelta(minutes=90)), ("1m", timedelta(minutes=1)), ("12h", timedelta(hours=12))]
    + [("30d", timedelta(days=30))],
)
def test_block_durations_from_a_minute_to_thirty_days(value: str, expected: timedelta) -> None:
    assert actions.clean_duration(value) == expected


@pytest.mark.parametrize("value", ["0", "0m", "31d", "-5m", "5w", "", "1.5h", "9999999"])
def test_block_durations_outside_the_range_are_refused(value: str) -> None:
    with pytest.raises(actions.ControlError):
        actions.clean_duration(value)


@pytest.mark.parametrize("value", ["999.1.1.1", "10.0.0.0/8", "example.com", ""])
def test_an_ip_that_does_not_parse_is_refused(value: str) -> None:
    with pytest.raises(actions.ControlError):
        actions.clean_ip(value)


def test_ips_are_stored_in_the_form_visitors_are_recognised_by() -> None:
    assert actions.clean_ip(" 2001:DB8:0:0::1 ") == "2001:db8::1"


def test_a_backend_must_be_one_of_the_configured_ones(backend: str) -> None:
    assert actions.clean_backend(backend) == backend
    with pytest.raises(actions.ControlError):
        actions.clean_backend("http://elsewhere:80")


# --- the audit log --------------------------------------------------------------------------


def test_an_audit_entry_names_the_operator_and_keeps_the_values(db: None) -> None:
    operator = get_user_model().objects.create_user("olga", password="x", is_staff=True)

    entry = audit.record(operator, "concurrency", "http://gpu1:80", before=None, after=8)

    stored = AuditLog.objects.get(pk=entry.pk)
    assert stored.actor == operator and stored.actor_name == "olga"
    assert stored.action == "concurrency" and stored.target == "http://gpu1:80"
    assert stored.detail == {"before": None, "after": 8}


def test_the_audit_entry_outlives_the_operators_account(db: None) -> None:
    operator = get_user_model().objects.create_user("gone", password="x", is_staff=True)
    audit.record(operator, "drain")

    operator.delete()

    entry = AuditLog.objects.get()
    assert entry.actor is None and entry.actor_name == "gone"


# --- the admin ------------------------------------------------------------------------------


@pytest.fixture
def superuser(db: None) -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.com", "unused-pw")
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_lists_blocks_and_the_audit_log_but_never_edits_the_log(
    superuser: Client,
) -> None:
    controls.add_block(kind=Block.Kind.IP, value="10.0.0.9", duration=timedelta(hours=1))
    entry = audit.record(None, "drain")

    assert superuser.get("/admin/playground/block/").status_code == 200
    assert superuser.get("/admin/playground/auditlog/").status_code == 200
    assert superuser.get("/admin/playground/auditlog/add/").status_code == 403
    assert superuser.post(f"/admin/playground/auditlog/{entry.pk}/delete/").status_code == 403
    assert AuditLog.objects.filter(pk=entry.pk).exists()


def test_a_session_block_added_in_the_admin_is_stored_hashed_and_refuses_that_session(
    superuser: Client, dead_backend: str, enqueued: list[str]
) -> None:
    expires = timezone.now() + timedelta(hours=1)
    response = superuser.post(
        "/admin/playground/block/add/",
        {
            "kind": "session",
            "value": "raw-session-key",
            "label": "from the admin",
            "reason": "",
            "expires_0": expires.strftime("%Y-%m-%d"),
            "expires_1": expires.strftime("%H:%M:%S"),
        },
    )

    assert response.status_code == 302, response.content
    block = Block.objects.get()
    assert block.value == controls.session_fingerprint("raw-session-key")
    assert block.created_by is not None and block.created_by.get_username() == "root"
    with pytest.raises(services.PlaygroundError):
        services.submit(session_key="raw-session-key", client_ip="10.0.0.1", prompt="hi")
    assert last_audit().action == "block"


def test_an_admin_block_with_a_bad_ip_is_refused(superuser: Client) -> None:
    expires = timezone.now() + timedelta(hours=1)
    response = superuser.post(
        "/admin/playground/block/add/",
        {
            "kind": "ip",
            "value": "not-an-ip",
            "expires_0": expires.strftime("%Y-%m-%d"),
            "expires_1": expires.strftime("%H:%M:%S"),
        },
    )

    assert response.status_code == 200
    assert "That is not an IP address." in response.content.decode()
    assert not Block.objects.exists()


def test_the_message_admin_cancels_selected_answers_and_audits_it(
    superuser: Client, dead_backend: str, enqueued: list[str]
) -> None:
    message = services.submit(session_key="v", client_ip="10.0.0.1", prompt="hi")
    waiting = services.submit(session_key="w", client_ip="10.0.0.2", prompt="hi")
    third = services.submit(session_key="x", client_ip="10.0.0.3", prompt="hi")

    response = superuser.post(
        "/admin/playground/message/",
        {"action": "cancel_selected", "_selected_action": [third.pk]},
    )

    assert response.status_code == 302
    third.refresh_from_db()
    assert third.status == Message.Status.CANCELLED
    assert Message.objects.get(pk=message.pk).status == Message.Status.QUEUED
    assert Message.objects.get(pk=waiting.pk).status == Message.Status.QUEUED
    entry = last_audit()
    assert (entry.action, entry.target, entry.detail["via"]) == ("cancel", third.pk, "admin")


def test_the_operators_pages_stay_in_english_for_a_browser_that_prefers_chinese(
    operator: Client,
) -> None:
    response = operator.get("/ops/", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9")

    assert response.status_code == 200
    assert response["Content-Language"] == "en"
    assert '<html lang="en"' in response.content.decode()
