"""What a Redis that restarts empty, a worker that vanishes and a worker that shuts down leave
behind, and how services puts it right: leases rebuilt before anyone is leased a slot, nobody
waiting taken for gone, and an answer that had started written again as a new attempt, never
spliced onto what its viewers already have."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from playground import services, slots
from playground.models import Message
from playground.realtime import channel_groups, delta_log, presence, redis_clients
from playground.services import generation
from tests.support.simulator import running_simulator

pytestmark = pytest.mark.django_db(transaction=True)


def submit(session: str, sample: str = "strawberry") -> Message:
    return services.submit(session_key=session, client_ip=f"10.0.0.{len(session)}", sample=sample)


def redis_restarts_empty() -> None:
    """What a restart of a Redis that keeps nothing on disk does to the playground's keys."""
    redis_clients.redis_client().flushdb()


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Events published from synchronous code (the reconciler, cancels), as (message, event)."""
    sent: list[tuple[str, dict[str, Any]]] = []
    original = channel_groups.publish_many

    def recording(events: list[tuple[str, dict[str, Any]]]) -> None:
        sent.extend(events)
        original(events)

    monkeypatch.setattr(channel_groups, "publish_many", recording)
    return sent


@pytest.fixture
def announced(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any] | None]]:
    """What each generation announced when it ended, as (message, event)."""
    sent: list[tuple[str, dict[str, Any] | None]] = []
    original = delta_log.StreamPublisher.finish

    async def recording(
        publisher: delta_log.StreamPublisher, final: dict[str, Any] | None, patience: float
    ) -> bool:
        sent.append((publisher.message_id, final))
        return await original(publisher, final, patience)

    monkeypatch.setattr(delta_log.StreamPublisher, "finish", recording)
    return sent


@pytest.fixture
def stopping(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """This process's "shutting down" flag, a fresh one for the test (a worker that shuts down
    never starts again; the test process goes on)."""
    flag = threading.Event()
    monkeypatch.setattr(generation, "_stopping", flag)
    return flag


def interrupted_while_writing(message: Message) -> None:
    worker = threading.Thread(target=services.run_generation, args=(message.pk,))
    worker.start()
    deadline = time.monotonic() + 10
    while len(delta_log.read_delta_log(message.pk)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    services.interrupt_generations()
    worker.join(10)
    assert not worker.is_alive()


@pytest.fixture
def slow_sim(settings: Any) -> Iterator[str]:
    with running_simulator(tokens_per_second=40) as url:
        settings.TGI_URLS = [url]
        settings.GENERATION_CONCURRENCY = 2
        yield url


def test_the_concurrency_cap_holds_when_redis_restarts_empty(
    backend: str, samples: Any, enqueued: list[str]
) -> None:
    first, second = submit("s-one"), submit("s-two")
    assert {first.backend, second.backend} == {backend}, "both hold a slot"

    redis_restarts_empty()
    third = submit("s-three")

    third.refresh_from_db()
    assert third.dispatched_at is None, "the slots of the two answers were not handed out again"
    assert services.position_of(third) == 1
    assert slots.slots_in_use(backend) == 2
    assert slots.leases_intact()


def test_a_visitor_waiting_when_redis_restarts_empty_is_not_taken_for_gone(
    backend: str, samples: Any, enqueued: list[str], settings: Any
) -> None:
    settings.GENERATION_CONCURRENCY = 1
    running, waiting = submit("s-one"), submit("s-two")
    long_ago = timezone.now() - timedelta(seconds=settings.ABANDON_GRACE_SECONDS * 3)
    Message.objects.filter(pk=waiting.pk).update(created=long_ago)
    presence.touch(waiting.pk)  # their page is open and polling

    redis_restarts_empty()  # which loses that mark
    Message.objects.filter(pk=running.pk).update(status=Message.Status.DONE)
    services.dispatch()

    waiting.refresh_from_db()
    assert waiting.status == Message.Status.QUEUED and waiting.dispatched_at is not None
    assert enqueued[-1] == waiting.pk


def test_the_reconciler_restores_leases_before_it_looks_for_lost_workers(
    backend: str, samples: Any, enqueued: list[str]
) -> None:
    message = submit("s-one")
    assert message.mark_running()
    Message.objects.filter(pk=message.pk).update(
        dispatched_at=timezone.now() - timedelta(minutes=5)
    )

    redis_restarts_empty()
    result = services.reconcile()

    message.refresh_from_db()
    assert message.status == Message.Status.RUNNING, "its worker is alive: it renews the lease"
    assert result == {"requeued": 0, "failed": 0, "dispatched": 0}
    assert slots.holds_slot(backend, message.pk)


def running_whose_worker_vanished(backend: str, session: str = "s-one") -> Message:
    message = submit(session)
    assert message.mark_running()
    Message.objects.filter(pk=message.pk).update(
        dispatched_at=timezone.now() - timedelta(seconds=slots.lease_seconds() + 5)
    )
    redis_clients.redis_client().delete(slots.slot_key(backend))
    return message


def test_a_lease_found_missing_is_given_a_renewal_period_before_its_worker_counts_as_lost(
    backend: str, samples: Any, enqueued: list[str], settings: Any
) -> None:
    # After an outage longer than a lease, the leases of live workers have expired; each
    # worker renews its own a second after Redis is back.
    settings.SLOT_LEASE_SECONDS = 3
    message = running_whose_worker_vanished(backend)

    assert services.reconcile()["requeued"] == 0
    message.refresh_from_db()
    assert message.status == Message.Status.RUNNING

    time.sleep(slots.lease_seconds() / 3)
    assert services.reconcile()["requeued"] == 1
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED


def test_an_answer_that_had_started_is_written_again_as_the_next_attempt(
    backend: str, samples: Any, enqueued: list[str], settings: Any, published: list
) -> None:
    settings.SLOT_LEASE_SECONDS = 3
    message = running_whose_worker_vanished(backend)
    services.reconcile()
    time.sleep(slots.lease_seconds() / 3)

    services.reconcile()

    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED and message.attempts == 1
    assert (message.pk, {"type": "restarted", "attempt": 2}) in published
    assert services.attempt_shown(message) == 2
    # A page that shows 30 deltas of attempt 1 and reconnects is told to start over.
    state = services.stream_state(
        message.pk, session_key="s-one", share_token=None, after=30, attempt=1
    )
    assert state is not None
    assert state.restarted_event == {"type": "restarted", "attempt": 2}
    fresh = services.stream_state(
        message.pk, session_key="s-one", share_token=None, after=0, attempt=2
    )
    assert fresh is not None and fresh.restarted_event is None


def test_an_answer_that_had_started_is_not_taken_for_abandoned_when_nobody_watches(
    backend: str, samples: Any, enqueued: list[str], settings: Any
) -> None:
    message = submit("s-one")
    assert message.mark_running()
    long_ago = timezone.now() - timedelta(seconds=settings.ABANDON_GRACE_SECONDS * 3)
    Message.objects.filter(pk=message.pk).update(created=long_ago)
    message.refresh_from_db()
    assert message.requeue()

    message.refresh_from_db()
    assert not services.is_abandoned(message)


def test_a_worker_shutting_down_puts_the_answer_it_writes_back_in_line(
    slow_sim: str, samples: Any, enqueued: list[str], announced: list, stopping: threading.Event
) -> None:
    message = submit("s-one", sample="agatha")

    interrupted_while_writing(message)

    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED and message.attempts == 1
    assert message.dispatched_at is None, "it waits in its place for a worker that stays"
    assert message.deltas == [], "nothing of the interrupted attempt is kept as its answer"
    assert delta_log.read_delta_log(message.pk) == [], "nor shown to a viewer who connects now"
    assert announced == [(message.pk, {"type": "restarted", "attempt": 2})]
    assert slots.slots_in_use(slow_sim) == 0


def test_a_worker_shutting_down_starts_nothing_it_still_receives(
    slow_sim: str, samples: Any, enqueued: list[str], stopping: threading.Event
) -> None:
    message = submit("s-one")
    assert message.dispatched_at is not None
    services.interrupt_generations()

    services.run_generation(message.pk)

    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED and message.dispatched_at is None
    assert message.attempts == 0
    assert slots.slots_in_use(slow_sim) == 0
    assert enqueued == [message.pk], "and it does not hand the line to itself"


def test_a_restarted_answer_streams_afresh_from_seq_one_and_keeps_only_its_own_text(
    slow_sim: str, samples: Any, enqueued: list[str], stopping: threading.Event
) -> None:
    message = submit("s-one", sample="agatha")
    interrupted_while_writing(message)
    stopping.clear()  # a worker that stays

    services.dispatch()
    services.run_generation(message.pk)

    message.refresh_from_db()
    assert message.status == Message.Status.DONE and message.attempts == 2
    assert [d["seq"] for d in message.deltas] == list(range(1, len(message.deltas) + 1))
    state = services.stream_state(
        message.pk, session_key="s-one", share_token=None, after=3, attempt=1
    )
    assert state is not None
    assert state.restarted_event == {"type": "restarted", "attempt": 2}
