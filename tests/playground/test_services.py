"""services: dispatch, the generation path against the simulator over real HTTP, repairs.

These tests call `services.run_generation` in the test process, the way the Celery task does,
against a real simulator on a loopback port and the session's real Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from inference.parser import parse
from inference.samples import get_sample
from playground import eta, rotation, services, slots
from playground.models import Message
from playground.realtime import delta_log, presence, redis_clients, shared_loop
from playground.services import line, questions, streaming
from tests.support.simulator import running_simulator, serving, sim_stats

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sim(settings: Any) -> Iterator[str]:
    with running_simulator() as url:
        settings.TGI_URLS = [url]
        settings.GENERATION_CONCURRENCY = 2
        yield url


def submit(sample: str = "strawberry", session: str = "s1", ip: str = "10.0.0.1") -> Message:
    return services.submit(session_key=session, client_ip=ip, sample=sample)


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_a_generation_streams_a_sample_answer_into_the_message(
    sim: str, samples: Any, enqueued: list[str]
) -> None:
    message = submit()
    assert enqueued == [message.pk]

    services.run_generation(message.pk)

    message.refresh_from_db()
    assert message.status == Message.Status.DONE
    expected = parse(get_sample("strawberry").scripted_answer).as_dict()
    assert message.sections == expected
    assert [event["seq"] for event in message.deltas] == list(range(1, len(message.deltas) + 1))
    assert delta_log.read_delta_log(message.pk) == message.deltas
    assert message.finish_reason == "eos_token"
    assert message.model_id == "reflection-playground/simulator"
    assert message.sampling["temperature"] == 0.7 and message.sampling["top_p"] == 0.95
    stats = services.message_stats(message)
    assert stats is not None and stats["tokens"] > 50 and stats["ttft_seconds"] >= 0
    assert slots.slots_in_use(sim) == 0


def test_a_finished_answer_keeps_the_time_it_spent_in_each_phase(
    sim: str, samples: Any, enqueued: list[str]
) -> None:
    message = submit()

    services.run_generation(message.pk)

    message.refresh_from_db()
    spent = message.phase_seconds
    assert set(spent) == {"thinking", "reflecting", "answering"}
    assert all(seconds > 0 for seconds in spent.values())
    generation = (message.finished_at - message.first_token_at).total_seconds()
    assert sum(spent.values()) <= generation + 0.05


def test_a_redelivered_task_is_a_no_op(sim: str, samples: Any, enqueued: list[str]) -> None:
    message = submit()
    services.run_generation(message.pk)
    requests_before = sim_stats(sim)["requests"]

    services.run_generation(message.pk)

    assert sim_stats(sim)["requests"] == requests_before
    message.refresh_from_db()
    assert message.status == Message.Status.DONE


def test_dispatch_never_goes_beyond_the_concurrency_limit_and_serves_in_order(
    sim: str, samples: Any, enqueued: list[str]
) -> None:
    messages = [submit(session=f"s{i}", ip=f"10.0.0.{i}") for i in range(5)]

    assert enqueued == [messages[0].pk, messages[1].pk]
    assert [services.position_of(m) for m in messages] == [0, 0, 1, 2, 3]
    assert slots.slots_in_use(sim) == 2

    services.run_generation(messages[0].pk)

    assert enqueued == [messages[0].pk, messages[1].pk, messages[2].pk]
    for message in messages:
        message.refresh_from_db()
    assert [services.position_of(m) for m in messages[2:]] == [0, 1, 2]
    assert slots.slots_in_use(sim) == 2


def test_an_error_mid_stream_ends_the_message_with_that_error_and_keeps_the_text(
    settings: Any, samples: Any, enqueued: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    with running_simulator(fault_error_after_tokens=8) as url:
        settings.TGI_URLS = [url]
        message = submit()
        services.run_generation(message.pk)

    message.refresh_from_db()
    assert message.status == Message.Status.ERROR
    assert message.error_code == "generation"
    assert message.error_message == services.ERROR_MESSAGES["generation"]
    # What the backend said is for operators: in the log, never in the visitor's message.
    assert "simulated fault" not in message.error_message
    assert "simulated fault injected by the simulator after 8 tokens" in caplog.text
    assert message.deltas, "the text written before the failure is kept"
    assert slots.slots_in_use(url) == 0


def test_a_dropped_backend_connection_is_an_incomplete_stream_error(
    settings: Any, samples: Any, enqueued: list[str]
) -> None:
    with running_simulator(fault_drop_after_tokens=8) as url:
        settings.TGI_URLS = [url]
        message = submit()
        services.run_generation(message.pk)

    message.refresh_from_db()
    assert message.status == Message.Status.ERROR
    assert message.error_code == "incomplete_stream"


def test_an_unreachable_backend_puts_the_message_back_in_line(
    settings: Any, samples: Any, enqueued: list[str]
) -> None:
    dead = "http://127.0.0.1:9"
    settings.TGI_URLS = [dead]
    message = submit()

    services.run_generation(message.pk)

    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert message.dispatched_at is None
    assert slots.healthy_backends() == []
    assert slots.slots_in_use(dead) == 0


def test_an_outage_longer_than_the_patience_fails_queued_work_plainly(
    settings: Any, samples: Any, enqueued: list[str]
) -> None:
    settings.TGI_URLS = ["http://127.0.0.1:9"]
    settings.BACKEND_OUTAGE_PATIENCE = 0
    message = submit()
    services.run_generation(message.pk)
    Message.objects.filter(pk=message.pk).update(created=timezone.now() - timedelta(seconds=5))

    services.reconcile()

    message.refresh_from_db()
    assert message.status == Message.Status.ERROR
    assert message.error_code == "backend_unavailable"


@contextmanager
def occupied_backend(url: str) -> Iterator[None]:
    """Hold the simulator's only slot with a slow stream of our own (another TGI client)."""
    body = {"inputs": "hold the slot", "parameters": {"max_new_tokens": 500}}
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", f"{url}/generate_stream", json=body) as response,
    ):
        lines = response.iter_lines()  # keep the generator: collecting it closes the stream
        next(lines)
        yield


def test_overload_answers_are_retried_without_losing_the_message(
    settings: Any, samples: Any, enqueued: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streaming, "OVERLOAD_BACKOFF_SECONDS", 0.05)
    with running_simulator(max_concurrent_requests=1, tokens_per_second=20) as url:
        settings.TGI_URLS = [url]
        message = submit()
        worker = threading.Thread(target=services.run_generation, args=(message.pk,))
        with occupied_backend(url):
            worker.start()
            assert wait_until(lambda: sim_stats(url)["overloaded"] >= 2)
        worker.join(30)

    message.refresh_from_db()
    assert message.status == Message.Status.DONE
    assert message.sections["output"]


def test_overload_that_outlasts_the_retries_is_reported(
    settings: Any, samples: Any, enqueued: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streaming, "OVERLOAD_BACKOFF_SECONDS", 0.01)
    with running_simulator(max_concurrent_requests=1, tokens_per_second=5) as url:
        settings.TGI_URLS = [url]
        message = submit()
        with occupied_backend(url):
            services.run_generation(message.pk)
            stats = sim_stats(url)

    assert stats["overloaded"] == streaming.OVERLOAD_RETRIES + 1
    message.refresh_from_db()
    assert message.status == Message.Status.ERROR
    assert message.error_code == "overloaded"


def test_cancel_closes_the_backend_stream_within_a_second_and_keeps_the_text(
    settings: Any, samples: Any, enqueued: list[str]
) -> None:
    with running_simulator(tokens_per_second=50) as url:
        settings.TGI_URLS = [url]
        message = submit(sample="agatha")
        worker = threading.Thread(target=services.run_generation, args=(message.pk,))
        worker.start()
        assert wait_until(lambda: len(delta_log.read_delta_log(message.pk)) >= 3)

        services.cancel(Message.objects.get(pk=message.pk))
        # The cancel returns once the worker has closed the stream and stored the text, and
        # the worker frees the slot before storing: so it is free by now, whatever the timing.
        assert slots.slots_in_use(url) == 0
        worker.join(10)
        assert wait_until(lambda: sim_stats(url)["dropped"] == 1, 5)

    assert not worker.is_alive()
    message.refresh_from_db()
    assert message.status == Message.Status.CANCELLED
    assert message.deltas and message.sections["thinking"]
    assert slots.slots_in_use(url) == 0


def test_an_operator_stop_of_a_running_answer_tells_its_visitor_who_and_why(
    settings: Any, samples: Any, enqueued: list[str]
) -> None:
    with running_simulator(tokens_per_second=50) as url:
        settings.TGI_URLS = [url]
        message = submit(sample="agatha")
        worker = threading.Thread(target=services.run_generation, args=(message.pk,))
        worker.start()
        assert wait_until(lambda: len(delta_log.read_delta_log(message.pk)) >= 3)

        services.cancel(Message.objects.get(pk=message.pk), by_operator=True, reason="Abuse")
        worker.join(10)

    message.refresh_from_db()
    assert message.status == Message.Status.CANCELLED and message.deltas
    assert services.final_event(message) == {
        "type": "cancelled",
        "seq": len(message.deltas),
        "by": "operator",
        "message": "Abuse",
    }
    assert services.message_payload(message)["stopped"] == {"by": "operator", "message": "Abuse"}


def test_a_visitors_own_stop_names_nobody_else(sim: str, samples: Any, enqueued: list[str]) -> None:
    messages = [submit(session=f"s{i}", ip=f"10.0.0.{i}") for i in range(3)]

    services.cancel(messages[2])

    stopped = Message.objects.get(pk=messages[2].pk)
    assert services.final_event(stopped) == {"type": "cancelled", "seq": 0}
    assert services.message_payload(stopped)["stopped"] is None


def test_an_operator_stop_without_a_reason_gives_the_sites_own(
    sim: str, samples: Any, enqueued: list[str]
) -> None:
    messages = [submit(session=f"s{i}", ip=f"10.0.0.{i}") for i in range(3)]

    services.cancel(messages[2], by_operator=True)

    event = services.final_event(Message.objects.get(pk=messages[2].pk))
    assert event["by"] == "operator"
    assert event["message"] == "The site's operators stopped this answer."


def test_a_finished_generation_leaves_no_watcher_behind_to_renew_its_slot(
    settings: Any, samples: Any, enqueued: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every generation of a worker process shares one event loop, so a watcher that outlived
    # its answer would go on renewing the lease and hold the GPU slot. The renewal here
    # swallows a cancellation that lands during it, as a Redis client can.
    renew_slot = slots.arenew_slot

    async def slow_renewal(backend: str, message_id: str) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.2)
        await renew_slot(backend, message_id)

    async def tasks_on_the_shared_loop() -> int:
        return len(asyncio.all_tasks()) - 1

    monkeypatch.setattr(slots, "arenew_slot", slow_renewal)
    monkeypatch.setattr(streaming, "CANCEL_POLL_SECONDS", 0.001)
    settings.SLOT_LEASE_SECONDS = 2  # renewed every 0.67 s while the answer runs
    with running_simulator(tokens_per_second=200) as url:
        settings.TGI_URLS = [url]
        message = submit()
        # An earlier test's cancel watch may still be ending: it stops one poll
        # (CANCEL_POLL_SECONDS, 0.1 s) after its last generation.
        time.sleep(3 * 0.1)
        before = shared_loop.run(tasks_on_the_shared_loop())
        services.run_generation(message.pk)
        time.sleep(1.5)  # two renewal periods

        assert Message.objects.get(pk=message.pk).status == Message.Status.DONE
        assert slots.slots_in_use(url) == 0
        assert shared_loop.run(tasks_on_the_shared_loop()) == before


def test_cancelling_a_queued_message_frees_its_place(
    sim: str, samples: Any, enqueued: list[str]
) -> None:
    messages = [submit(session=f"s{i}", ip=f"10.0.0.{i}") for i in range(4)]

    services.cancel(messages[2])

    messages[3].refresh_from_db()
    assert services.position_of(messages[3]) == 1
    assert Message.objects.get(pk=messages[2].pk).status == Message.Status.CANCELLED


def test_a_follow_up_sends_only_the_earlier_output_back_to_the_model(
    sim: str, samples: Any, enqueued: list[str]
) -> None:
    first = submit()
    services.run_generation(first.pk)
    first.refresh_from_db()
    follow_up = services.submit(
        session_key="s1",
        client_ip="10.0.0.1",
        prompt="And in raspberry?",
        conversation=first.conversation,
    )

    prompt, dropped = services.build_model_prompt(follow_up, {"max_input_tokens": 8000})

    assert dropped == 0
    assert first.sections["output"].strip() in prompt
    assert first.sections["thinking"].strip() not in prompt
    assert prompt.endswith(
        "And in raspberry?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_a_tight_context_budget_drops_the_oldest_turns(
    sim: str, samples: Any, enqueued: list[str]
) -> None:
    first = submit()
    services.run_generation(first.pk)
    follow_up = services.submit(
        session_key="s1", client_ip="10.0.0.1", prompt="Why?", conversation=first.conversation
    )

    prompt, dropped = services.build_model_prompt(follow_up, {"max_input_tokens": 120})

    assert dropped == 1
    assert "strawberry" not in prompt


def running_without_a_worker(backend: str) -> Message:
    """A running answer dispatched longer than a lease ago, whose slot lease has lapsed."""
    message = submit()
    assert message.mark_running()
    long_ago = timezone.now() - timedelta(seconds=slots.lease_seconds() + 5)
    Message.objects.filter(pk=message.pk).update(dispatched_at=long_ago)
    redis_clients.redis_client().delete(slots.slot_key(backend))
    lease_noted_missing_long_ago(message)
    return message


def lease_noted_missing_long_ago(message: Message) -> None:
    """An earlier reconciler pass found the lease missing, longer ago than a renewal period."""
    noted = time.time() - slots.lease_seconds()
    redis_clients.redis_client().set(services.lease_missing_key(message.pk), f"{noted:.3f}")


def test_the_reconciler_requeues_work_whose_worker_vanished_before_writing(
    sim: str, samples: Any, enqueued: list[str]
) -> None:
    message = running_without_a_worker(sim)

    result = services.reconcile()

    message.refresh_from_db()
    assert result["requeued"] == 1
    assert message.status == Message.Status.QUEUED
    assert result["dispatched"] == 1, "and it is dispatched again at once"


def test_work_put_back_in_line_takes_the_lines_turn_like_a_new_question(
    sim: str, samples: Any, enqueued: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    running_without_a_worker(sim)
    turns: list[bool] = []
    monkeypatch.setattr(
        line,
        "take_a_place_in_line",
        lambda: turns.append(connections["default"].in_atomic_block),
    )

    assert services.reconcile()["requeued"] == 1
    assert turns == [True]


def test_the_reconciler_fails_a_half_written_answer_whose_worker_died(
    sim: str, samples: Any, enqueued: list[str]
) -> None:
    message = submit()
    assert message.mark_running()
    long_ago = timezone.now() - timedelta(seconds=slots.lease_seconds() + 5)
    Message.objects.filter(pk=message.pk).update(dispatched_at=long_ago)
    redis_clients.redis_client().rpush(
        delta_log.delta_log_key(message.pk),
        '{"type": "delta", "seq": 1, "section": "thinking", "text": "Let me"}',
    )
    redis_clients.redis_client().delete(slots.slot_key(sim))
    lease_noted_missing_long_ago(message)

    result = services.reconcile()

    message.refresh_from_db()
    assert result["failed"] == 1
    assert message.status == Message.Status.ERROR
    assert message.error_code == "worker_lost"
    assert message.sections["thinking"] == "Let me"


def test_the_reconciler_leaves_live_generations_alone(
    sim: str, samples: Any, enqueued: list[str]
) -> None:
    message = submit()
    assert message.mark_running()
    Message.objects.filter(pk=message.pk).update(
        dispatched_at=timezone.now() - timedelta(minutes=5)
    )
    slots.restore_leases([(message.pk, sim)])

    assert services.reconcile()["requeued"] == 0
    message.refresh_from_db()
    assert message.status == Message.Status.RUNNING


def test_wait_estimates_follow_the_slots_as_they_free_up() -> None:
    snapshot = eta.QueueSnapshot(running_elapsed=[5.0, 25.0], capacity=2, mean_service=30.0)

    estimates = eta.wait_estimates(snapshot, 4)

    assert estimates == [5.0, 25.0, 35.0, 55.0]


def test_wait_estimates_start_at_once_on_idle_slots() -> None:
    snapshot = eta.QueueSnapshot(running_elapsed=[], capacity=3, mean_service=10.0)

    assert eta.wait_estimates(snapshot, 4) == [0.0, 0.0, 0.0, 10.0]


def test_overdue_generations_are_expected_to_end_soon_not_in_the_past() -> None:
    snapshot = eta.QueueSnapshot(running_elapsed=[90.0], capacity=1, mean_service=30.0)

    assert eta.wait_estimates(snapshot, 1) == [3.0]


def test_a_visitor_who_left_before_their_turn_does_not_take_a_slot(
    sim: str, samples: Any, enqueued: list[str]
) -> None:
    messages = [submit(session=f"s{i}", ip=f"10.0.0.{i}") for i in range(4)]
    long_ago = timezone.now() - timedelta(seconds=600)
    Message.objects.filter(pk__in=[messages[2].pk, messages[3].pk]).update(created=long_ago)
    presence.touch(messages[3].pk)  # the fourth visitor is still polling; the third has gone

    services.run_generation(messages[0].pk)

    abandoned = Message.objects.get(pk=messages[2].pk)
    assert abandoned.status == Message.Status.CANCELLED
    assert abandoned.error_code == "abandoned"
    assert enqueued[-1] == messages[3].pk


def test_work_spreads_over_backends_and_avoids_one_that_went_down(
    settings: Any, samples: Any, enqueued: list[str]
) -> None:
    with ExitStack() as stack:
        first = stack.enter_context(running_simulator())
        second = stack.enter_context(running_simulator())
        settings.TGI_URLS = [first, second]
        settings.GENERATION_CONCURRENCY = 1
        a, b = submit(session="a", ip="10.0.0.1"), submit(session="b", ip="10.0.0.2")
        assert {a.backend, b.backend} == {first, second}, "least-loaded: one each"
        services.run_generation(a.pk)
        services.run_generation(b.pk)
        stack.close()  # both simulators stop; bring the second back on a new port
        revived = stack.enter_context(running_simulator())
        settings.TGI_URLS = [first, revived]

        c = submit(session="c", ip="10.0.0.3")
        assert c.backend == first
        services.run_generation(c.pk)

        c.refresh_from_db()
        assert slots.healthy_backends() == [revived]
        assert c.backend == revived, "put back in line and sent to the healthy backend"
        assert enqueued.count(c.pk) == 2
        services.run_generation(c.pk)
        c.refresh_from_db()
        assert c.status == Message.Status.DONE


def test_a_backend_that_answers_health_checks_again_comes_back_into_rotation(sim: str) -> None:
    rotation.mark_down(sim, "test")
    assert slots.healthy_backends() == []

    assert rotation.probe(sim) is True

    assert slots.healthy_backends() == [sim]


@pytest.mark.skipif(
    connections["default"].vendor != "postgresql",
    reason="PostgreSQL only: SQLite's IMMEDIATE transactions already admit one writer at a time",
)
def test_a_question_holds_the_line_until_its_transaction_commits() -> None:
    # Rows must commit in the order of their `created`, or a later commit would slip in ahead
    # of visitors already told their place.
    def another_process_may_enter() -> bool:
        entered: list[bool] = []

        def probe() -> None:
            try:
                with connections["default"].cursor() as cursor:
                    cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [line.LINE_LOCK_KEY])
                    entered.append(bool(cursor.fetchone()[0]))
            finally:
                connections.close_all()

        thread = threading.Thread(target=probe)
        thread.start()
        thread.join(10)
        return entered == [True]

    with transaction.atomic():
        line.take_a_place_in_line()
        assert not another_process_may_enter()
    assert another_process_may_enter()


def test_every_submission_takes_its_place_in_line_inside_its_transaction(
    visitor: Any, samples: Any, enqueued: list[str], backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    inside: list[bool] = []
    monkeypatch.setattr(
        questions,
        "take_a_place_in_line",
        lambda: inside.append(connections["default"].in_atomic_block),
    )
    response = visitor.post(
        "/api/v1/conversations", {"sample": samples[0].slug}, content_type="application/json"
    )
    assert response.status_code == 201
    assert inside == [True]


def test_a_question_on_an_idle_site_gets_its_slot_in_the_transaction_that_queues_it(
    backend: str, samples: Any, enqueued: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    leased_inside: list[bool] = []
    acquire = slots.acquire_slot

    def recording_acquire(message_id: str) -> str | None:
        leased_inside.append(connections["default"].in_atomic_block)
        return acquire(message_id)

    passes: list[int] = []
    monkeypatch.setattr(slots, "acquire_slot", recording_acquire)
    monkeypatch.setattr(questions, "dispatch", lambda: passes.append(1) or 0)

    message = submit()

    assert leased_inside == [True]
    assert passes == [], "no dispatch pass, no dispatch lock"
    assert message.dispatched_at is not None and message.backend == backend
    assert services.position_of(message) == 0
    assert enqueued == [message.pk]
    assert slots.slots_in_use(backend) == 1


def test_a_question_never_takes_a_free_slot_from_someone_already_waiting(
    backend: str,
    samples: Any,
    enqueued: list[str],
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.GENERATION_CONCURRENCY = 1
    from playground import controls

    controls.set_draining(True)
    first = submit(session="s1", ip="10.0.0.1")
    controls.set_draining(False)
    # Admission saw an empty line (it looked before `first` joined, say): the look inside
    # the transaction still finds `first` waiting, and the line is served oldest first.
    monkeypatch.setattr(questions, "check_admission", lambda session_key, client_ip: 0)

    second = submit(session="s2", ip="10.0.0.2")

    first.refresh_from_db()
    assert enqueued == [first.pk]
    assert first.backend == backend and services.position_of(first) == 0
    assert services.position_of(second) == 1


def test_a_draining_site_keeps_an_idle_sites_question_in_line(
    backend: str, samples: Any, enqueued: list[str]
) -> None:
    from playground import controls

    controls.set_draining(True)

    message = submit()

    assert services.position_of(message) == 1
    assert enqueued == []
    assert slots.slots_in_use(backend) == 0


def test_a_slot_leased_for_a_question_that_never_commits_is_given_back(
    backend: str, samples: Any, enqueued: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import DatabaseError

    def broken(self: Message, backend: str) -> bool:
        raise DatabaseError("disk I/O error")

    monkeypatch.setattr(Message, "mark_dispatched", broken)

    with pytest.raises(DatabaseError):
        submit()

    assert slots.slots_in_use(backend) == 0
    assert not Message.objects.exists(), "the question and its answer were rolled back"
    assert enqueued == []


def test_a_slot_leased_in_a_transaction_whose_commit_fails_is_given_back(
    backend: str, samples: Any, enqueued: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import DatabaseError

    connection = connections["default"]
    connection.ensure_connection()

    def failing_commit() -> None:
        raise DatabaseError("database is locked")

    monkeypatch.setattr(connection, "commit", failing_commit)

    with pytest.raises(DatabaseError):
        submit()

    monkeypatch.undo()
    assert slots.slots_in_use(backend) == 0
    assert enqueued == []


def unstorable_backend() -> web.Application:
    """A TGI-wire backend whose tokens hold a NUL and a lone surrogate."""
    tokens = [("<thinking>", True), ("Zero\u0000here", False), ("\ud800", False)]
    tokens += [("</thinking>", True), ("<output>", True), ("Fine.", False), ("</output>", True)]

    async def generate_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index, (text, special) in enumerate(tokens, start=1):
            final = index == len(tokens)
            event = {
                "index": index,
                "token": {"id": index, "text": text, "logprob": -0.1, "special": special},
                "generated_text": "" if final else None,
                "details": {"finish_reason": "eos_token", "generated_tokens": index}
                if final
                else None,
            }
            await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/generate_stream", generate_stream)
    app.router.add_get("/info", lambda request: web.json_response({"model_id": "nul-model"}))
    return app


def test_model_output_no_database_can_store_is_stored_and_shown_the_same_everywhere(
    settings: Any, samples: Any, enqueued: list[str]
) -> None:
    with serving(unstorable_backend(), name="unstorable-backend") as url:
        settings.TGI_URLS = [url]
        message = submit()
        services.run_generation(message.pk)

    message.refresh_from_db()
    assert message.status == Message.Status.DONE, message.error_message
    assert message.sections["thinking"] == "Zero\ufffdhere\ufffd"
    assert message.sections["output"] == "Fine."
    shown = [event for event in message.deltas if event["section"] == "thinking"]
    assert "".join(event["text"] for event in shown) == message.sections["thinking"]


def test_a_question_that_waits_in_line_is_answered_as_written_without_reading_it_back(
    backend: str, samples: Any, enqueued: list[str], settings: Any
) -> None:
    # Under a rush every slot is busy and every submission waits: the row as written is the
    # answer (its conversation included), with no query after the commit.
    settings.GENERATION_CONCURRENCY = 1
    submit(session="s1", ip="10.0.0.1")

    with CaptureQueriesContext(connections["default"]) as queries:
        waiting = submit(session="s2", ip="10.0.0.2")

    assert queries.captured_queries[-1]["sql"] == "COMMIT"
    stored = Message.objects.select_related("conversation").get(pk=waiting.pk)
    assert (waiting.status, waiting.dispatched_at, waiting.backend) == (
        stored.status,
        None,
        "",
    )
    assert waiting.conversation == stored.conversation
    assert waiting.conversation.title == stored.conversation.title
    assert services.position_of(waiting) == 1
    with CaptureQueriesContext(connections["default"]) as after:
        services.message_payload(waiting)
    assert not any("playground_conversation" in q["sql"] for q in after.captured_queries)


@pytest.fixture
def pipelines_sent(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The commands of each Redis pipeline sent from here on, by name."""
    from redis.client import Pipeline

    sent: list[list[str]] = []
    execute = Pipeline.execute

    def recording(pipe: Pipeline, *args: Any, **kwargs: Any) -> Any:
        sent.append([str(command[0][0]) for command in pipe.command_stack])
        return execute(pipe, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "execute", recording)
    return sent


def test_a_question_that_waits_writes_its_request_id_and_its_count_in_one_round_trip(
    backend: str,
    samples: Any,
    enqueued: list[str],
    settings: Any,
    pipelines_sent: list[list[str]],
) -> None:
    from playground import logs
    from playground.ops import metrics
    from playground.services import dispatching

    settings.GENERATION_CONCURRENCY = 1
    submit(session="s1", ip="10.0.0.1")
    admitted_before = int(redis_clients.redis_client().hget(metrics.TOTALS_KEY, "admitted") or 0)

    def in_a_request() -> Message:
        logs.set_request_id("request-of-s2")
        return submit(session="s2", ip="10.0.0.2")

    waiting = contextvars.copy_context().run(in_a_request)

    assert ["SET", "HINCRBY", "HINCRBY", "EXPIRE"] in pipelines_sent
    client = redis_clients.redis_client()
    assert client.get(dispatching.request_id_key(waiting.pk)) == b"request-of-s2"
    assert int(client.hget(metrics.TOTALS_KEY, "admitted") or 0) == admitted_before + 1


def test_admission_reads_the_switches_and_spends_the_budget_in_one_round_trip(
    backend: str,
    samples: Any,
    enqueued: list[str],
    monkeypatch: pytest.MonkeyPatch,
    pipelines_sent: list[list[str]],
) -> None:
    from redis.connection import Connection

    # The first look also remembers, from the database, when the last block ends.
    services.questions.check_admission("s0", "10.0.0.9")
    pipelines_sent.clear()
    round_trips: list[int] = []
    send = Connection.send_packed_command

    def counting(connection: Connection, *args: Any, **kwargs: Any) -> None:
        round_trips.append(1)
        send(connection, *args, **kwargs)

    monkeypatch.setattr(Connection, "send_packed_command", counting)

    services.questions.check_admission("s1", "10.0.0.1")

    assert pipelines_sent == [["GET", "GET", "EVAL"]]
    assert len(round_trips) == 1
