"""The operators' runtime controls: pause intake, drain, per-backend concurrency, disabled
backends and blocked visitors.

Pause, drain, concurrency and disabled backends live in Redis, which every web and worker
process already reads for each admission and dispatch, so a control takes effect everywhere on
the next request (well within the 2 s the dashboard promises) with no cache to invalidate.
Blocks live in the database: they must outlast a Redis restart, and an operator can edit or
lift one in the admin. Each change an operator makes is recorded in the AuditLog.

The low-level setters below touch only Redis so that any process (a shell, a script, a test in
another process) can use them; the views in ops.py validate input, call them and audit.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any

import redis
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from playground.models import AuditLog, Block
from playground.realtime import redis_clients

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
    from django.http import HttpRequest

log = logging.getLogger(__name__)

PAUSE_KEY = "pg:ctl:paused"
DRAIN_KEY = "pg:ctl:draining"
CONCURRENCY_KEY = "pg:ctl:concurrency"
DISABLED_KEY = "pg:ctl:disabled"

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


# --- reading the state ----------------------------------------------------------------------


@dataclass(frozen=True)
class ControlState:
    banner: str | None  # the pause banner; None when intake is open
    draining: bool
    concurrency: dict[str, int] = field(default_factory=dict)  # backend → override
    disabled: frozenset[str] = frozenset()

    @property
    def paused(self) -> bool:
        return self.banner is not None


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def state() -> ControlState:
    """Every control in one round trip (the dashboard and /metrics show them together)."""
    pipe = redis_clients.redis_client().pipeline(transaction=False)
    pipe.get(PAUSE_KEY)
    pipe.exists(DRAIN_KEY)
    pipe.hgetall(CONCURRENCY_KEY)
    pipe.smembers(DISABLED_KEY)
    banner, draining, overrides, disabled = pipe.execute()
    return ControlState(
        banner=_text(banner),
        draining=bool(draining),
        concurrency={_text(k) or "": int(v) for k, v in overrides.items()},
        disabled=frozenset(_text(member) or "" for member in disabled),
    )


def pause_banner() -> str | None:
    return _text(redis_clients.redis_client().get(PAUSE_KEY))


def draining() -> bool:
    return bool(redis_clients.redis_client().exists(DRAIN_KEY))


def concurrency_override(backend: str) -> int | None:
    return override_from(redis_clients.redis_client().hget(CONCURRENCY_KEY, backend))


def override_from(value: bytes | str | None) -> int | None:
    """A concurrency override as Redis returned it (None: the setting applies)."""
    return int(value) if value is not None else None


def disabled_backends() -> set[str]:
    return disabled_from(redis_clients.redis_client().smembers(DISABLED_KEY))


def disabled_from(members: Iterable[bytes | str]) -> set[str]:
    """The backend URLs of the disabled set's members, as Redis returned them."""
    return {_text(member) or "" for member in members}


# --- changing the state (Redis only; validate first) ----------------------------------------


def set_paused(banner: str | None) -> None:
    """Pause intake with a banner for visitors, or reopen it with None."""
    if banner is None:
        redis_clients.redis_client().delete(PAUSE_KEY)
    else:
        redis_clients.redis_client().set(PAUSE_KEY, banner)


def set_draining(on: bool) -> None:
    if on:
        redis_clients.redis_client().set(DRAIN_KEY, "1")
    else:
        redis_clients.redis_client().delete(DRAIN_KEY)


def set_concurrency(backend: str, limit: int | None) -> None:
    """Override GENERATION_CONCURRENCY for one backend; None goes back to the setting."""
    if limit is None:
        redis_clients.redis_client().hdel(CONCURRENCY_KEY, backend)
    else:
        redis_clients.redis_client().hset(CONCURRENCY_KEY, backend, limit)


def set_backend_enabled(backend: str, enabled: bool) -> None:
    if enabled:
        redis_clients.redis_client().srem(DISABLED_KEY, backend)
    else:
        redis_clients.redis_client().sadd(DISABLED_KEY, backend)


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


# --- blocks ---------------------------------------------------------------------------------


def session_fingerprint(session_key: str) -> str:
    return hashlib.sha256(session_key.encode()).hexdigest()


def add_block(
    *,
    kind: str,
    value: str,
    duration: timedelta,
    label: str = "",
    reason: str = "",
    actor: AbstractBaseUser | None = None,
) -> Block:
    """Block an IP (value: the address) or a session (value: its key, stored hashed)."""
    stored = session_fingerprint(value) if kind == Block.Kind.SESSION else value
    return Block.objects.create(
        kind=kind,
        value=stored,
        label=label[:200],
        reason=reason,
        created_by=actor,
        expires=timezone.now() + duration,
    )


def active_block(session_key: str | None, client_ip: str | None) -> Block | None:
    match = Q()
    if client_ip:
        match |= Q(kind=Block.Kind.IP, value=client_ip)
    if session_key:
        match |= Q(kind=Block.Kind.SESSION, value=session_fingerprint(session_key))
    if not match:
        return None
    return Block.objects.filter(match, expires__gt=timezone.now()).order_by("-expires").first()


# --- what admission asks --------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str
    status: int


def refusal(session_key: str | None, client_ip: str | None) -> Refusal | None:
    """Why an operator control turns this visitor away right now, if it does."""
    block = active_block(session_key, client_ip)
    if block is not None:
        until = block.expires.astimezone(UTC).strftime("%H:%M UTC on %d %b")
        return Refusal("blocked", f"New questions from you are blocked until {until}.", status=403)
    banner = pause_banner()
    if banner is not None:
        return Refusal("paused", banner, status=503)
    return None


# --- the audit log --------------------------------------------------------------------------


def audit(
    actor: AbstractBaseUser | AnonymousUser | None,
    action: str,
    target: str = "",
    **detail: Any,
) -> AuditLog:
    user = actor if actor is not None and actor.is_authenticated else None
    name = user.get_username() if user is not None else "system"
    log.info("operator %s: %s %s %s", name, action, target, detail or "")
    return AuditLog.objects.create(
        actor=user, actor_name=name, action=action, target=target[:300], detail=detail
    )


# --- templates ------------------------------------------------------------------------------


def banner_context(request: HttpRequest) -> dict[str, Any]:
    """The pause banner for every page (context processor); a Redis hiccup hides it."""
    try:
        return {"intake_banner": pause_banner()}
    except redis.RedisError:
        return {"intake_banner": None}
