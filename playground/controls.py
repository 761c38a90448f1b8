"""The operators' runtime controls as admission and dispatch read them: pause intake, drain,
per-backend concurrency, disabled backends and blocked visitors.

Pause, drain, concurrency and disabled backends live in Redis, which every web and worker
process already reads for each admission and dispatch, so a control takes effect everywhere on
the next request (well within the 2 s the dashboard promises) with no cache to invalidate.
Blocks live in the database: they must outlast a Redis restart, and an operator can edit or
lift one in the admin. So that admission needs no database query to learn that nobody is
blocked (nearly always the case), Redis also keeps when the last block in force ends, rewritten
whenever a block is saved or deleted (apps.py connects that) and read with the pause banner in
one round trip. It only ever spares the query: when it is missing (Redis restarted, a minute
passed) or a block is in force, the database decides.

The setters below touch only Redis (or store a block) so that any process (a shell, a script, a
test in another process) can use them; an operator's actions (playground/ops/actions.py) check
their input, call them and record each change in the audit log.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any

import redis
from django.db.models import Max, Q
from django.utils import dateformat, timezone
from django.utils.translation import gettext, pgettext

from playground.models import Block
from playground.realtime import redis_clients

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest

PAUSE_KEY = "pg:ctl:paused"
# When the last block in force ends (epoch seconds; 0: none is), for at most a minute.
BLOCKS_END_KEY = "pg:ctl:blocks-end"
BLOCKS_END_TTL_SECONDS = 60
DRAIN_KEY = "pg:ctl:draining"
CONCURRENCY_KEY = "pg:ctl:concurrency"
DISABLED_KEY = "pg:ctl:disabled"


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
        disabled=frozenset(disabled_from(disabled)),
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


def remember_when_blocks_end(**_: Any) -> float:
    """Store (and return) when the last block in force ends, 0 when none is."""
    latest = Block.objects.filter(expires__gt=timezone.now()).aggregate(end=Max("expires"))["end"]
    end = latest.timestamp() if latest is not None else 0.0
    redis_clients.redis_client().set(BLOCKS_END_KEY, end, ex=BLOCKS_END_TTL_SECONDS)
    return end


def active_block(
    session_key: str | None, client_ip: str | None, *, blocks_end: float | None = None
) -> Block | None:
    """The block in force on this visitor, if any. `blocks_end`: when the last block in force
    ends, as Redis said (None: not known, the database is asked)."""
    if blocks_end is None:
        blocks_end = remember_when_blocks_end()
    if blocks_end <= time.time():
        return None
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


def read_switches(pipe: redis.client.Pipeline) -> None:
    """Add what `refusal_from` reads to a caller's pipeline (admission sends it with the rate
    limit's spend): two replies, in this order."""
    pipe.get(BLOCKS_END_KEY)
    pipe.get(PAUSE_KEY)


def refusal_from(
    session_key: str | None, client_ip: str | None, blocks_end: bytes | None, banner: bytes | None
) -> Refusal | None:
    """Why an operator control turns this visitor away right now, if it does, from the
    replies of `read_switches`."""
    block = active_block(
        session_key, client_ip, blocks_end=float(blocks_end) if blocks_end is not None else None
    )
    if block is not None:
        until = block.expires.astimezone(UTC)
        # Translators: a date format (Django's "date" filter letters): 05 Mar.
        day = dateformat.format(until, pgettext("the day a block ends", "d M"))
        message = gettext("New questions from you are blocked until %(time)s UTC on %(day)s.") % {
            "time": until.strftime("%H:%M"),
            "day": day,
        }
        return Refusal("blocked", message, status=403)
    if banner is not None:
        return Refusal("paused", _text(banner) or "", status=503)
    return None


# --- templates ------------------------------------------------------------------------------


def banner_context(request: HttpRequest) -> dict[str, Any]:
    """The pause banner for every page (context processor); a Redis hiccup hides it."""
    try:
        return {"intake_banner": pause_banner()}
    except redis.RedisError:
        return {"intake_banner": None}
