"""The audit log: who changed which control, when, and how. Every operator's action (ops/actions.py)
and every change made in the admin is recorded here; the admin shows the log read-only, the
dashboard its latest entries.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from playground.models import AuditLog

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

log = logging.getLogger(__name__)


def record(
    actor: AbstractBaseUser | AnonymousUser | None,
    action: str,
    target: str = "",
    **detail: Any,
) -> AuditLog:
    """One entry; an actor that is not a logged-in user (a script, a test) is "system"."""
    user = actor if actor is not None and actor.is_authenticated else None
    name = user.get_username() if user is not None else "system"
    log.info("operator %s: %s %s %s", name, action, target, detail or "")
    return AuditLog.objects.create(
        actor=user, actor_name=name, action=action, target=target[:300], detail=detail
    )


def latest(limit: int) -> list[dict[str, Any]]:
    """The newest entries first, as the dashboard lists them."""
    return [
        {
            "when": entry.created.isoformat(),
            "who": entry.actor_name,
            "action": entry.action,
            "target": entry.target,
            "detail": entry.detail,
        }
        for entry in AuditLog.objects.all()[:limit]
    ]
