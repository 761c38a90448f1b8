"""The waiting line (services/line.py): telling it its places (every change for a short line, a
budget of places a second for a long one, and the change in between told afterwards), naming
its state, and the wait estimate's memory of how long answers take."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from playground import controls, eta, services
from playground.models import Message
from playground.realtime import channel_groups, redis_clients
from playground.services import line

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def told(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """The places told, as (message, its queued event), in the order the line events that
    told them were sent."""
    sent: list[tuple[str, dict[str, Any]]] = []
    original = channel_groups.publish_to_line

    def recording(event: dict[str, Any]) -> None:
        sent.extend((message, line.place_in(event, message)) for message in event["places"])
        original(event)

    monkeypatch.setattr(channel_groups, "publish_to_line", recording)
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


@pytest.mark.parametrize(
    ("conditions", "state"),
    [
        ({}, "open"),
        ({"draining": True}, "draining"),
        ({"full": True, "draining": True}, "full"),
        ({"paused": True, "full": True}, "paused"),
        ({"reachable": False, "paused": True}, "unavailable"),
    ],
)
def test_the_line_state_names_what_matters_most_to_someone_asking_now(
    conditions: dict[str, bool], state: str
) -> None:
    given = {"reachable": True, "paused": False, "full": False, "draining": False} | conditions

    assert line.line_state(**given) == state


def test_a_draining_line_still_takes_questions_but_says_it_is_on_hold(
    backend: str, samples: Any, enqueued: list[str]
) -> None:
    controls.set_draining(True)

    status = services.queue_status()

    assert (status["state"], status["accepting"]) == ("draining", True)


def test_a_full_line_says_so_before_anyone_asks(
    backend: str, samples: Any, enqueued: list[str], settings: Any
) -> None:
    settings.QUEUE_MAX_WAITING = 3
    waiting(3)

    status = services.queue_status()

    assert (status["state"], status["accepting"]) == ("full", False)


def answered(seconds: list[float]) -> None:
    """Finished answers in the database that took `seconds` each, the first the latest."""
    for n, duration in enumerate(seconds):
        message = services.submit(
            session_key=f"done{n}", client_ip=f"10.2.0.{n + 1}", sample="strawberry"
        )
        end = timezone.now() - timedelta(minutes=n)
        Message.objects.filter(pk=message.pk).update(
            status=Message.Status.DONE,
            started_at=end - timedelta(seconds=duration),
            finished_at=end,
        )


def test_after_redis_forgot_the_service_times_the_estimate_comes_from_the_database(
    backend: str, samples: Any, enqueued: list[str]
) -> None:
    answered([8.0, 12.0])
    client = redis_clients.redis_client()
    client.delete(line.SERVICE_TIMES_KEY)  # as after a Redis restart

    snapshot = line.queue_snapshot()

    assert snapshot.mean_service == pytest.approx(10.0)
    assert snapshot.mean_service != eta.DEFAULT_SERVICE_SECONDS
    # Seeded once: the next estimate reads Redis again, newest first.
    assert [float(v) for v in client.lrange(line.SERVICE_TIMES_KEY, 0, -1)] == [8.0, 12.0]


def test_with_no_history_anywhere_the_estimate_starts_from_its_default(
    backend: str, samples: Any
) -> None:
    assert line.queue_snapshot().mean_service == eta.DEFAULT_SERVICE_SECONDS


def test_a_drained_line_is_told_it_is_on_hold_and_then_that_it_moves_again(
    backend: str, samples: Any, enqueued: list[str], told: list[tuple[str, dict[str, Any]]]
) -> None:
    line_of = waiting(3)

    controls.set_draining(True)
    line.publish_queue_positions()
    controls.set_draining(False)
    line.publish_queue_positions()

    assert [event["on_hold"] for _, event in told] == [True] * 3 + [False] * 3
    assert [event["position"] for _, event in told] == [1, 2, 3] * 2
    assert services.message_payload(line_of[0])["on_hold"] is False


def test_pages_reuse_a_recent_snapshot_of_the_line_and_the_api_reads_afresh(
    backend: str, samples: Any, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A thousand visitors opening the page at once all ask for the line's status; one
    # reading of the line serves them for SNAPSHOT_REUSE_SECONDS.
    readings: list[int] = []
    read = line.queue_snapshot

    def counted() -> eta.QueueSnapshot:
        readings.append(1)
        return read()

    monkeypatch.setattr(line, "queue_snapshot", counted)
    # Long enough for a slow machine to serve the pages below within it.
    monkeypatch.setattr(line, "SNAPSHOT_REUSE_SECONDS", 60.0)
    line.forget_queue_snapshot()

    for _ in range(3):
        assert client.get("/").status_code == 200
    assert client.get("/status").status_code == 200
    assert len(readings) == 1

    for _ in range(2):
        assert client.get("/api/v1/status").status_code == 200
    assert len(readings) == 3
