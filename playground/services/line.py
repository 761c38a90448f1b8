"""The waiting line: who waits, each one's place and wait estimate, the line's turn for
writing, and telling everyone waiting where they stand.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.models import QuerySet
from django.utils import timezone

from playground import controls, eta, rotation, slots
from playground.models import Message
from playground.realtime import channel_groups, redis_clients
from playground.services.errors import (
    quietly,
)

log = logging.getLogger(__name__)


SERVICE_TIMES_KEY = "pg:service-times"


# The line is ordered by `created`, so rows must commit in the order of their `created`: a row
# stamped earlier but committed later would slip in ahead of visitors already told their place
# (bench/README.md, measurements behind the code). SQLite's IMMEDIATE
# transactions admit one writer at a time anyway; on PostgreSQL the transactions that put a
# question in line take turns on a lock that their commit releases.
LINE_LOCK_KEY = 0x5047_4C4E  # any constant of this application's own


def take_a_place_in_line() -> None:
    connection = connections["default"]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LINE_LOCK_KEY])


def back_in_line(message: Message) -> bool:
    """Return a message to its old place in line, under the line's turn like a new question."""
    with transaction.atomic():
        take_a_place_in_line()
        return message.requeue()


def record_service_time(message: Message) -> None:
    if message.started_at and message.finished_at:
        seconds = (message.finished_at - message.started_at).total_seconds()
        pipe = redis_clients.redis_client().pipeline(transaction=False)
        pipe.lpush(SERVICE_TIMES_KEY, f"{seconds:.3f}")
        pipe.ltrim(SERVICE_TIMES_KEY, 0, eta.SERVICE_SAMPLES - 1)
        quietly(pipe.execute, "record a service time")


def _mean_service_seconds() -> float:
    samples = [
        float(value) for value in redis_clients.redis_client().lrange(SERVICE_TIMES_KEY, 0, -1)
    ]
    if not samples:
        samples = _service_times_from_the_database()
    return sum(samples) / len(samples) if samples else eta.DEFAULT_SERVICE_SECONDS


def _service_times_from_the_database() -> list[float]:
    """When Redis has no recent service times (it restarted, or a fresh `make run` on the same
    database), the last answers the database kept say how long an answer takes here, far
    closer than a constant: after a restart the line was told 566 s and waited 180. They
    seed Redis's list, so this is read once."""
    finished = (
        Message.objects.filter(
            role=Message.Role.ASSISTANT,
            status=Message.Status.DONE,
            started_at__isnull=False,
            finished_at__isnull=False,
        )
        .order_by("-finished_at")
        .values_list("started_at", "finished_at")[: eta.SERVICE_SAMPLES]
    )
    seconds = [(end - start).total_seconds() for start, end in finished]
    if seconds:
        pipe = redis_clients.redis_client().pipeline(transaction=False)
        pipe.rpush(SERVICE_TIMES_KEY, *(f"{value:.3f}" for value in seconds))
        pipe.ltrim(SERVICE_TIMES_KEY, 0, eta.SERVICE_SAMPLES - 1)
        quietly(pipe.execute, "seed the service times")
    return seconds


def queue_snapshot() -> eta.QueueSnapshot:
    now = timezone.now()
    in_flight = Message.objects.filter(
        role=Message.Role.ASSISTANT, status__in=Message.ACTIVE, dispatched_at__isnull=False
    ).values_list("started_at", flat=True)
    elapsed = [(now - started).total_seconds() if started else 0.0 for started in in_flight]
    return eta.QueueSnapshot(
        running_elapsed=elapsed,
        capacity=slots.capacity(),
        mean_service=_mean_service_seconds(),
        on_hold=controls.draining(),
    )


# Every submission, every waiting viewer who connects and every page with the line's status
# asks where the line stands; under a rush that is hundreds of the same database and Redis reads
# a second in one web process. Those answers reuse a snapshot this young, its running times
# advanced by its age. Publishing new places from this process (after a dispatch that started
# answers, a cancel, a requeue) starts afresh; /api/v1/status and the dashboard always read
# afresh.
SNAPSHOT_REUSE_SECONDS = 0.25


_recent_snapshot: tuple[float, eta.QueueSnapshot] | None = None


def recent_queue_snapshot() -> eta.QueueSnapshot:
    global _recent_snapshot
    now = time.monotonic()
    recent = _recent_snapshot
    if recent is not None and 0.0 <= now - recent[0] < SNAPSHOT_REUSE_SECONDS:
        age = now - recent[0]
        elapsed = [seconds + age for seconds in recent[1].running_elapsed]
        return dataclasses.replace(recent[1], running_elapsed=elapsed)
    snapshot = queue_snapshot()
    _recent_snapshot = (now, snapshot)
    return snapshot


def forget_queue_snapshot() -> None:
    global _recent_snapshot
    _recent_snapshot = None


def waiting() -> QuerySet[Message]:
    return Message.objects.filter(
        role=Message.Role.ASSISTANT, status=Message.Status.QUEUED, dispatched_at__isnull=True
    )


def waiting_count() -> int:
    """Visitors in line for a slot (those already holding one are not waiting)."""
    return waiting().count()


def waiting_line() -> list[str]:
    return list(waiting().order_by("created", "id").values_list("id", flat=True))


def position_of(message: Message) -> int | None:
    """1-based place in line of a waiting message; 0 once it has a slot; None when not queued."""
    if message.status != Message.Status.QUEUED:
        return None
    if message.dispatched_at is not None:
        return 0
    ahead = waiting().filter(created__lt=message.created).count()
    return ahead + 1


def eta_for_position(position: int, snapshot: eta.QueueSnapshot | None = None) -> float:
    if position <= 0:
        return 0.0
    snapshot = snapshot or queue_snapshot()
    estimates = eta.wait_estimates(snapshot, position)
    return round(estimates[-1], 1) if estimates else 0.0


def estimate_wait_for_new_arrival() -> float:
    return eta_for_position(waiting_count() + 1)


def line_state(*, reachable: bool, paused: bool, full: bool, draining: bool) -> str:
    """What the line means for someone who asks now, named (the first that holds):
    `unavailable` (no model server: questions are refused), `paused` (intake paused: refused),
    `full` (refused until the line shortens), `draining` (questions wait, nothing new starts,
    so no estimate holds), `open`."""
    if not reachable:
        return "unavailable"
    if paused:
        return "paused"
    if full:
        return "full"
    if draining:
        return "draining"
    return "open"


def queue_status(*, recent: bool = False) -> dict[str, Any]:
    """`recent`: a snapshot of the last SNAPSHOT_REUSE_SECONDS will do (a page's status line,
    which a thousand visitors opening the page at once all ask for)."""
    waiting = waiting_count()
    snapshot = recent_queue_snapshot() if recent else queue_snapshot()
    state = line_state(
        reachable=bool(rotation.backends()),
        paused=controls.pause_banner() is not None,
        full=waiting >= settings.QUEUE_MAX_WAITING,
        draining=snapshot.on_hold,
    )
    return {
        "accepting": state in ("open", "draining"),
        "state": state,
        "queue": {
            "waiting": waiting,
            "running": len(snapshot.running_elapsed),
            "capacity": snapshot.capacity,
            "eta_seconds": eta_for_position(waiting + 1, snapshot),
        },
    }


def queued_event(position: int, eta: float, as_of: float, on_hold: bool) -> dict[str, Any]:
    """A waiting visitor's place; `on_hold` while the line is drained (the estimate is what
    it would be once the line moves again)."""
    return {
        "type": "queued",
        "position": position,
        "eta_seconds": round(eta, 1),
        "as_of": as_of,
        "on_hold": on_hold,
    }


def line_event(
    line: list[str], estimates: list[float], as_of: float, on_hold: bool
) -> dict[str, Any]:
    """Everyone's place in line and estimate, in one event for the line's group
    (`realtime.channel_groups.LINE_GROUP`), which each web process reads once for all its
    waiting viewers (`realtime.line_listener`); each viewer's socket picks its own place out of
    it (`place_in`)."""
    return {
        "type": "line",
        "as_of": as_of,
        "on_hold": on_hold,
        "places": {
            message_id: [place, round(eta, 1)]
            for place, (message_id, eta) in enumerate(zip(line, estimates, strict=False), start=1)
        },
    }


def place_in(event: dict[str, Any], message_id: str) -> dict[str, Any] | None:
    """A waiting answer's own `queued` event out of a line event; None when it is not in it
    (it started, or it was put in line after the line was read)."""
    entry = event["places"].get(message_id)
    if entry is None:
        return None
    position, eta = entry
    return queued_event(position, eta, event["as_of"], event["on_hold"])


# The line is told its places in one event (line_event), which each web process hands to each
# of its waiting viewers' sockets, and each socket tells its viewer a new place at most once a
# second (consumers.py). A short line is told at every change; a long one changes at every
# hand-off (thirty a second in a launch-day rush of short answers), and each event costs every
# web process a step per waiting viewer, so a line longer than ANNOUNCE_ALWAYS_UP_TO is told at
# most ANNOUNCED_PLACES_PER_SECOND places a second overall: a thousand waiting are told every
# half second. A change in between is told by the next announcement, which one process
# schedules for when the pause is over; a place told is exact when it is told, and only ever
# falls. (Before the line event, a place was a channel-layer message of its own: a thousand
# waiting were a thousand messages for the publisher to send and the web process to read,
# twice a second; bench/README.md.)
ANNOUNCE_ALWAYS_UP_TO = 50
ANNOUNCED_PLACES_PER_SECOND = 2000
ANNOUNCED_KEY = "pg:line:announced"
ANNOUNCE_SCHEDULED_KEY = "pg:line:announce-scheduled"


def publish_queue_positions() -> None:
    """Tell everyone waiting where they stand now (one event for all of them)."""
    # Taken before reading the line: several processes publish concurrently, and a viewer
    # must be able to tell a stale snapshot from a fresh one (see the consumer).
    as_of = round(time.time(), 6)
    forget_queue_snapshot()
    # Checked before the line is read: under a rush nearly every hand-off falls in a pause,
    # and reading a thousand waiting ids thirty times a second would be for nothing.
    if _told_a_moment_ago():
        return
    line = waiting_line()
    if not line:
        return
    if len(line) > ANNOUNCE_ALWAYS_UP_TO and not _pause_begins(len(line)):
        return
    snapshot = queue_snapshot()
    estimates = eta.wait_estimates(snapshot, len(line))
    channel_groups.publish_to_line(line_event(line, estimates, as_of, snapshot.on_hold))


def _told_a_moment_ago() -> bool:
    """Whether a long line was told less than its pause ago; if so, make sure this change is
    told when the pause ends (one process schedules that)."""
    client = redis_clients.redis_client()
    remaining_ms = client.pttl(ANNOUNCED_KEY)
    if remaining_ms <= 0:
        return False
    if client.set(ANNOUNCE_SCHEDULED_KEY, "1", nx=True, px=remaining_ms):
        later = threading.Timer(remaining_ms / 1000, _announce_later)
        later.daemon = True
        later.start()
    return True


def _pause_begins(waiting: int) -> bool:
    """Start the pause that follows telling a long line; False when another process has
    just started one (and then this change is told when it ends)."""
    pause_ms = max(1, round(waiting * 1000 / ANNOUNCED_PLACES_PER_SECOND))
    if redis_clients.redis_client().set(ANNOUNCED_KEY, "1", nx=True, px=pause_ms):
        return True
    _told_a_moment_ago()
    return False


def _announce_later() -> None:
    try:
        quietly(publish_queue_positions, "publish the line")
    except Exception:
        log.exception("could not tell the line its places")
    finally:
        # The timer's thread ends here; its database connection must not outlive it.
        connections.close_all()
