"""Operator controls take effect through services, in this process and in any other one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from playground import controls, services, slots
from playground.models import Block, Message
from playground.ops import metrics
from playground.realtime import presence, redis_clients
from tests.support.simulator import running_simulator

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


def submit(session: str, ip: str = "10.0.0.1") -> Message:
    return services.submit(session_key=session, client_ip=ip, prompt="How many r's in strawberry?")


def concurrency_limit(backend: str) -> int:
    """The limit dispatch applies to a backend now: an operator's override, else the setting."""
    return {b.url: b.limit for b in slots.in_rotation(include_disabled=True)}[backend]


def refused(session: str, ip: str = "10.0.0.1") -> services.PlaygroundError:
    with pytest.raises(services.PlaygroundError) as caught:
        submit(session, ip)
    return caught.value


def in_other_process(code: str) -> str:
    """Run Python with Django set up in a separate process on the same Redis; return stdout."""
    program = "import django; django.setup()\n" + code
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "playground.settings"}
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# --- pause ----------------------------------------------------------------------------------


def test_paused_intake_refuses_new_questions_with_the_banner_as_a_503(
    backend: str, enqueued: list[str]
) -> None:
    controls.set_paused("Back at 18:00 UTC after the GPU swap.")

    error = refused("s1")

    assert error.code == "paused" and error.status == 503
    assert error.message == "Back at 18:00 UTC after the GPU swap."
    assert not Message.objects.exists()
    assert services.queue_status()["accepting"] is False


def test_queued_work_still_starts_while_intake_is_paused(backend: str, enqueued: list[str]) -> None:
    first, second, third = submit("a", "10.0.0.1"), submit("b", "10.0.0.2"), submit("c", "10.0.0.3")
    assert enqueued == [first.pk, second.pk], "two slots on the backend"
    controls.set_paused("Paused for a moment.")

    slots.release_slot(backend, first.pk)  # the first answer ends
    started = services.dispatch()

    assert started == 1
    assert enqueued[-1] == third.pk


def test_resuming_intake_accepts_questions_again(backend: str, enqueued: list[str]) -> None:
    controls.set_paused("Paused.")
    refused("s1")

    controls.set_paused(None)

    assert submit("s1").status == Message.Status.QUEUED


def test_new_visitors_see_the_banner_and_a_refused_submit_keeps_their_prompt(
    backend: str, enqueued: list[str], visitor: Client
) -> None:
    controls.set_paused("We are back at 18:00 UTC.")

    page = visitor.get("/")
    posted = visitor.post("/c/new", {"prompt": "Is 9.11 bigger than 9.9?"})
    api = visitor.post("/api/v1/conversations", {"prompt": "hi"}, content_type="application/json")

    assert "We are back at 18:00 UTC." in page.content.decode()
    assert posted.status_code == 503
    assert "Is 9.11 bigger than 9.9?" in posted.content.decode()
    assert api.status_code == 503
    assert api.json() == {"error": {"code": "paused", "message": "We are back at 18:00 UTC."}}


def test_the_banner_is_escaped_on_the_page(backend: str, visitor: Client) -> None:
    controls.set_paused("<script>alert(1)</script>")

    html = visitor.get("/").content.decode()

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# --- drain ----------------------------------------------------------------------------------


def test_draining_starts_no_new_generation_and_keeps_the_line(
    backend: str, enqueued: list[str]
) -> None:
    controls.set_draining(True)

    message = submit("s1")

    assert enqueued == []
    assert services.position_of(message) == 1
    assert services.reconcile()["dispatched"] == 0


def test_ending_a_drain_lets_the_line_move(backend: str, enqueued: list[str]) -> None:
    controls.set_draining(True)
    message = submit("s1")

    controls.set_draining(False)
    services.dispatch()

    assert enqueued == [message.pk]


# --- concurrency ----------------------------------------------------------------------------


def test_a_concurrency_override_changes_the_slots_of_that_backend(
    backend: str, enqueued: list[str]
) -> None:
    controls.set_concurrency(backend, 3)

    messages = [submit(f"s{i}", f"10.0.0.{i}") for i in range(4)]

    assert enqueued == [m.pk for m in messages[:3]]
    assert slots.capacity() == 3
    assert slots.slots_in_use(backend) == 3


def test_lowering_concurrency_lets_running_work_finish_and_starts_nothing_new(
    backend: str, enqueued: list[str]
) -> None:
    first, second = submit("a", "10.0.0.1"), submit("b", "10.0.0.2")
    controls.set_concurrency(backend, 1)
    third = submit("c", "10.0.0.3")

    slots.release_slot(backend, first.pk)
    assert services.dispatch() == 0, "one slot still held against a limit of one"
    slots.release_slot(backend, second.pk)
    assert services.dispatch() == 1
    assert enqueued[-1] == third.pk


def test_resetting_the_override_goes_back_to_the_setting(backend: str) -> None:
    controls.set_concurrency(backend, 7)
    assert concurrency_limit(backend) == 7

    controls.set_concurrency(backend, None)

    assert concurrency_limit(backend) == 2


# --- disabled backends ----------------------------------------------------------------------


def test_a_disabled_backend_is_never_chosen(settings: Any, enqueued: list[str]) -> None:
    first, second = "http://gpu1.test:80", "http://gpu2.test:80"
    settings.TGI_URLS = [first, second]
    settings.GENERATION_CONCURRENCY = 4
    controls.set_backend_enabled(first, False)

    messages = [submit(f"s{i}", f"10.0.0.{i}") for i in range(3)]

    assert {m.backend for m in messages} == {second}
    assert slots.healthy_backends() == [second]
    assert slots.capacity() == 4
    assert slots.healthy_backends(include_disabled=True) == [first, second]


def test_an_enabled_backend_comes_back_into_rotation(settings: Any, enqueued: list[str]) -> None:
    first, second = "http://gpu1.test:80", "http://gpu2.test:80"
    settings.TGI_URLS = [first, second]
    controls.set_backend_enabled(first, False)
    submit("a", "10.0.0.1")

    controls.set_backend_enabled(first, True)
    message = submit("b", "10.0.0.2")

    assert message.backend == first, "least loaded again"


def test_disabling_every_backend_does_not_fail_the_waiting_as_an_outage(
    enqueued: list[str], settings: Any
) -> None:
    settings.BACKEND_OUTAGE_PATIENCE = 0
    with running_simulator() as url:
        settings.TGI_URLS = [url]
        controls.set_backend_enabled(url, False)
        message = submit("s1")
        Message.objects.filter(pk=message.pk).update(created=timezone.now() - timedelta(minutes=5))
        presence.touch(message.pk)  # the visitor is still watching

        services.reconcile()

    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED


# --- blocks ---------------------------------------------------------------------------------


def test_a_blocked_ip_is_refused_with_a_403_and_others_are_not(
    backend: str, enqueued: list[str]
) -> None:
    controls.add_block(kind=Block.Kind.IP, value="203.0.113.9", duration=timedelta(hours=1))

    error = refused("s1", "203.0.113.9")

    assert error.code == "blocked" and error.status == 403
    assert "blocked until" in error.message
    assert submit("s2", "203.0.113.10").status == Message.Status.QUEUED


def test_a_blocked_session_is_refused_from_any_address(backend: str, enqueued: list[str]) -> None:
    controls.add_block(kind=Block.Kind.SESSION, value="session-x", duration=timedelta(minutes=5))

    assert refused("session-x", "10.0.0.1").code == "blocked"
    assert refused("session-x", "10.9.9.9").code == "blocked"
    stored = Block.objects.get()
    assert stored.value != "session-x", "the session key is not stored"
    assert stored.value == controls.session_fingerprint("session-x")


def test_an_expired_or_lifted_block_refuses_nothing(backend: str, enqueued: list[str]) -> None:
    block = controls.add_block(kind=Block.Kind.IP, value="10.0.0.1", duration=timedelta(hours=1))
    block.expires = timezone.now() - timedelta(seconds=1)
    block.save()

    assert submit("s1", "10.0.0.1").status == Message.Status.QUEUED


def refusal(session_key: str, client_ip: str) -> controls.Refusal | None:
    pipe = redis_clients.redis_client().pipeline(transaction=False)
    controls.read_switches(pipe)
    return controls.refusal_from(session_key, client_ip, *pipe.execute())


def test_admission_asks_the_database_about_blocks_only_while_one_is_in_force(
    backend: str, enqueued: list[str], django_assert_num_queries: Any
) -> None:
    # Nobody blocked: once Redis knows it, telling needs no query at all.
    assert refusal("s1", "10.0.0.1") is None
    with django_assert_num_queries(0):
        assert refusal("s1", "10.0.0.1") is None

    block = controls.add_block(kind=Block.Kind.IP, value="10.0.0.1", duration=timedelta(hours=1))
    assert refusal("s1", "10.0.0.1").code == "blocked"  # type: ignore[union-attr]
    assert refusal("s2", "10.0.0.2") is None, "another visitor, asked in the database"

    block.expires = timezone.now()
    block.save()
    with django_assert_num_queries(0):
        assert refusal("s1", "10.0.0.1") is None


@pytest.mark.parametrize("change", ["deleted", "shortened"])
def test_a_block_ended_in_the_admin_ends_for_admission_at_once(
    backend: str, enqueued: list[str], change: str
) -> None:
    block = controls.add_block(kind=Block.Kind.IP, value="10.0.0.1", duration=timedelta(hours=1))
    assert refused("s1", "10.0.0.1").code == "blocked"
    other = controls.add_block(kind=Block.Kind.IP, value="10.0.0.9", duration=timedelta(days=1))

    if change == "deleted":
        block.delete()
    else:
        block.expires = timezone.now() - timedelta(minutes=1)
        block.save()

    assert submit("s1", "10.0.0.1").status == Message.Status.QUEUED
    assert refused("s9", "10.0.0.9").code == "blocked", "the other block still holds"
    other.delete()


def test_without_the_remembered_end_the_database_decides(backend: str, enqueued: list[str]) -> None:
    controls.add_block(kind=Block.Kind.IP, value="10.0.0.1", duration=timedelta(hours=1))
    redis_clients.redis_client().delete(controls.BLOCKS_END_KEY)  # a Redis restart, say

    assert refused("s1", "10.0.0.1").code == "blocked"
    assert redis_clients.redis_client().ttl(controls.BLOCKS_END_KEY) > 0, "remembered again"


def test_a_blocked_visitor_does_not_use_up_the_rate_budget(
    backend: str, enqueued: list[str], settings: Any
) -> None:
    from playground.env import parse_rate

    settings.IP_RATE_LIMIT = parse_rate("1/h")
    block = controls.add_block(kind=Block.Kind.IP, value="10.0.0.1", duration=timedelta(hours=1))
    refused("s1", "10.0.0.1")
    Block.objects.filter(pk=block.pk).update(expires=timezone.now())

    assert submit("s1", "10.0.0.1").status == Message.Status.QUEUED


def test_a_visitor_turned_away_by_a_pause_does_not_use_up_the_rate_budget(
    backend: str, enqueued: list[str], settings: Any
) -> None:
    from playground.env import parse_rate

    settings.IP_RATE_LIMIT = parse_rate("1/h")
    controls.set_paused("Back soon.")
    assert refused("s1", "10.0.0.1").code == "paused"
    controls.set_paused(None)

    assert submit("s1", "10.0.0.1").status == Message.Status.QUEUED


def test_refusals_by_controls_are_counted_by_reason(backend: str, enqueued: list[str]) -> None:
    controls.add_block(kind=Block.Kind.IP, value="10.0.0.7", duration=timedelta(hours=1))
    refused("s1", "10.0.0.7")
    controls.set_paused("Paused.")
    refused("s2", "10.0.0.8")

    counts = metrics.window().counts

    assert counts["rejected:blocked"] == 1
    assert counts["rejected:paused"] == 1


# --- across processes -----------------------------------------------------------------------


def test_controls_set_in_another_process_take_effect_here(
    backend: str, enqueued: list[str]
) -> None:
    in_other_process(
        "from playground import controls\n"
        "controls.set_paused('Paused from a shell.')\n"
        "controls.set_draining(True)\n"
        f"controls.set_concurrency({backend!r}, 5)\n"
        "controls.set_backend_enabled('http://other.test:80', False)\n"
    )

    assert refused("s1").code == "paused"
    assert services.dispatch() == 0
    assert concurrency_limit(backend) == 5
    assert controls.state().disabled == {"http://other.test:80"}


def test_controls_set_here_take_effect_in_another_process(backend: str) -> None:
    controls.set_paused("Paused here.")
    controls.set_draining(True)
    controls.set_concurrency(backend, 9)
    controls.set_backend_enabled(backend, False)

    seen = json.loads(
        in_other_process(
            "import json\n"
            "from django.conf import settings\n"
            "from playground import controls, slots\n"
            f"settings.TGI_URLS = [{backend!r}]\n"
            "print(json.dumps({'banner': controls.pause_banner(),\n"
            "    'draining': controls.draining(),\n"
            "    'limit': {b.url: b.limit for b in slots.in_rotation(include_disabled=True)}"
            f"[{backend!r}],\n"
            "    'healthy': slots.healthy_backends()}))\n"
        )
    )

    assert seen == {"banner": "Paused here.", "draining": True, "limit": 9, "healthy": []}


def test_a_block_set_in_another_process_refuses_here(backend: str, enqueued: list[str]) -> None:
    # The other process writes to this test's database (blocks live there, not in Redis).
    from django.db import connection

    name = connection.settings_dict["NAME"]
    if connection.vendor != "sqlite":
        pytest.skip("points the other process at the SQLite test database only")
    in_other_process(
        "from django.db import connections\n"
        f"connections['default'].settings_dict['NAME'] = {str(name)!r}\n"
        "from datetime import timedelta\n"
        "from playground import controls\n"
        "controls.add_block(kind='ip', value='198.51.100.4', duration=timedelta(minutes=10))\n"
    )

    assert refused("s1", "198.51.100.4").code == "blocked"
