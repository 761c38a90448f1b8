"""The delta logs of ended answers, read once per process (playground/services/stored_logs.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from playground import short_memory
from playground.models import Conversation, Message
from playground.services import stored_logs
from playground.services.stored_logs import WITHOUT_LOG, log_of

LOG = [
    {"seq": 1, "section": "thinking", "text": "Hm"},
    {"seq": 2, "section": "output", "text": "Yes."},
]


@pytest.fixture(autouse=True)
def forget(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = short_memory.ShortMemory(stored_logs.REMEMBER_SECONDS, at_most=32)
    monkeypatch.setattr(stored_logs, "_remembered", fresh)


def answer(status: str, **fields: Any) -> Message:
    conversation = Conversation.objects.create(session_key="s", title="t")
    return Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        prompt="Why?",
        status=status,
        session_key="s",
        started_at=timezone.now() if status != Message.Status.QUEUED else None,
        **fields,
    )


def as_viewers_read_it(message: Message) -> Message:
    return Message.objects.defer(*WITHOUT_LOG).get(pk=message.pk)


def test_an_ended_answer_s_log_is_read_once_while_remembered(
    db: None, django_assert_num_queries: Any
) -> None:
    ended = answer(Message.Status.DONE, deltas=LOG, finished_at=timezone.now(), tokens=2)
    first, second = as_viewers_read_it(ended), as_viewers_read_it(ended)
    with django_assert_num_queries(1):
        assert log_of(first) == LOG
        assert log_of(first) == LOG
    with django_assert_num_queries(0):
        assert log_of(second) == LOG
        assert second.deltas == LOG  # and whoever reads the field gets it without a query


def test_a_row_read_whole_needs_no_query(db: None, django_assert_num_queries: Any) -> None:
    ended = answer(Message.Status.DONE, deltas=LOG, finished_at=timezone.now(), tokens=2)
    whole = Message.objects.get(pk=ended.pk)
    with django_assert_num_queries(0):
        assert log_of(whole) == LOG


def test_the_text_kept_after_a_stop_is_read_anew(db: None) -> None:
    running = answer(Message.Status.RUNNING)
    assert running.cancel()
    assert log_of(as_viewers_read_it(running)) == []
    running.store_partial(sections={}, deltas=LOG, tokens=2, first_token_at=timezone.now())
    assert log_of(as_viewers_read_it(running)) == LOG


def test_a_live_answer_s_row_is_read_every_time(db: None, django_assert_num_queries: Any) -> None:
    running = answer(Message.Status.RUNNING)
    first, second = as_viewers_read_it(running), as_viewers_read_it(running)
    with django_assert_num_queries(2):
        assert log_of(first) == []
        assert log_of(second) == []
    assert len(stored_logs._remembered) == 0


def test_a_remembered_log_is_read_again_after_a_while(
    db: None, monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    clock = [500.0]
    monkeypatch.setattr(short_memory.time, "monotonic", lambda: clock[0])
    ended = answer(Message.Status.DONE, deltas=LOG, finished_at=timezone.now(), tokens=2)
    log_of(as_viewers_read_it(ended))
    clock[0] += stored_logs.REMEMBER_SECONDS + 0.1
    viewer = as_viewers_read_it(ended)
    with django_assert_num_queries(1):
        assert log_of(viewer) == LOG


def test_few_logs_are_remembered(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    few = short_memory.ShortMemory(stored_logs.REMEMBER_SECONDS, at_most=3)
    monkeypatch.setattr(stored_logs, "_remembered", few)
    for _ in range(7):
        ended = answer(Message.Status.DONE, deltas=LOG, finished_at=timezone.now(), tokens=2)
        assert log_of(as_viewers_read_it(ended)) == LOG
    assert 0 < len(stored_logs._remembered) <= 3
