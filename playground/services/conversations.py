"""Keeping, renaming, sharing and forgetting a visitor's conversations."""

from __future__ import annotations

import logging

from django.utils.translation import gettext

from playground import slots
from playground.models import Conversation, Message, new_share_token
from playground.realtime import cancel_flags, channel_groups
from playground.services.dispatching import (
    dispatch,
)
from playground.services.errors import (
    PlaygroundError,
    quietly,
)
from playground.services.line import (
    publish_queue_positions,
)
from playground.services.payloads import share_url
from playground.services.questions import (
    storable,
)

log = logging.getLogger(__name__)

TITLE_MAX_CHARS = 200


def rename(conversation: Conversation, title: str | None) -> Conversation:
    if title is None or not storable(title):
        raise PlaygroundError("invalid_params", gettext("The title must be text."))
    cleaned = " ".join(title.split())
    if not cleaned:
        raise PlaygroundError("invalid_params", gettext("The title cannot be empty."))
    if len(cleaned) > TITLE_MAX_CHARS:
        told = gettext("Titles are limited to %(limit)d characters.") % {"limit": TITLE_MAX_CHARS}
        raise PlaygroundError("invalid_params", told)
    conversation.title = cleaned
    conversation.save(update_fields=["title"])
    return conversation


def delete_conversation(conversation: Conversation) -> None:
    """Forget a conversation: stop what is still generating, then delete it and its link."""
    for message in conversation.messages.filter(
        role=Message.Role.ASSISTANT, status__in=Message.ACTIVE
    ):
        cancel_flags.request_cancel(message.pk)
        holds_unused_slot = message.status == Message.Status.QUEUED and message.backend
        if message.cancel():
            channel_groups.publish(message.pk, {"type": "cancelled"})
            if holds_unused_slot:
                # Its worker has not started and will find no row: hand the slot on now.
                # (A running answer's worker releases its own slot when it stops.)
                slots.release_slot(message.backend, message.pk)
    conversation.delete()
    dispatch()
    publish_queue_positions()


def revoke_share_link(conversation: Conversation) -> None:
    _replace_share_token(conversation, None)


def new_share_link(conversation: Conversation) -> str:
    _replace_share_token(conversation, new_share_token())
    return share_url(conversation) or ""


def _replace_share_token(conversation: Conversation, token: str | None) -> None:
    """The old link stops working at once: pages and API calls with it find nothing, and the
    streams open with it are closed (the web processes' sweep closes any this misses)."""
    old = conversation.share_token
    conversation.share_token = token
    conversation.save(update_fields=["share_token"])
    if not old:
        return
    live_answers = conversation.messages.filter(
        role=Message.Role.ASSISTANT, status__in=Message.ACTIVE
    ).values_list("pk", flat=True)
    revoked = {"type": "revoked", "share": old}
    quietly(
        lambda: channel_groups.publish_many([(pk, revoked) for pk in live_answers]),
        "close shared streams",
    )
