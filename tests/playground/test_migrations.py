"""Data migrations: rows written before a migration read the same after it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE_BRANCHES = [("playground", "0004_phase_seconds")]
BRANCHES = [("playground", "0006_link_questions")]


@pytest.fixture
def executor() -> Iterator[MigrationExecutor]:
    executor = MigrationExecutor(connection)
    yield executor
    # Back to the latest schema for the tests after this one.
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_questions_from_before_branches_follow_the_question_shown_before_them(
    executor: MigrationExecutor,
) -> None:
    executor.migrate(BEFORE_BRANCHES)
    apps = executor.loader.project_state(BEFORE_BRANCHES).apps
    Conversation = apps.get_model("playground", "Conversation")
    Message = apps.get_model("playground", "Message")
    conversation = Conversation.objects.create(session_key="s", title="t")
    start = timezone.now()

    def question(prompt: str, minute: int, *, superseded: bool = False) -> str:
        return Message.objects.create(
            conversation=conversation,
            role="user",
            prompt=prompt,
            status="done",
            superseded=superseded,
            created=start + timedelta(minutes=minute),
        ).pk

    # One, then Two edited twice (the last question was the only one an edit could replace),
    # then Three after the edit that stayed.
    one = question("One", 0)
    two = question("Two", 1, superseded=True)
    two_again = question("Two again", 2, superseded=True)
    two_at_last = question("Two at last", 3)
    three = question("Three", 4)
    alone = Message.objects.create(
        conversation=Conversation.objects.create(session_key="s"),
        role="user",
        prompt="Alone",
        status="done",
    ).pk

    # A long conversation, linked over more than one batch of writes.
    long = Conversation.objects.create(session_key="s", title="long")
    Message.objects.bulk_create(
        Message(
            conversation=long,
            role="user",
            prompt=f"Turn {turn}",
            status="done",
            created=start + timedelta(seconds=turn),
        )
        for turn in range(1500)
    )
    turns = list(
        Message.objects.filter(conversation=long).order_by("created").values_list("pk", flat=True)
    )

    executor = MigrationExecutor(connection)
    executor.migrate(BRANCHES)

    Message = executor.loader.project_state(BRANCHES).apps.get_model("playground", "Message")
    parents = dict(Message.objects.values_list("pk", "parent_id"))
    assert [parents.pop(pk) for pk in turns] == [None, *turns[:-1]]
    assert parents == {
        one: None,
        two: one,
        two_again: one,
        two_at_last: one,
        three: two_at_last,
        alone: None,
    }
