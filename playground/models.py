"""Conversations, messages and sample prompts.

A message owns its life cycle. Every transition is one conditional UPDATE on the current
status, so two processes racing on the same message (a redelivered Celery task, a cancel
arriving while the worker finishes) cannot both win: the loser's UPDATE matches no row.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.dispatch import Signal
from django.utils import timezone

# Sent each time a message reaches a final status, whichever way it ended; the operators'
# metrics receive it (connected in apps.py), so this module needs none of theirs.
message_finished = Signal()


def new_id() -> str:
    # 128 bits of randomness, URL-safe: ids double as capabilities for their owner's session.
    return secrets.token_urlsafe(16)


def new_share_token() -> str:
    return secrets.token_urlsafe(24)


class Conversation(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    # None once the owner revokes the link; a new link gets a fresh token.
    share_token = models.CharField(
        max_length=48, unique=True, null=True, blank=True, default=new_share_token
    )
    session_key = models.CharField(max_length=64, db_index=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    title = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(default=timezone.now, db_index=True)
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return self.title or self.id


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        ERROR = "error"
        CANCELLED = "cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    FINAL = (Status.DONE, Status.ERROR, Status.CANCELLED)
    # error_code of an answer the site's operators stopped (its error_message says why).
    OPERATOR_STOP = "operator"

    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    # The assistant message answers this user message; regenerations share it.
    reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="answers"
    )
    prompt = models.TextField()
    # On a question: the answer the visitor chose among regenerations (None: the latest).
    selected_answer = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # On a question: the question it follows (None for a conversation's first). Questions with
    # the same parent are versions of one turn, made by editing; each keeps the turns that
    # followed it, so a conversation is a tree and the page shows one path through it.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="followed_by"
    )
    # A version of a question the visitor edited away from (or switched away from): kept with
    # its answers and later turns, but not shown or sent to the model until chosen again.
    superseded = models.BooleanField(default=False)
    sample_slug = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, db_index=True)
    session_key = models.CharField(max_length=64, blank=True, db_index=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)

    # The answer: final sections plus the ordered delta log that produced them, so a viewer
    # who connects after the end still gets a byte-exact replay (seq 1..n).
    sections = models.JSONField(default=dict, blank=True)
    # Seconds the answer spent thinking, reflecting and answering, so its phases still show
    # after a reload ({"thinking": 4.2, "reflecting": 1.0, "answering": 2.3}).
    phase_seconds = models.JSONField(default=dict, blank=True)
    deltas = models.JSONField(default=list, blank=True)

    created = models.DateTimeField(default=timezone.now, db_index=True)
    # Set when a backend slot is leased for the message; it is still "queued" (position 0)
    # until a worker picks it up and marks it running.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    first_token_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    tokens = models.PositiveIntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    backend = models.CharField(max_length=200, blank=True)
    model_id = models.CharField(max_length=200, blank=True)
    model_info = models.JSONField(default=dict, blank=True)
    sampling = models.JSONField(default=dict, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["created"]
        indexes = [
            models.Index(fields=["status", "created"], name="message_queue_order"),
        ]
        constraints = [
            # One active answer per visitor, enforced by the database so that a double submit
            # racing through two web processes cannot slip past the check in services.submit.
            models.UniqueConstraint(
                fields=["session_key"],
                condition=Q(role="assistant", status__in=["queued", "running"]),
                name="one_active_answer_per_session",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} {self.id} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL

    # --- state transitions -----------------------------------------------------------------

    def _transition(self, allowed: tuple[str, ...], **changes: Any) -> bool:
        updated = Message.objects.filter(pk=self.pk, status__in=allowed).update(**changes)
        if updated:
            for name, value in changes.items():
                setattr(self, name, value)
            if self.is_final:
                # Every way a message ends passes here, so the operators' numbers miss none.
                message_finished.send(sender=Message, message=self)
        return bool(updated)

    def mark_dispatched(self, backend: str) -> bool:
        """Record that a slot on `backend` is leased for this message (it leaves the line)."""
        now = timezone.now()
        updated = Message.objects.filter(
            pk=self.pk, status=self.Status.QUEUED, dispatched_at__isnull=True
        ).update(dispatched_at=now, backend=backend)
        if updated:
            self.dispatched_at, self.backend = now, backend
        return bool(updated)

    def mark_running(self, **provenance: Any) -> bool:
        """Claim a dispatched message for one worker. False if it was claimed or cancelled.

        `provenance` (model_id, model_info, sampling) is recorded in the same UPDATE."""
        now = timezone.now()
        updated = Message.objects.filter(
            pk=self.pk, status=self.Status.QUEUED, dispatched_at__isnull=False
        ).update(
            status=self.Status.RUNNING,
            started_at=now,
            attempts=models.F("attempts") + 1,
            **provenance,
        )
        if updated:
            # Only this claim moves a message to running, so its attempts were ours + 1; not
            # reading the row back saves a query on the way to the first token.
            self.status, self.started_at = self.Status.RUNNING, now
            self.attempts += 1
            for name, value in provenance.items():
                setattr(self, name, value)
        else:
            self.refresh_from_db(fields=["status", "started_at", "attempts", *provenance])
        return bool(updated)

    def requeue(self) -> bool:
        """Put a message back in its old place in line (nothing of its answer was written)."""
        return self._transition(
            self.ACTIVE,
            status=self.Status.QUEUED,
            dispatched_at=None,
            started_at=None,
            backend="",
        )

    def finish(
        self,
        *,
        sections: dict,
        deltas: list,
        tokens: int | None,
        finish_reason: str,
        first_token_at: datetime | None,
        phase_seconds: dict | None = None,
    ) -> bool:
        return self._transition(
            (self.Status.RUNNING,),
            status=self.Status.DONE,
            sections=sections,
            deltas=deltas,
            tokens=tokens,
            finish_reason=finish_reason,
            first_token_at=first_token_at,
            phase_seconds=phase_seconds or {},
            finished_at=timezone.now(),
        )

    def fail(
        self,
        code: str,
        message: str,
        *,
        sections: dict | None = None,
        deltas: list | None = None,
        tokens: int | None = None,
        first_token_at: datetime | None = None,
    ) -> bool:
        changes: dict[str, Any] = {
            "status": self.Status.ERROR,
            "error_code": code,
            "error_message": message[:2000],
            "finished_at": timezone.now(),
        }
        if sections is not None:
            changes.update(
                sections=sections, deltas=deltas or [], tokens=tokens, first_token_at=first_token_at
            )
        return self._transition(self.ACTIVE, **changes)

    def cancel(
        self,
        *,
        sections: dict | None = None,
        deltas: list | None = None,
        tokens: int | None = None,
        first_token_at: datetime | None = None,
    ) -> bool:
        """Stop the message, keeping the text written so far (the visitor already saw it)."""
        changes: dict[str, Any] = {"status": self.Status.CANCELLED, "finished_at": timezone.now()}
        if sections is not None:
            changes.update(
                sections=sections, deltas=deltas or [], tokens=tokens, first_token_at=first_token_at
            )
        return self._transition(self.ACTIVE, **changes)

    def note_stopped_by_operator(self, reason: str) -> bool:
        """Record, before the stop itself, that the site's operators stop this answer: the
        worker that ends it keeps these fields, so its visitor is told who stopped it and why."""
        changes = {"error_code": self.OPERATOR_STOP, "error_message": reason[:2000]}
        updated = Message.objects.filter(pk=self.pk, status__in=self.ACTIVE).update(**changes)
        if updated:
            self.error_code, self.error_message = changes["error_code"], changes["error_message"]
        return bool(updated)

    @property
    def stopped_by_operator(self) -> bool:
        return self.status == self.Status.CANCELLED and self.error_code == self.OPERATOR_STOP

    def abandon(self) -> bool:
        """Its visitor left before their turn came: it must not take a GPU slot."""
        return self._transition(
            (self.Status.QUEUED,),
            status=self.Status.CANCELLED,
            error_code="abandoned",
            error_message="The visitor left before their turn.",
            finished_at=timezone.now(),
        )

    def store_partial(
        self,
        *,
        sections: dict,
        deltas: list,
        tokens: int | None,
        first_token_at: datetime | None,
    ) -> None:
        """Keep what was written before a cancel: the text the visitor already saw stays."""
        Message.objects.filter(pk=self.pk, status=self.Status.CANCELLED).update(
            sections=sections, deltas=deltas, tokens=tokens, first_token_at=first_token_at
        )
        self.sections, self.deltas, self.tokens = sections, deltas, tokens
        self.first_token_at = first_token_at


class SamplePrompt(models.Model):
    slug = models.SlugField(primary_key=True, max_length=64)
    title = models.CharField(max_length=200)
    prompt = models.TextField()
    expected_answer = models.CharField(max_length=200, blank=True)
    position = models.PositiveSmallIntegerField(default=0)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["position", "slug"]

    def __str__(self) -> str:
        return self.title


# --- operators --------------------------------------------------------------------------------


class Block(models.Model):
    """A visitor refused new questions until `expires` (set by an operator on /ops/).

    A session is stored as the SHA-256 of its key: the key itself is a login to the visitor's
    conversations, and the block only needs to recognise it.
    """

    class Kind(models.TextChoices):
        IP = "ip", "IP address"
        SESSION = "session", "session"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    value = models.CharField(max_length=128, db_index=True)
    label = models.CharField(max_length=200, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(default=timezone.now)
    # Lifting a block ends it now; the row stays as a record.
    expires = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.kind} {self.label or self.value}"

    @property
    def active(self) -> bool:
        return self.expires > timezone.now()


class AuditLog(models.Model):
    """One row per operator control: who did what, when, with which values."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept as text too, so the record survives the user's deletion.
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    target = models.CharField(max_length=300, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"

    def __str__(self) -> str:
        return f"{self.created:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.target}"
