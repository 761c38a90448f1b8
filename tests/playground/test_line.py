"""Telling the waiting line its places (services/line.py): every change for a short line, a
budget of places a second for a long one, and the change in between told afterwards."""

from __future__ import annotations

import time
from typing import Any

import pytest

from playground import services
from playground.models import Message
from playground.realtime import channel_groups
from playground.services import line

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def told(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """The places told, as (message, queued event), in the order they were sent."""
    sent: list[tuple[str, dict[str, Any]]] = []
    original = channel_groups.publish_many

    def recording(events: list[tuple[str, dict[str, Any]]]) -> None:
        sent.extend(event for event in events if event[1]["type"] == "queued")
        original(events)

    monkeypatch.setattr(channel_groups, "publish_many", recording)
    return sent


def waiting(count: int) -> list[Message]:
    """`count` visitors in line behind the two who hold the backend's slots."""
    asked = [
        services.submit(
            session_key=f"s{n}", client_ip=f"10.1.{n // 250}.{n % 250 + 1}", sample="strawberry"
        )
        for n in range(count + 2)
    ]
    return [message for message in asked if message.dispatched_at is None]


def wait_for(condition: Any, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_a_short_line_is_told_its_places_at_every_change(
    backend: str, samples: Any, enqueued: list[str], told: list[tuple[str, dict[str, Any]]]
) -> None:
    line_of = waiting(10)

    line.publish_queue_positions()
    line.publish_queue_positions()

    places = [event["position"] for _, event in told]
    assert places == list(range(1, 11)) * 2
    assert [message for message, _ in told[:10]] == [m.pk for m in line_of]


def test_a_long_line_is_told_at_most_its_budget_and_the_change_in_between_afterwards(
    backend: str,
    samples: Any,
    enqueued: list[str],
    told: list[tuple[str, dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    count = line.ANNOUNCE_ALWAYS_UP_TO + 10
    # A pause of a second, long enough for what the test does in between.
    monkeypatch.setattr(line, "ANNOUNCED_PLACES_PER_SECOND", count)
    line_of = waiting(count)
    line.publish_queue_positions()
    assert len(told) == count

    services.cancel(line_of[0])  # everyone behind the first moves up, during the pause
    line.publish_queue_positions()
    told_at_once = len(told)

    assert told_at_once == count, "a long line was told twice within its pause"
    assert wait_for(lambda: len(told) >= count + count - 1)
    later = dict(told[count:])
    assert later[line_of[1].pk]["position"] == 1
    assert later[line_of[-1].pk]["position"] == count - 1
    assert line_of[0].pk not in later


def test_a_long_line_told_again_after_the_pause_is_told_at_once(
    backend: str, samples: Any, enqueued: list[str], told: list[tuple[str, dict[str, Any]]]
) -> None:
    count = line.ANNOUNCE_ALWAYS_UP_TO + 10
    waiting(count)
    line.publish_queue_positions()
    pause = count / line.ANNOUNCED_PLACES_PER_SECOND
    time.sleep(pause + 0.05)

    line.publish_queue_positions()

    assert len(told) == 2 * count


def test_a_change_during_the_pause_does_not_read_the_line(
    backend: str,
    samples: Any,
    enqueued: list[str],
    told: list[tuple[str, dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    count = line.ANNOUNCE_ALWAYS_UP_TO + 10
    monkeypatch.setattr(line, "ANNOUNCED_PLACES_PER_SECOND", count)
    waiting(count)
    line.publish_queue_positions()
    reads: list[int] = []
    original = line.waiting_line

    def counted() -> list[str]:
        reads.append(1)
        return original()

    monkeypatch.setattr(line, "waiting_line", counted)

    for _ in range(5):
        line.publish_queue_positions()

    assert reads == [], "the line was read during its pause"
    assert wait_for(lambda: len(told) == 2 * count), "and told once when the pause ended"
    assert reads == [1]
