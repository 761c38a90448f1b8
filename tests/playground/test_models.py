"""The message life cycle: every transition is conditional on the state the database holds."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

import pytest
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from playground.models import Conversation, Message

BACKEND = "http://backend.test:8080"
MessageFactory = Callable[..., Message]


@pytest.fixture
def make_answer(db: None) -> MessageFactory:
    """Create an assistant message (with its question) in a given state."""
    counter = iter(range(1_000_000))

    def make(
        status: str = Message.Status.QUEUED,
        *,
        session_key: str | None = None,
        dispatched: bool = False,
        client_ip: str | None = "203.0.113.5",
    ) -> Message:
        key = session_key or f"session-{next(counter)}"
        conversation = Conversation.objects.create(session_key=key, title="t")
        question = Message.objects.create(
            conversation=conversation,
            role=Message.Role.USER,
            prompt="Why?",
            status=Message.Status.DONE,
            session_key=key,
        )
        now = timezone.now()
        return Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            reply_to=question,
            prompt="Why?",
            status=status,
            session_key=key,
            client_ip=client_ip,
            dispatched_at=now if dispatched or status == Message.Status.RUNNING else None,
            backend=BACKEND if dispatched or status == Message.Status.RUNNING else "",
            started_at=now if status == Message.Status.RUNNING else None,
        )

    return make


def stored(message: Message) -> Message:
    return Message.objects.get(pk=message.pk)


OUTPUT_SECTIONS = {"thinking": "", "reflections": [], "output": "42", "text": ""}
OUTPUT_DELTAS = [{"type": "delta", "seq": 1, "section": "output", "text": "42"}]


def finish(message: Message, first_token_at: datetime | None = None) -> bool:
    return message.finish(
        sections=OUTPUT_SECTIONS,
        deltas=OUTPUT_DELTAS,
        tokens=3,
        finish_reason="eos_token",
        first_token_at=first_token_at,
    )


# --- dispatch ---------------------------------------------------------------------------------


def test_mark_dispatched_leases_a_waiting_message(make_answer: MessageFactory) -> None:
    message = make_answer()
    assert message.mark_dispatched(BACKEND) is True
    row = stored(message)
    assert row.status == Message.Status.QUEUED
    assert row.dispatched_at is not None
    assert row.backend == BACKEND
    assert message.dispatched_at == row.dispatched_at
    assert message.backend == BACKEND


def test_mark_dispatched_happens_only_once(make_answer: MessageFactory) -> None:
    message = make_answer()
    assert message.mark_dispatched(BACKEND) is True
    first_at = stored(message).dispatched_at
    assert message.mark_dispatched("http://other.test") is False
    row = stored(message)
    assert row.backend == BACKEND
    assert row.dispatched_at == first_at


@pytest.mark.parametrize(
    "status", [Message.Status.RUNNING, Message.Status.DONE, Message.Status.CANCELLED]
)
def test_mark_dispatched_refuses_a_message_that_is_not_waiting(
    make_answer: MessageFactory, status: str
) -> None:
    message = make_answer(status)
    before = stored(message)
    assert message.mark_dispatched("http://other.test") is False
    after = stored(message)
    assert (after.status, after.backend) == (before.status, before.backend)


# --- running ----------------------------------------------------------------------------------


def test_mark_running_claims_a_dispatched_message_once(make_answer: MessageFactory) -> None:
    message = make_answer(dispatched=True)
    assert message.mark_running() is True
    row = stored(message)
    assert row.status == Message.Status.RUNNING
    assert row.started_at is not None
    assert row.attempts == 1
    # A redelivered Celery task finds the message already claimed: a no-op.
    duplicate = stored(message)
    assert duplicate.mark_running() is False
    row = stored(message)
    assert row.attempts == 1
    assert row.status == Message.Status.RUNNING


def test_mark_running_refuses_a_message_without_a_slot(make_answer: MessageFactory) -> None:
    message = make_answer()
    assert message.mark_running() is False
    assert stored(message).status == Message.Status.QUEUED
    assert stored(message).started_at is None


def test_mark_running_refuses_a_message_cancelled_after_dispatch(
    make_answer: MessageFactory,
) -> None:
    message = make_answer(dispatched=True)
    assert stored(message).cancel() is True
    assert message.mark_running() is False
    assert message.status == Message.Status.CANCELLED  # the instance learns the truth
    assert stored(message).started_at is None


# --- finishing and failing --------------------------------------------------------------------


def test_finish_completes_a_running_message(make_answer: MessageFactory) -> None:
    message = make_answer(Message.Status.RUNNING)
    first_token = timezone.now()
    assert finish(message, first_token) is True
    row = stored(message)
    assert row.status == Message.Status.DONE
    assert row.sections["output"] == "42"
    assert row.deltas == OUTPUT_DELTAS
    assert row.tokens == 3
    assert row.finish_reason == "eos_token"
    assert row.first_token_at == first_token
    assert row.finished_at is not None
    assert message.is_final


@pytest.mark.parametrize(
    "status",
    [Message.Status.QUEUED, Message.Status.DONE, Message.Status.ERROR, Message.Status.CANCELLED],
)
def test_finish_only_completes_a_running_message(make_answer: MessageFactory, status: str) -> None:
    message = make_answer(status, dispatched=status == Message.Status.QUEUED)
    assert finish(message) is False
    row = stored(message)
    assert row.status == status
    assert row.sections == {}
    assert row.tokens is None


def test_a_stale_copy_cannot_finish_a_cancelled_message(make_answer: MessageFactory) -> None:
    worker_copy = make_answer(Message.Status.RUNNING)
    stored(worker_copy).cancel()
    assert worker_copy.status == Message.Status.RUNNING  # the worker has not reloaded it
    assert finish(worker_copy) is False
    assert stored(worker_copy).status == Message.Status.CANCELLED


@pytest.mark.parametrize("status", [Message.Status.QUEUED, Message.Status.RUNNING])
def test_fail_ends_an_active_message(make_answer: MessageFactory, status: str) -> None:
    message = make_answer(status)
    assert message.fail("overloaded", "Try again later.") is True
    row = stored(message)
    assert row.status == Message.Status.ERROR
    assert row.error_code == "overloaded"
    assert row.error_message == "Try again later."
    assert row.finished_at is not None


def test_fail_keeps_partial_text_when_given(make_answer: MessageFactory) -> None:
    message = make_answer(Message.Status.RUNNING)
    sections = {"thinking": "half", "reflections": [], "output": "", "text": ""}
    deltas = [{"type": "delta", "seq": 1, "section": "thinking", "text": "half"}]
    assert message.fail("generation", "Broke.", sections=sections, deltas=deltas, tokens=1)
    row = stored(message)
    assert row.sections == sections
    assert row.deltas == deltas
    assert row.tokens == 1


def test_fail_truncates_a_very_long_error_message(make_answer: MessageFactory) -> None:
    message = make_answer()
    assert message.fail("backend_error", "x" * 5000)
    assert len(stored(message).error_message) == 2000


@pytest.mark.parametrize(
    "status", [Message.Status.DONE, Message.Status.ERROR, Message.Status.CANCELLED]
)
def test_fail_leaves_a_final_message_alone(make_answer: MessageFactory, status: str) -> None:
    message = make_answer(status)
    assert message.fail("worker_lost", "Lost.") is False
    row = stored(message)
    assert row.status == status
    assert row.error_code == ""


# --- cancelling -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "dispatched"),
    [(Message.Status.QUEUED, False), (Message.Status.QUEUED, True), (Message.Status.RUNNING, True)],
    ids=["waiting", "dispatched", "running"],
)
def test_cancel_stops_an_active_message(
    make_answer: MessageFactory, status: str, dispatched: bool
) -> None:
    message = make_answer(status, dispatched=dispatched)
    assert message.cancel() is True
    row = stored(message)
    assert row.status == Message.Status.CANCELLED
    assert row.finished_at is not None
    assert message.status == Message.Status.CANCELLED


@pytest.mark.parametrize(
    "status", [Message.Status.DONE, Message.Status.ERROR, Message.Status.CANCELLED]
)
def test_cancel_leaves_a_final_message_alone(make_answer: MessageFactory, status: str) -> None:
    message = make_answer(status)
    assert message.cancel() is False
    assert stored(message).status == status


def test_cancel_keeps_the_text_written_so_far(make_answer: MessageFactory) -> None:
    sections = {"thinking": "so far", "reflections": [], "output": "", "text": ""}
    deltas = [{"type": "delta", "seq": 1, "section": "thinking", "text": "so far"}]
    message = make_answer(Message.Status.RUNNING)
    assert message.cancel(sections=sections, deltas=deltas, tokens=2) is True
    row = stored(message)
    assert row.status == Message.Status.CANCELLED
    assert row.sections == sections
    assert row.deltas == deltas
    assert row.tokens == 2


def test_a_late_cancel_does_not_overwrite_a_finished_answer(make_answer: MessageFactory) -> None:
    message = make_answer(Message.Status.RUNNING)
    assert finish(stored(message)) is True
    partial = {"thinking": "stale", "reflections": [], "output": "", "text": ""}
    assert message.cancel(sections=partial, deltas=[]) is False
    row = stored(message)
    assert row.status == Message.Status.DONE
    assert row.sections == OUTPUT_SECTIONS


# --- requeueing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "dispatched"),
    [(Message.Status.RUNNING, True), (Message.Status.QUEUED, True)],
    ids=["running", "dispatched"],
)
def test_requeue_puts_a_message_back_in_line(
    make_answer: MessageFactory, status: str, dispatched: bool
) -> None:
    message = make_answer(status, dispatched=dispatched)
    created = message.created
    assert message.requeue() is True
    row = stored(message)
    assert row.status == Message.Status.QUEUED
    assert row.dispatched_at is None
    assert row.started_at is None
    assert row.backend == ""
    assert row.created == created  # same place in line
    # Back in line, it can be dispatched and claimed again.
    assert row.mark_dispatched(BACKEND) is True
    assert row.mark_running() is True


@pytest.mark.parametrize(
    "status", [Message.Status.DONE, Message.Status.ERROR, Message.Status.CANCELLED]
)
def test_requeue_leaves_a_final_message_alone(make_answer: MessageFactory, status: str) -> None:
    message = make_answer(status)
    assert message.requeue() is False
    assert stored(message).status == status


# --- one active answer per visitor ------------------------------------------------------------


def test_a_second_active_answer_for_a_session_violates_the_constraint(
    make_answer: MessageFactory,
) -> None:
    make_answer(session_key="same-visitor")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_answer(session_key="same-visitor")
    assert Message.objects.filter(role=Message.Role.ASSISTANT).count() == 1


def test_a_running_and_a_queued_answer_of_one_session_violate_the_constraint(
    make_answer: MessageFactory,
) -> None:
    make_answer(Message.Status.RUNNING, session_key="same-visitor")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_answer(session_key="same-visitor")


def test_reactivating_a_second_answer_violates_the_constraint(
    make_answer: MessageFactory,
) -> None:
    make_answer(session_key="same-visitor")
    finished = make_answer(Message.Status.DONE, session_key="same-visitor")
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.filter(pk=finished.pk).update(status=Message.Status.QUEUED)


def active_answers(**where: str) -> QuerySet[Message]:
    return Message.objects.filter(role=Message.Role.ASSISTANT, status__in=Message.ACTIVE, **where)


def test_final_answers_and_other_sessions_do_not_collide(make_answer: MessageFactory) -> None:
    for status in (Message.Status.DONE, Message.Status.ERROR, Message.Status.CANCELLED):
        make_answer(status, session_key="same-visitor")
    make_answer(session_key="same-visitor")
    make_answer(session_key="other-visitor")
    assert active_answers(session_key="same-visitor").count() == 1
    assert active_answers(session_key="other-visitor").count() == 1


def test_only_active_answers_from_an_address_count_as_active_there(
    make_answer: MessageFactory,
) -> None:
    make_answer(client_ip="198.51.100.1")
    make_answer(Message.Status.RUNNING, client_ip="198.51.100.1")
    make_answer(Message.Status.DONE, client_ip="198.51.100.1")
    make_answer(client_ip="198.51.100.2")
    assert active_answers(client_ip="198.51.100.1").count() == 2
    assert active_answers(client_ip="198.51.100.2").count() == 1


def test_new_ids_are_long_url_safe_and_unique(make_answer: MessageFactory) -> None:
    messages = [make_answer() for _ in range(5)]
    ids = {m.pk for m in messages} | {m.conversation_id for m in messages}
    tokens = {m.conversation.share_token for m in messages}
    assert len(ids) == 10
    assert len(tokens) == 5
    assert not ids & tokens
    for value in ids | tokens:
        assert len(value) >= 22
        assert re.fullmatch(r"[A-Za-z0-9_-]+", value)


def test_an_operator_stop_note_leaves_a_final_message_alone(make_answer: MessageFactory) -> None:
    message = make_answer(status=Message.Status.DONE)

    assert not message.note_stopped_by_operator("too late")

    message.refresh_from_db()
    assert (message.error_code, message.stopped_by_operator) == ("", False)
