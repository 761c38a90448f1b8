"""What an operator does from the dashboard: pause and resume intake, drain, set a backend's
concurrency, take a backend out of rotation or back, cancel an answer, block a visitor and lift
a block. Each action checks what the operator typed (a `ControlError` says how to correct it,
and changes nothing), applies it through playground.controls (in force in every process on its
next request) and records it in the audit log.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils import timezone

from playground import controls, services
from playground.models import Block, Conversation, Message
from playground.ops import audit

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    Actor = AbstractBaseUser | AnonymousUser | None

BANNER_MAX_CHARS = 300
CONCURRENCY_MIN = 1
CONCURRENCY_MAX = 1024  # the same bounds as GENERATION_CONCURRENCY
BLOCK_MIN = timedelta(minutes=1)
BLOCK_MAX = timedelta(days=30)
_DURATION_UNITS = {"m": 60, "h": 3600, "d": 86400}


class ControlError(ValueError):
    """Input an operator can correct; the message says how."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- validating what an operator typed ------------------------------------------------------


def clean_banner(value: Any) -> str:
    text = " ".join(str(value or "").split())
    if not text:
        raise ControlError("Write the banner visitors will see while intake is paused.")
    if len(text) > BANNER_MAX_CHARS:
        raise ControlError(f"The banner is limited to {BANNER_MAX_CHARS} characters.")
    return text


def clean_concurrency(value: Any) -> int:
    text = str(value if value is not None else "").strip()
    if not re.fullmatch(r"[0-9]{1,5}", text):
        raise ControlError("Concurrency must be a whole number of generations.")
    limit = int(text)
    if not CONCURRENCY_MIN <= limit <= CONCURRENCY_MAX:
        raise ControlError(
            f"Concurrency must be between {CONCURRENCY_MIN} and {CONCURRENCY_MAX}; "
            "to stop a backend, disable it."
        )
    return limit


def clean_backend(value: Any) -> str:
    backend = str(value or "").strip()
    if backend not in settings.TGI_URLS:
        raise ControlError("No such backend (it must be one of TGI_URL).")
    return backend


def clean_duration(value: Any) -> timedelta:
    """``90`` (minutes), ``30m``, ``12h`` or ``7d``; between one minute and thirty days."""
    match = re.fullmatch(r"\s*([0-9]{1,6})\s*([mhd]?)\s*", str(value or "").lower())
    if not match:
        raise ControlError("Give the duration as minutes (90) or with a unit: 30m, 12h, 7d.")
    seconds = int(match.group(1)) * _DURATION_UNITS[match.group(2) or "m"]
    duration = timedelta(seconds=seconds)
    if not BLOCK_MIN <= duration <= BLOCK_MAX:
        raise ControlError("A block lasts between one minute and 30 days.")
    return duration


def clean_ip(value: Any) -> str:
    try:
        # The same normal form visitors.client_ip stores, so the block matches.
        return str(ipaddress.ip_address(str(value or "").strip()))
    except ValueError:
        raise ControlError("That is not an IP address.") from None


def clean_reason(value: Any) -> str:
    return " ".join(str(value or "").split())[:300]


# --- intake and dispatch --------------------------------------------------------------------


def pause(actor: Actor, banner: Any) -> str:
    """Close intake with a banner for visitors; queued and running work continues."""
    text = clean_banner(banner)
    controls.set_paused(text)
    audit.record(actor, "pause", banner=text)
    return text


def resume(actor: Actor) -> None:
    controls.set_paused(None)
    audit.record(actor, "resume")


def drain(actor: Actor) -> None:
    """Start nothing new; running answers finish and the line keeps its order."""
    controls.set_draining(True)
    audit.record(actor, "drain")
    # Everyone waiting is told at once that the line is on hold, not left with a frozen wait.
    services.publish_queue_positions()


def undrain(actor: Actor) -> int:
    """Dispatch again; how many generations started at once."""
    controls.set_draining(False)
    audit.record(actor, "undrain")
    started = services.dispatch()
    if not started:
        # Nothing could start yet: the line is still told that it is no longer on hold.
        services.publish_queue_positions()
    return started


# --- backends -------------------------------------------------------------------------------


def set_concurrency(actor: Actor, backend: Any, limit: Any) -> tuple[str, int]:
    """Override GENERATION_CONCURRENCY for one backend: (the backend, its new limit)."""
    url = clean_backend(backend)
    before = controls.concurrency_override(url)
    cleaned = clean_concurrency(limit)
    controls.set_concurrency(url, cleaned)
    audit.record(actor, "concurrency", url, before=before, after=cleaned)
    services.dispatch()  # more room: the line moves at once, not at the next reconcile
    return url, cleaned


def reset_concurrency(actor: Actor, backend: Any) -> str:
    """Back to GENERATION_CONCURRENCY for one backend."""
    url = clean_backend(backend)
    before = controls.concurrency_override(url)
    controls.set_concurrency(url, None)
    audit.record(actor, "concurrency_reset", url, before=before)
    services.dispatch()
    return url


def set_backend_enabled(actor: Actor, backend: Any, enabled: bool) -> str:
    """Take a backend out of rotation (what runs there finishes), or put it back."""
    url = clean_backend(backend)
    controls.set_backend_enabled(url, enabled)
    audit.record(actor, "enable_backend" if enabled else "disable_backend", url)
    if enabled:
        services.dispatch()
    return url


# --- answers --------------------------------------------------------------------------------


def find_answer(message_id: Any) -> Message:
    text = str(message_id or "").strip()
    found = (
        Message.objects.filter(pk=text[:48], role=Message.Role.ASSISTANT).first() if text else None
    )
    if found is None:
        raise ControlError("No answer has that id.")
    return found


def cancel(actor: Actor, message: Message, **detail: Any) -> Message:
    """Stop any visitor's answer, as their own Stop would, telling them the site stopped it;
    the answer as it ended."""
    result = services.cancel(message, by_operator=True)
    audit.record(actor, "cancel", message.pk, status=result.status, **detail)
    return result


# --- blocks ---------------------------------------------------------------------------------


def _session_of(reference: str) -> tuple[str, str]:
    """(session key, label) of the visitor behind a conversation or message id."""
    conversation = Conversation.objects.filter(pk=reference).first()
    if conversation is not None:
        return conversation.session_key, f"session of conversation {conversation.pk}"
    message = Message.objects.filter(pk=reference).first()
    if message is not None and message.session_key:
        return message.session_key, f"session of conversation {message.conversation_id}"
    raise ControlError("No conversation or message has that id.")


@dataclass(frozen=True)
class WantedBlock:
    """A block an operator asked for, checked and not yet in force."""

    kind: str
    key: str  # what admission compares: the normal form of the IP, or the session key
    label: str
    length: timedelta
    reason: str

    @property
    def length_text(self) -> str:
        """The length as typed in whole units: 90 min, 12 h, 7 days."""
        minutes = int(self.length.total_seconds()) // 60
        if minutes % (24 * 60) == 0:
            days = minutes // (24 * 60)
            return f"{days} day{'s' if days > 1 else ''}"
        if minutes % 60 == 0:
            return f"{minutes // 60} h"
        return f"{minutes} min"


def clean_block(*, kind: Any, value: Any, duration: Any, reason: Any) -> WantedBlock:
    """An IP address, or the session behind a conversation or message id, and for how long."""
    reference = str(value or "").strip()
    length = clean_duration(duration)
    why = clean_reason(reason)
    if kind == Block.Kind.IP:
        key = label = clean_ip(reference)
    elif kind == Block.Kind.SESSION:
        if not reference:
            raise ControlError("Give the id of a conversation or message of that visitor.")
        key, label = _session_of(reference[:48])
    else:
        raise ControlError("Block an IP address or a session.")
    return WantedBlock(kind=kind, key=key, label=label, length=length, reason=why)


def block(actor: Actor, wanted: WantedBlock) -> Block:
    """Refuse new questions from an IP address, or from a session, for a while."""
    created = controls.add_block(
        kind=wanted.kind,
        value=wanted.key,
        label=wanted.label,
        duration=wanted.length,
        reason=wanted.reason,
        actor=actor,
    )
    audit.record(
        actor,
        "block",
        wanted.label,
        kind=wanted.kind,
        until=created.expires.isoformat(),
        reason=wanted.reason,
        block=created.pk,
    )
    return created


def lift_block(actor: Actor, block_id: int) -> Block:
    """End a block now (one that has already ended stays as it is)."""
    found = Block.objects.filter(pk=block_id).first()
    if found is None:
        raise ControlError("No such block.")
    if found.active:
        found.expires = timezone.now()
        found.save(update_fields=["expires"])
        audit.record(actor, "lift_block", found.label or found.kind, block=found.pk)
    return found
