"""Keeping the database true after crashes and restarts (the periodic reconciler), and
forgetting conversations past their retention.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from playground import rotation, slots
from playground.models import Conversation, Message
from playground.realtime import channel_groups, delta_log, redis_clients
from playground.services.conversations import (
    delete_conversation,
)
from playground.services.dispatching import (
    dispatch,
    restore_redis_state,
)
from playground.services.errors import (
    ERROR_MESSAGES,
    in_english,
)
from playground.services.line import (
    back_in_line,
    publish_queue_positions,
    waiting,
)
from playground.services.payloads import (
    final_event,
    restarted_event,
    sections_of,
)

log = logging.getLogger(__name__)


# How long the reconciler remembers having found a lease missing (far longer than its period).
LEASE_MISSING_MEMORY_SECONDS = 300


def purge_expired(now: datetime | None = None) -> int:
    """Delete conversations untouched for CONVERSATION_RETENTION_DAYS (0 keeps them forever)."""
    days = settings.CONVERSATION_RETENTION_DAYS
    if not days:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    expired = Conversation.objects.filter(updated__lt=cutoff)
    count = 0
    for conversation in expired.iterator():
        delete_conversation(conversation)
        count += 1
    return count


def reconcile() -> dict[str, int]:
    """Repair what crashes and restarts leave behind; safe to run anywhere, any time.

    - a message dispatched or running whose slot lease is gone (its worker died, or Redis
      restarted and no worker renewed it) goes back in line if nothing was written yet, and
      fails plainly otherwise;
    - backends are probed, so one that left rotation comes back when healthy;
    - the line is dispatched and everyone waiting hears their place (at least every few s).
    """
    if not slots.leases_intact():
        restore_redis_state()
    for backend in rotation.backends():
        rotation.probe(backend)
    requeued = failed = 0
    grace = timezone.now() - timedelta(seconds=slots.lease_seconds())
    stale = Message.objects.filter(
        role=Message.Role.ASSISTANT,
        status__in=Message.ACTIVE,
        dispatched_at__isnull=False,
        dispatched_at__lt=grace,
    )
    for message in stale:
        if slots.holds_slot(message.backend, message.pk):
            redis_clients.redis_client().delete(
                lease_missing_key(message.pk)
            )  # a false alarm, if any
            continue
        if not _gone_for_good(message):
            continue
        events = delta_log.read_delta_log(message.pk)
        if events:
            # One UPDATE with the text: a reader never sees the error without what was written.
            if message.fail(
                "worker_lost",
                in_english(ERROR_MESSAGES["worker_lost"]),
                sections=sections_of(events),
                deltas=events,
            ):
                failed += 1
                channel_groups.publish(message.pk, final_event(message))
        else:
            had_started = message.status == Message.Status.RUNNING
            if back_in_line(message):
                requeued += 1
                if had_started:
                    # Its text, if any was shown, is lost with the log: it starts afresh.
                    channel_groups.publish(message.pk, restarted_event(message))
    # An outage, not an operator disabling backends, is what fails long-waiting work.
    if not slots.healthy_backends(include_disabled=True):
        failed += _fail_outage_victims()
    started = dispatch()
    publish_queue_positions()
    return {"requeued": requeued, "failed": failed, "dispatched": started}


def lease_missing_key(message_id: str) -> str:
    return f"pg:lease-missing:{message_id}"


def _gone_for_good(message: Message) -> bool:
    """Whether the worker of an answer whose lease is missing has had time to renew it.

    A worker renews its lease every third of the lease time, and again a second after Redis
    comes back from an outage; an outage longer than a lease ends with leases expired under
    workers that are alive. So a missing lease is first only noted, and acted on when it is
    still missing a renewal period later."""
    key = lease_missing_key(message.pk)
    renewal = slots.lease_seconds() / 3
    client = redis_clients.redis_client()
    client.set(key, f"{time.time():.3f}", nx=True, ex=LEASE_MISSING_MEMORY_SECONDS)
    noted = client.get(key)
    return noted is not None and time.time() - float(noted) >= renewal


def _fail_outage_victims() -> int:
    """With every backend down, tell those who waited longer than the patience plainly."""
    cutoff = timezone.now() - timedelta(seconds=settings.BACKEND_OUTAGE_PATIENCE)
    victims = waiting().filter(created__lt=cutoff)
    failed = 0
    for message in victims:
        if message.fail("backend_unavailable", in_english(ERROR_MESSAGES["backend_unavailable"])):
            failed += 1
            channel_groups.publish(message.pk, final_event(message))
    return failed
