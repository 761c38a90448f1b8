"""Handing the line, oldest first, to free backend slots; and rebuilding the slot leases
from the database when Redis restarted empty.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from django.conf import settings

from playground import controls, logs, slots
from playground.celery import app as celery_app
from playground.models import Message
from playground.realtime import presence, redis_clients
from playground.services.errors import (
    quietly,
)
from playground.services.line import (
    publish_queue_positions,
    waiting,
    waiting_line,
)

log = logging.getLogger(__name__)


DISPATCH_LOCK_KEY = "pg:dispatch-lock"
DISPATCH_WANTED_KEY = "pg:dispatch-wanted"
GENERATE_TASK = "playground.tasks.generate"


# The id of the request that queued an answer, kept while it waits in line for a slot.
REQUEST_ID_TTL = 24 * 60 * 60


def request_id_key(message_id: str) -> str:
    return f"pg:request-id:{message_id}"


def enqueue(message_id: str, request_id: str | None) -> None:
    """Hand a message whose slot is leased to a worker: Celery's generate task, sent by name
    (the task module is a thin interface over this package, which does not import it). The
    request that asked for the answer rides along in a header, for the worker's log lines."""
    headers = {logs.TASK_HEADER: request_id} if request_id else None
    celery_app.send_task(GENERATE_TASK, args=[message_id], headers=headers)


def remember_request_id(message_id: str, pipe: redis.client.Pipeline) -> None:
    """An answer that waits in line is handed to a worker by whoever frees a slot, in another
    request or a worker: the id of the request that asked for it waits in Redis meanwhile
    (written with the caller's `pipe`)."""
    request_id = logs.current_request_id()
    if request_id:
        pipe.set(request_id_key(message_id), request_id, ex=REQUEST_ID_TTL)


def dispatch() -> int:
    """Hand queued messages, oldest first, to free backend slots. Returns how many this call
    started (others may be started by the pass it asked for).

    One pass at a time runs, under a short Redis lock, so that the line is served strictly in
    order even when several web and worker processes dispatch at the same moment. Nobody waits
    for the lock: a caller first asks for a pass, then runs passes only if it gets the lock at
    once; the holder keeps passing while passes are asked for. Under a rush, a hundred
    submissions used to queue on the lock, each polling it, while the first wave waited for
    its turn among them.
    """
    if not with_leases(slots.any_free_slot):
        # Whoever frees a slot dispatches next, and this message was committed before the
        # look: either the look sees the freed slot or the freeing side sees this message.
        # Looked at first: under a rush every slot is busy, and each submission is spared
        # the drain's round trip.
        return 0
    if controls.draining():
        # An operator drains: what runs finishes, nothing new starts, the line keeps its order.
        return 0
    client = redis_clients.redis_client()
    client.set(DISPATCH_WANTED_KEY, "1", ex=60)
    started = 0
    while True:
        lock = client.lock(DISPATCH_LOCK_KEY, timeout=10)
        if not lock.acquire(blocking=False):
            # The holder has not yet taken the request away: it makes the pass asked for.
            break
        try:
            while client.delete(DISPATCH_WANTED_KEY):
                started += _dispatch_pass()
        finally:
            with contextlib.suppress(Exception):
                lock.release()
        # A request that came in between the last look and the release found the lock taken.
        if not client.exists(DISPATCH_WANTED_KEY):
            break
    if started:
        publish_queue_positions()
    return started


def _dispatch_pass() -> int:
    started = 0
    while True:
        message = waiting().order_by("created", "id").first()
        if message is None:
            break
        if is_abandoned(message):
            message.abandon()
            continue
        backend = with_leases(slots.acquire_slot, message.pk)
        if backend is None:
            break
        if not message.mark_dispatched(backend):
            slots.release_slot(backend, message.pk)
            continue
        request_id = redis_clients.redis_client().get(request_id_key(message.pk))
        enqueue(message.pk, request_id.decode() if request_id else None)
        started += 1
    return started


def is_abandoned(message: Message) -> bool:
    """Nobody has watched this waiting message for longer than the grace period.

    An open stream counts as watching: its web process says so every few seconds. An answer
    that had started before it was put back in line (a restart) has had its turn: it is
    written whether or not anyone is watching now."""
    if message.attempts:
        return False
    seen = presence.last_seen(message.pk)
    last = max(seen or 0.0, message.created.timestamp())
    return time.time() - last > settings.ABANDON_GRACE_SECONDS


T = TypeVar("T")


def with_leases(look: Callable[..., T], *args: Any) -> T:
    """`look` at (or take) the slot leases, first restoring what Redis lost if it restarted
    empty (`slots.LeasesLost`)."""
    try:
        return look(*args)
    except slots.LeasesLost:
        restore_redis_state()
        return look(*args)


def restore_redis_state() -> None:
    """Redis came back without its data: rebuild from the database what admission relies on,
    before anyone is given a slot.

    Every answer that holds a slot in the database gets its lease back, so the concurrency
    cap holds across the loss; everyone waiting is seen now, so nobody whose presence was
    lost is taken for gone when their turn comes. Safe to run twice at once: both write the
    same leases, and nobody is leased a slot until the leases are marked intact.
    """
    holders = list(
        Message.objects.filter(
            role=Message.Role.ASSISTANT, status__in=Message.ACTIVE, dispatched_at__isnull=False
        ).values_list("pk", "backend")
    )
    presence.touch_many(waiting_line())
    slots.restore_leases(holders)
    log.log(
        logging.WARNING if holders else logging.INFO,
        "Redis started empty: %d slot leases restored from the database",
        len(holders),
    )


def hand_on(backend: str, message_id: str) -> None:
    """Release a slot that will not be used and give it to the next in line."""
    quietly(lambda: slots.release_slot(backend, message_id), "release a slot")
    quietly(dispatch, "dispatch the line")
