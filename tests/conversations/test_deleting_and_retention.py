"""Deleting a conversation (issue 4), which cancels or takes out of line its answers and hands
their slots on, and the retention purge of old conversations."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from playground import services, slots
from playground.models import Conversation, Message, SamplePrompt
from playground.realtime import cancel_flags, delta_log, redis_clients
from tests.conversations.helpers import (
    VisitorFactory,
    answered,
    ask,
    assert_error,
    assert_not_found_page,
    page,
    post_json,
    receive_until_closed,
    set_running,
    stream,
    token_of,
)
from tests.support.simulator import running_simulator

# --- delete -------------------------------------------------------------------------------------


def test_delete_removes_the_conversation_and_its_share_link(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = answered(visitor, "Doomed", "Output")
    token = token_of(created["share_url"])
    kept = answered(visitor, "Kept", "Output")

    response = visitor.delete(f"/api/v1/conversations/{created['id']}")

    assert response.status_code == 200
    assert response.json() == {"deleted": created["id"]}
    assert not Conversation.objects.filter(pk=created["id"]).exists()
    assert not Message.objects.filter(conversation_id=created["id"]).exists()
    assert_error(visitor.get(f"/api/v1/conversations/{created['id']}"), 404, "not_found")
    assert_error(Client().get(f"/api/v1/shared/{token}"), 404, "not_found")
    assert_not_found_page(Client().get(f"/s/{token}/"))
    assert_not_found_page(visitor.get(f"/c/{created['id']}/"))
    listed = visitor.get("/api/v1/conversations").json()["conversations"]
    assert [c["id"] for c in listed] == [kept["id"]]
    assert_error(visitor.delete(f"/api/v1/conversations/{created['id']}"), 404, "not_found")


def test_deleting_cancels_a_running_answer(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor)
    message_id = created["message"]["id"]
    set_running(message_id)

    assert visitor.delete(f"/api/v1/conversations/{created['id']}").status_code == 200

    assert redis_clients.redis_client().get(cancel_flags.cancel_key(message_id)) == b"1"
    assert not Message.objects.filter(pk=message_id).exists()
    # Nothing of that visitor is generating any more.
    assert ask(visitor, "A new question")["message"]["status"] == "queued"


def test_deleting_takes_a_waiting_answer_out_of_line(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    for _ in range(2):
        ask(make_visitor())
    waiting_visitor, later_visitor = make_visitor(), make_visitor()
    waiting = ask(waiting_visitor)
    later = ask(later_visitor)
    assert (waiting["message"]["position"], later["message"]["position"]) == (1, 2)

    waiting_visitor.delete(f"/api/v1/conversations/{waiting['id']}")

    assert (
        redis_clients.redis_client().get(cancel_flags.cancel_key(waiting["message"]["id"])) == b"1"
    )
    assert later_visitor.get(f"/api/v1/messages/{later['message']['id']}").json()["position"] == 1
    assert waiting["message"]["id"] not in enqueued


def test_deleting_someone_elses_conversation_is_not_found(
    visitor: Client, make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor)
    message_id = created["message"]["id"]

    assert_error(make_visitor().delete(f"/api/v1/conversations/{created['id']}"), 404, "not_found")
    assert_not_found_page(make_visitor().post(f"/c/{created['id']}/delete"))
    assert Conversation.objects.filter(pk=created["id"]).exists()
    assert Message.objects.get(pk=message_id).status == "queued"
    assert not redis_clients.redis_client().exists(cancel_flags.cancel_key(message_id))


def test_delete_needs_a_csrf_token(visitor: Client, backend: str, enqueued: list[str]) -> None:
    created = answered(visitor, "Original", "Output")
    del visitor.defaults["HTTP_X_CSRFTOKEN"]

    assert_error(visitor.delete(f"/api/v1/conversations/{created['id']}"), 403, "csrf")
    assert Conversation.objects.filter(pk=created["id"]).exists()


def test_delete_from_the_page_goes_home(visitor: Client, backend: str, enqueued: list[str]) -> None:
    created = answered(visitor, "Doomed conversation", "Output")

    response = visitor.post(f"/c/{created['id']}/delete")

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert not Conversation.objects.filter(pk=created["id"]).exists()
    assert "Doomed conversation" not in page(visitor, "/")


def test_cancelling_a_dispatched_answer_hands_its_slot_to_the_next_in_line(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    first_visitor = make_visitor()
    first = ask(first_visitor)
    ask(make_visitor())
    waiting = ask(make_visitor())
    assert waiting["message"]["id"] not in enqueued

    first_visitor.post(f"/api/v1/messages/{first['message']['id']}/cancel")
    services.run_generation(first["message"]["id"])  # the task arrives after the cancel

    assert waiting["message"]["id"] in enqueued
    assert slots.slots_in_use(backend) == 2


def test_deleting_a_dispatched_answer_hands_its_slot_to_the_next_in_line(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    first_visitor = make_visitor()
    first = ask(first_visitor)
    ask(make_visitor())
    waiting = ask(make_visitor())
    assert waiting["message"]["id"] not in enqueued

    first_visitor.delete(f"/api/v1/conversations/{first['id']}")
    services.run_generation(first["message"]["id"])  # the task arrives after the delete

    assert waiting["message"]["id"] in enqueued
    assert slots.slots_in_use(backend) == 2


@pytest.mark.django_db(transaction=True)
def test_deleting_during_a_real_generation_stops_it_and_frees_the_slot(
    visitor: Client, settings: Any, samples: list[SamplePrompt], enqueued: list[str]
) -> None:
    with running_simulator(tokens_per_second=50) as url:
        settings.TGI_URLS = [url]
        created = post_json(visitor, "/api/v1/conversations", {"sample": "agatha"}).json()
        message_id = created["message"]["id"]
        worker = threading.Thread(target=services.run_generation, args=(message_id,))
        worker.start()
        deadline = time.monotonic() + 10
        while len(delta_log.read_delta_log(message_id)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert delta_log.read_delta_log(message_id), "the generation never started"

        response = visitor.delete(f"/api/v1/conversations/{created['id']}")
        worker.join(5)
        in_use = slots.slots_in_use(url)

    assert response.status_code == 200
    assert not worker.is_alive()
    assert in_use == 0
    assert not Conversation.objects.filter(pk=created["id"]).exists()
    assert not Message.objects.filter(pk=message_id).exists()
    assert ask(visitor, "Next question")["message"]["status"] == "queued"


@pytest.mark.django_db(transaction=True)
def test_a_live_viewer_hears_the_cancel_when_the_owner_deletes(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor)
    message_id = created["message"]["id"]
    set_running(message_id)
    token = token_of(created["share_url"])

    async def scenario() -> list[dict[str, Any]]:
        socket = stream(message_id, f"share={token}")
        connected, _ = await socket.connect()
        assert connected
        first = json.loads((await socket.receive_output(3))["text"])
        response = await asyncio.to_thread(visitor.delete, f"/api/v1/conversations/{created['id']}")
        assert response.status_code == 200
        return [first, *await receive_until_closed(socket)]

    events = asyncio.run(scenario())

    assert events[0]["type"] == "started"
    assert events[-2:] == [{"type": "cancelled"}, {"closed": 1000}]


# --- retention ----------------------------------------------------------------------------------


def aged(client: Client, prompt: str, days: float) -> dict[str, Any]:
    created = answered(client, prompt, "Output")
    Conversation.objects.filter(pk=created["id"]).update(
        updated=timezone.now() - timedelta(days=days)
    )
    return created


def test_purge_deletes_only_conversations_past_the_retention(
    visitor: Client, backend: str, enqueued: list[str], settings: Any
) -> None:
    settings.CONVERSATION_RETENTION_DAYS = 30
    old = aged(visitor, "Old", 31)
    recent = aged(visitor, "Recent", 29)
    fresh = answered(visitor, "Fresh", "Output")

    assert services.purge_expired() == 1

    remaining = set(Conversation.objects.values_list("pk", flat=True))
    assert remaining == {recent["id"], fresh["id"]}
    assert not Message.objects.filter(conversation_id=old["id"]).exists()
    assert_not_found_page(Client().get(old["share_url"]))
    assert services.purge_expired() == 0


def test_a_retention_of_zero_keeps_every_conversation(
    visitor: Client, backend: str, enqueued: list[str], settings: Any
) -> None:
    settings.CONVERSATION_RETENTION_DAYS = 0
    aged(visitor, "Ancient", 3650)
    aged(visitor, "Old", 31)

    assert services.purge_expired() == 0
    assert Conversation.objects.count() == 2


def test_the_retention_follows_the_setting(
    visitor: Client, backend: str, enqueued: list[str], settings: Any
) -> None:
    aged(visitor, "Two days", 2)
    settings.CONVERSATION_RETENTION_DAYS = 3
    assert services.purge_expired() == 0
    settings.CONVERSATION_RETENTION_DAYS = 1
    assert services.purge_expired() == 1
    assert Conversation.objects.count() == 0


def test_the_purge_command_deletes_expired_conversations(
    visitor: Client, backend: str, enqueued: list[str], settings: Any
) -> None:
    settings.CONVERSATION_RETENTION_DAYS = 7
    aged(visitor, "Old", 8)
    recent = aged(visitor, "Recent", 1)
    out = StringIO()

    call_command("purge_conversations", stdout=out)

    assert "deleted 1 conversations" in out.getvalue()
    assert list(Conversation.objects.values_list("pk", flat=True)) == [recent["id"]]


def test_the_purge_runs_periodically(
    visitor: Client, backend: str, enqueued: list[str], settings: Any
) -> None:
    from playground import tasks
    from playground.celery import app

    tasks_scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert "playground.tasks.purge_expired" in tasks_scheduled
    settings.CONVERSATION_RETENTION_DAYS = 7
    aged(visitor, "Old", 8)
    assert tasks.purge_expired() == 1
    assert Conversation.objects.count() == 0


def test_purging_a_conversation_with_a_running_answer_cancels_it(
    visitor: Client, backend: str, enqueued: list[str], settings: Any
) -> None:
    settings.CONVERSATION_RETENTION_DAYS = 1
    created = ask(visitor)
    set_running(created["message"]["id"])
    Conversation.objects.filter(pk=created["id"]).update(updated=timezone.now() - timedelta(days=2))

    assert services.purge_expired() == 1
    assert (
        redis_clients.redis_client().get(cancel_flags.cancel_key(created["message"]["id"])) == b"1"
    )
