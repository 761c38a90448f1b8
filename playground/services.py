"""The one place that orchestrates the database, the queue, inference and live events.

Views, consumers, tasks and commands call in here and stay thin. Data flows one way:
submit (POST) → queued row → dispatch (slot lease) → Celery task → TGI stream → tag parser →
persist (Redis log, then the row) → publish (channel layer) → consumer → browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import IntegrityError, close_old_connections, connections, transaction
from django.db.models import Count, Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnavailable

from inference.backends import open_client, protocol_of
from inference.chat import fit_answer, fit_chat
from inference.client import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    OverloadedError,
    SamplingParams,
)
from inference.parser import Delta, Sections, TagParser, merge_deltas
from inference.prompt import DEFAULT_SYSTEM_PROMPT, Turn, build_prompt, fit_history
from playground import aio, answer_checks, controls, limits, live, metrics, scheduler
from playground.models import (
    Conversation,
    Message,
    SamplePrompt,
    new_share_token,
)
from playground.visitors import limit_key

log = logging.getLogger(__name__)

# The longest Retry-After a full line tells a visitor to wait.
QUEUE_FULL_RETRY_CAP = 600
OVERLOAD_RETRIES = 6
OVERLOAD_BACKOFF_SECONDS = 0.5
CANCEL_POLL_SECONDS = 0.1
CANCEL_WAIT_SECONDS = 3.0
SERVICE_TIMES_KEY = "pg:service-times"
# How long a finished generation keeps trying to tell its viewers when Redis is away; past
# it, the web processes' sweep tells them from the database (playground/viewers.py).
ANNOUNCE_PATIENCE_SECONDS = 30.0
# A lease renewal that failed (Redis away) is tried again this soon.
LEASE_RETRY_SECONDS = 1.0
# How long the reconciler remembers having found a lease missing (far longer than its period).
LEASE_MISSING_MEMORY_SECONDS = 300

# What a Redis that cannot be reached raises, as the broker (Celery) or as itself.
OUTAGE_ERRORS = (*live.REDIS_DOWN, BrokerUnavailable)

ERROR_MESSAGES = {
    "overloaded": "The model server is overloaded right now. Please try again in a minute.",
    "validation": "The model server rejected this request.",
    "generation": "The model server failed while writing this answer.",
    "incomplete_stream": "The connection to the model server broke off before the answer "
    "was complete.",
    "backend_unavailable": "The model server could not be reached.",
    "backend_timeout": "The model server stopped responding.",
    "bad_stream": "The model server sent an answer the playground could not read.",
    "backend_error": "The model server reported an error.",
    "worker_lost": "The worker writing this answer stopped before it finished.",
    "revoked": "This share link was turned off by its owner.",
    "no_backend": "No model server is available.",
}


class PlaygroundError(Exception):
    """A refusal a visitor can act on: rendered as JSON by the API and as text on pages."""

    def __init__(
        self, code: str, message: str, status: int = 400, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after


class NotFound(PlaygroundError):
    def __init__(self, what: str = "conversation") -> None:
        super().__init__("not_found", f"No such {what}.", status=404)


# --- reading ----------------------------------------------------------------------------------


def get_owned_conversation(conversation_id: str, session_key: str | None) -> Conversation:
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is None or not session_key or conversation.session_key != session_key:
        # Someone else's conversation looks exactly like a missing one.
        raise NotFound()
    return conversation


def get_owned_message(message_id: str, session_key: str | None) -> Message:
    message = Message.objects.select_related("conversation").filter(pk=message_id).first()
    if message is None or not session_key or message.conversation.session_key != session_key:
        raise NotFound("message")
    return message


def get_shared_conversation(token: str) -> Conversation:
    conversation = Conversation.objects.filter(share_token=token).first() if token else None
    if conversation is None:
        raise NotFound()
    return conversation


def note_presence(messages: list[Message]) -> None:
    """The owner is looking (a poll or a page load): their waiting messages are not abandoned."""
    for message in messages:
        if message.role == Message.Role.ASSISTANT and message.status == Message.Status.QUEUED:
            live.touch(message.pk)


def can_view(message: Message, *, session_key: str | None, share_token: str | None) -> bool:
    conversation = message.conversation
    if share_token:
        return conversation.share_token == share_token
    return bool(session_key) and conversation.session_key == session_key


def samples() -> list[SamplePrompt]:
    return list(SamplePrompt.objects.filter(enabled=True))


# --- submitting -------------------------------------------------------------------------------


def _storable(text: str) -> bool:
    # Lone surrogates cannot be encoded and PostgreSQL refuses NUL: reject both up front
    # rather than fail inside the database.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def clean_prompt(prompt: Any) -> str:
    if not isinstance(prompt, str):
        raise PlaygroundError("invalid_params", "The prompt must be a string.")
    if not _storable(prompt):
        raise PlaygroundError("invalid_params", "The prompt contains characters that are not text.")
    text = prompt.strip()
    if not text:
        raise PlaygroundError("empty_prompt", "Write a prompt first.")
    if len(text) > settings.PROMPT_MAX_CHARS:
        raise PlaygroundError(
            "prompt_too_long",
            f"Prompts are limited to {settings.PROMPT_MAX_CHARS} characters "
            f"(this one has {len(text)}).",
        )
    return text


def resolve_prompt(*, prompt: Any = None, sample: Any = None) -> tuple[str, str]:
    """Return (prompt text, sample slug) from either a free prompt or a sample slug."""
    if sample not in (None, ""):
        if not isinstance(sample, str):
            raise PlaygroundError("invalid_params", "The sample must be a slug string.")
        valid = re.fullmatch(r"[-a-zA-Z0-9_]{1,64}", sample)
        found = SamplePrompt.objects.filter(slug=sample, enabled=True).first() if valid else None
        if found is None:
            raise PlaygroundError("unknown_sample", "There is no such sample prompt.")
        return found.prompt, found.slug
    if prompt is None:
        raise PlaygroundError("empty_prompt", "Write a prompt or pick a sample.")
    return clean_prompt(prompt), ""


@metrics.counting_refusals
def _check_admission(session_key: str, client_ip: str | None) -> int:
    """Refuse what the site must not take; return how many wait in line."""
    # Operators' blocks and pause come first: a blocked visitor must not use up rate budget.
    refusal = controls.refusal(session_key, client_ip)
    if refusal is not None:
        raise PlaygroundError(refusal.code, refusal.message, status=refusal.status)
    if not scheduler.backends():
        raise PlaygroundError("no_backend", ERROR_MESSAGES["no_backend"], status=503)
    wait = limits.take(limit_key(client_ip))
    if wait:
        raise PlaygroundError(
            "rate_limited",
            f"Too many questions from your network in a short time. Please try again in "
            f"{format_duration(wait)}.",
            status=429,
            retry_after=wait,
        )
    load = _active_load(session_key, client_ip)
    if load["session"]:
        raise PlaygroundError(
            "already_generating",
            "You already have an answer being written. Wait for it or stop it first.",
            status=409,
        )
    if load["ip"] >= settings.IP_MAX_ACTIVE:
        raise PlaygroundError(
            "rate_limited",
            "Too many answers are being written for your network at once. "
            "Please wait for one to finish.",
            status=429,
            retry_after=30,
        )
    waiting = load["waiting"]
    if waiting >= settings.QUEUE_MAX_WAITING:
        # Told to come back once the line as it stands has got through: sooner, and everyone
        # turned away would come back to a line that is still full.
        wait = max(1, min(math.ceil(estimate_wait_for_new_arrival()), QUEUE_FULL_RETRY_CAP))
        raise PlaygroundError(
            "queue_full",
            f"The line is full right now ({waiting} people waiting, about "
            f"{format_duration(wait)} to get through). Please try again in a little while.",
            status=429,
            retry_after=wait,
        )
    return waiting


def _active_load(session_key: str, client_ip: str | None) -> dict[str, int]:
    """This visitor's and this address's active answers and the length of the line, counted
    in one query over the active rows (admission runs on every submission of a rush).
    Clients whose address could not be read count as one address."""
    same_address = Q(client_ip=client_ip) if client_ip else Q(client_ip__isnull=True)
    counts = Message.objects.filter(
        role=Message.Role.ASSISTANT, status__in=Message.ACTIVE
    ).aggregate(
        session=Count("pk", filter=Q(session_key=session_key)),
        waiting=Count("pk", filter=Q(status=Message.Status.QUEUED, dispatched_at__isnull=True)),
        ip=Count("pk", filter=same_address),
    )
    return {key: int(value or 0) for key, value in counts.items()}


ALREADY_GENERATING = "You already have an answer being written. Wait for it or stop it first."


def submit(
    *,
    session_key: str,
    client_ip: str | None,
    prompt: Any = None,
    sample: Any = None,
    conversation: Conversation | None = None,
) -> Message:
    """Queue a new question (a new conversation, or a follow-up turn) and return the answer row."""
    text, slug = resolve_prompt(prompt=prompt, sample=sample)
    waiting = _check_admission(session_key, client_ip)

    def create() -> Message:
        nonlocal conversation
        if conversation is None:
            conversation = Conversation.objects.create(
                session_key=session_key, client_ip=client_ip, title=_title_for(text)
            )
            # Written a moment ago, its `updated` needs no second write.
            return _ask(conversation, text, slug, session_key, client_ip, touch=False)
        return _ask(conversation, text, slug, session_key, client_ip)

    return _create_and_dispatch(create, line_was_empty=not waiting)


def _ask(
    conversation: Conversation,
    text: str,
    slug: str,
    session_key: str,
    client_ip: str | None,
    *,
    touch: bool = True,
) -> Message:
    """A new question in a conversation and its queued answer."""
    question = Message.objects.create(
        conversation=conversation,
        role=Message.Role.USER,
        prompt=text,
        sample_slug=slug,
        status=Message.Status.DONE,
        session_key=session_key,
        client_ip=client_ip,
    )
    return _queue_answer(question, session_key, client_ip, touch=touch)


def _queue_answer(
    question: Message, session_key: str, client_ip: str | None, *, touch: bool = True
) -> Message:
    """`touch`: move the conversation to the top of its owner's history."""
    if touch:
        Conversation.objects.filter(pk=question.conversation_id).update(updated=timezone.now())
    return Message.objects.create(
        conversation_id=question.conversation_id,
        role=Message.Role.ASSISTANT,
        reply_to=question,
        prompt=question.prompt,
        sample_slug=question.sample_slug,
        status=Message.Status.QUEUED,
        session_key=session_key,
        client_ip=client_ip,
        created=max(timezone.now(), question.created),
    )


# The line is ordered by `created`, so rows must commit in the order of their `created`: a row
# stamped earlier but committed later would slip in ahead of visitors already told their place
# (the bench saw three places rise with two web processes on PostgreSQL). SQLite's IMMEDIATE
# transactions admit one writer at a time anyway; on PostgreSQL the transactions that put a
# question in line take turns on a lock that their commit releases.
LINE_LOCK_KEY = 0x5047_4C4E  # any constant of this application's own


def _take_a_place_in_line() -> None:
    connection = connections["default"]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LINE_LOCK_KEY])


def _back_in_line(message: Message) -> bool:
    """Return a message to its old place in line, under the line's turn like a new question."""
    with transaction.atomic():
        _take_a_place_in_line()
        return message.requeue()


def _create_and_dispatch(create: Any, *, line_was_empty: bool) -> Message:
    """`line_was_empty`: nobody waited when admission looked. Under a rush somebody does, and
    the question joins the line without looking for a slot of its own."""
    leased_on: str | None = None
    try:
        try:
            with transaction.atomic():
                _take_a_place_in_line()
                answer = create()
                if line_was_empty:
                    leased_on = _slot_for_the_head_of_the_line(answer)
        except BaseException:
            # The commit failed after the lease: nobody will run this answer.
            if leased_on is not None:
                scheduler.release_slot(leased_on, answer.pk)
            raise
    except IntegrityError:
        # The partial unique index on active answers per session lost a race to a double submit.
        metrics.record_rejected("already_generating")
        raise PlaygroundError("already_generating", ALREADY_GENERATING, status=409) from None
    try:
        if leased_on is not None:
            from playground import tasks  # the task module imports this one

            tasks.generate.delay(answer.pk)
        else:
            dispatch()
    except OUTAGE_ERRORS:
        # The question is in line (committed): the reconciler dispatches it, or puts it back
        # in line if its task was lost, once Redis answers again. Nothing to refuse.
        log.warning("could not dispatch %s after queueing it", answer.pk, exc_info=True)
    metrics.record_admitted()
    # Read back with its conversation: dispatch may have given it a slot, and every caller
    # answers with the conversation too.
    return Message.objects.select_related("conversation").get(pk=answer.pk)


def _slot_for_the_head_of_the_line(answer: Message) -> str | None:
    """A free slot for a question that nobody waits ahead of, leased inside the transaction
    that puts it in line; None when someone waits ahead, every slot is busy, or the site drains.

    On an idle site this is the whole dispatch: no dispatch lock, no pass over the line and
    no second write, which spared an idle visitor's first token several milliseconds. Order
    holds because the line cannot change behind this check: the transaction has the line's
    turn (SQLite's single writer, or the lock on PostgreSQL) until it commits, so nobody joins
    the line meanwhile, and anyone already waiting makes this return None and the ordinary
    pass serve the line oldest first after the commit.
    """
    if _waiting().exclude(pk=answer.pk).exists() or controls.draining():
        return None
    backend = with_leases(scheduler.acquire_slot, answer.pk)
    if backend is None:
        return None
    try:
        answer.mark_dispatched(backend)
    except BaseException:
        scheduler.release_slot(backend, answer.pk)
        raise
    return backend


def regenerate(answer: Message, *, session_key: str, client_ip: str | None) -> Message:
    """A new answer to the same question; the old one stays as an alternative."""
    question = answer.reply_to
    if answer.role != Message.Role.ASSISTANT or question is None or question.superseded:
        raise NotFound("message")
    if not answer.is_final:
        raise PlaygroundError("already_generating", ALREADY_GENERATING, status=409)
    waiting = _check_admission(session_key, client_ip)

    def create() -> Message:
        Message.objects.filter(pk=question.pk).update(selected_answer=None)
        return _queue_answer(question, session_key, client_ip)

    return _create_and_dispatch(create, line_was_empty=not waiting)


def select_answer(answer: Message) -> None:
    """Show (and send back to the model in follow-ups) this alternative for its question."""
    if answer.role != Message.Role.ASSISTANT or answer.reply_to_id is None:
        raise NotFound("message")
    Message.objects.filter(pk=answer.reply_to_id).update(selected_answer=answer)


def last_question(conversation: Conversation) -> Message | None:
    return (
        conversation.messages.filter(role=Message.Role.USER, superseded=False)
        .order_by("-created")
        .first()
    )


def edit_last_prompt(
    conversation: Conversation, *, session_key: str, client_ip: str | None, prompt: Any
) -> Message:
    """Replace the last question with an edited one and answer it afresh."""
    text = clean_prompt(prompt)
    question = last_question(conversation)
    if question is None:
        raise NotFound("message")
    if question.answers.filter(status__in=Message.ACTIVE).exists():
        raise PlaygroundError("already_generating", ALREADY_GENERATING, status=409)
    waiting = _check_admission(session_key, client_ip)

    def create() -> Message:
        Message.objects.filter(pk=question.pk).update(superseded=True)
        if conversation.title == _title_for(question.prompt):
            # The title was the old question's own words: they go too (a rename stays).
            conversation.title = _title_for(text)
            conversation.save(update_fields=["title"])
        return _ask(conversation, text, "", session_key, client_ip)

    return _create_and_dispatch(create, line_was_empty=not waiting)


# --- keeping, sharing and forgetting conversations --------------------------------------------

HISTORY_LIMIT = 100


def history(session_key: str | None) -> list[Conversation]:
    if not session_key:
        return []
    return list(
        Conversation.objects.filter(session_key=session_key).order_by("-updated")[:HISTORY_LIMIT]
    )


def rename(conversation: Conversation, title: Any) -> Conversation:
    if not isinstance(title, str) or not _storable(title):
        raise PlaygroundError("invalid_params", "The title must be text.")
    cleaned = " ".join(title.split())
    if not cleaned:
        raise PlaygroundError("invalid_params", "The title cannot be empty.")
    if len(cleaned) > 200:
        raise PlaygroundError("invalid_params", "Titles are limited to 200 characters.")
    conversation.title = cleaned
    conversation.save(update_fields=["title"])
    return conversation


def delete_conversation(conversation: Conversation) -> None:
    """Forget a conversation: stop what is still generating, then delete it and its link."""
    for message in conversation.messages.filter(
        role=Message.Role.ASSISTANT, status__in=Message.ACTIVE
    ):
        live.request_cancel(message.pk)
        holds_unused_slot = message.status == Message.Status.QUEUED and message.backend
        if message.cancel():
            live.publish(message.pk, {"type": "cancelled"})
            if holds_unused_slot:
                # Its worker has not started and will find no row: hand the slot on now.
                # (A running answer's worker releases its own slot when it stops.)
                scheduler.release_slot(message.backend, message.pk)
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
    _quietly(
        lambda: live.publish_many([(pk, revoked) for pk in live_answers]), "close shared streams"
    )


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


def _title_for(prompt: str) -> str:
    line = " ".join(prompt.split())
    return line if len(line) <= 80 else line[:79].rstrip() + "…"


# --- dispatching onto the backends ------------------------------------------------------------


DISPATCH_LOCK_KEY = "pg:dispatch-lock"
DISPATCH_WANTED_KEY = "pg:dispatch-wanted"


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
    if controls.draining():
        # An operator drains: what runs finishes, nothing new starts, the line keeps its order.
        return 0
    if not with_leases(scheduler.any_free_slot):
        # Whoever frees a slot dispatches next, and this message was committed before the
        # look: either the look sees the freed slot or the freeing side sees this message.
        return 0
    client = live.redis_client()
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
    from playground import tasks  # the task module imports this one

    started = 0
    while True:
        message = _waiting().order_by("created", "id").first()
        if message is None:
            break
        if is_abandoned(message):
            message.abandon()
            continue
        backend = with_leases(scheduler.acquire_slot, message.pk)
        if backend is None:
            break
        if not message.mark_dispatched(backend):
            scheduler.release_slot(backend, message.pk)
            continue
        tasks.generate.delay(message.pk)
        started += 1
    return started


def is_abandoned(message: Message) -> bool:
    """Nobody has watched this waiting message for longer than the grace period.

    An open stream counts as watching: its web process says so every few seconds. An answer
    that had started before it was put back in line (a restart) has had its turn: it is
    written whether or not anyone is watching now."""
    if message.attempts:
        return False
    seen = live.last_seen(message.pk)
    last = max(seen or 0.0, message.created.timestamp())
    return time.time() - last > settings.ABANDON_GRACE_SECONDS


T = TypeVar("T")


def with_leases(look: Callable[..., T], *args: Any) -> T:
    """`look` at (or take) the slot leases, first restoring what Redis lost if it restarted
    empty (`scheduler.LeasesLost`)."""
    try:
        return look(*args)
    except scheduler.LeasesLost:
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
    live.touch_many(waiting_line())
    scheduler.restore_leases(holders)
    log.log(
        logging.WARNING if holders else logging.INFO,
        "Redis started empty: %d slot leases restored from the database",
        len(holders),
    )


# --- the generation itself --------------------------------------------------------------------


@dataclass
class Outcome:
    status: str = Message.Status.DONE
    error_code: str = ""
    error_message: str = ""
    finish_reason: str = ""
    tokens: int = 0
    generated_tokens: int | None = None
    first_token_at: datetime | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    sections: dict[str, Any] = field(default_factory=dict)
    requeue: bool = False
    interrupted: bool = False  # the worker is shutting down: back in line, to start afresh
    handed_on: bool = False  # the slot was released and the line dispatched already


def chosen_answer(question: Message, answers: list[Message]) -> Message | None:
    """The answer shown for a question: the visitor's pick, else the newest."""
    for answer in answers:
        if answer.pk == question.selected_answer_id:
            return answer
    return answers[-1] if answers else None


def conversation_history(message: Message) -> list[Turn]:
    """Earlier turns as the model should see them: each question with the *output* of its
    chosen finished answer. Thinking is left out on purpose: it would crowd the context and
    the model card's format treats it as scratch work."""
    question_of_this = message.reply_to
    earlier = list(
        Message.objects.filter(
            conversation_id=message.conversation_id,
            role=Message.Role.USER,
            superseded=False,
            created__lt=question_of_this.created if question_of_this else message.created,
        ).order_by("created")
    )
    if not earlier:
        return []  # a first question: nothing more to read on the way to its first token
    finished: dict[str, list[Message]] = {}
    answers = Message.objects.filter(
        reply_to__in=[question.pk for question in earlier], status=Message.Status.DONE
    ).order_by("created")
    for answer in answers:
        finished.setdefault(answer.reply_to_id, []).append(answer)
    turns: list[Turn] = []
    for question in earlier:
        answer = chosen_answer(question, finished.get(question.pk, []))
        output = (answer.sections or {}).get("output", "").strip() if answer else ""
        if output:
            turns.append(Turn(user=question.prompt, assistant=output))
    return turns


def build_model_prompt(message: Message, info: dict, *, protocol: str = "tgi") -> tuple[str, int]:
    """The prompt for a message and how many old turns had to be left out.

    For TGI the Llama 3.1 prompt string; for an OpenAI-compatible server (`protocol="openai"`)
    a `ChatPrompt`: the same string, carrying the chat messages and model id that are sent.
    """
    system_prompt = settings.SYSTEM_PROMPT or DEFAULT_SYSTEM_PROMPT
    history = conversation_history(message)
    if protocol == "openai":
        return fit_chat(
            message.prompt,
            history,
            system_prompt=system_prompt,
            max_input_tokens=info.get("max_input_tokens"),
            max_total_tokens=info.get("max_total_tokens"),
            max_new_tokens=settings.MAX_NEW_TOKENS,
            model=info.get("model_id"),
        )
    budget = int(info.get("max_input_tokens") or 8191)
    kept, dropped = fit_history(message.prompt, history, budget, system_prompt)
    return build_prompt(message.prompt, kept, system_prompt), dropped


def sampling_params() -> SamplingParams:
    return SamplingParams(max_new_tokens=settings.MAX_NEW_TOKENS)


def run_generation(message_id: str) -> None:
    """Generate one answer. Safe to call twice for the same message: only one claim wins."""
    message = (
        Message.objects.select_related("conversation", "reply_to").filter(pk=message_id).first()
    )
    if message is None or message.role != Message.Role.ASSISTANT:
        return
    backend = message.backend
    if not backend:
        return
    if message.is_final:
        # Cancelled after its slot was leased but before it started: pass the slot on.
        _hand_on(backend, message.pk)
        return
    if message.status != Message.Status.QUEUED:
        return  # a redelivered task: another worker is writing this answer
    if _stopping.is_set():
        # Received while this worker shuts down: the slot goes, and the answer waits in its
        # place in line for a worker that stays.
        _back_in_line(message)
        _quietly(lambda: scheduler.release_slot(backend, message.pk), "release a slot")
        return
    # Everything the generation needs is read first, so that claiming the message and
    # recording its provenance is a single write on the way to the first token.
    info = scheduler.backend_info(backend)
    protocol = protocol_of(backend)
    prompt, dropped = build_model_prompt(message, info, protocol=protocol)
    params = sampling_params()
    if protocol == "openai":
        params = fit_answer(prompt, info.get("max_total_tokens"), params)
    claimed = message.mark_running(
        model_id=str(info.get("model_id", "")),
        model_info=_provenance(info),
        sampling={**params.to_parameters(), "history_turns_dropped": dropped},
    )
    if not claimed:
        if message.is_final:
            _hand_on(backend, message.pk)
        return
    outcome = None
    try:
        outcome = aio.run(_generate(message, prompt, params, info))
    except Exception:
        log.exception("generation of %s crashed", message_id)
        if message.fail("worker_error", "The playground failed while writing this answer."):
            _quietly(lambda: live.publish(message.pk, _final_event(message)), "announce the end")
    finally:
        close_old_connections()
    if outcome is None or not outcome.handed_on:
        _quietly(lambda: scheduler.release_slot(backend, message.pk), "release a slot")
        if outcome is not None and outcome.requeue:
            _quietly(publish_queue_positions, "publish the line")
        if not _stopping.is_set():
            _quietly(dispatch, "dispatch the line")


# Set when this worker process is shutting down (interrupt_generations).
_stopping = threading.Event()


def interrupt_generations() -> None:
    """This worker is shutting down: the answers it is writing go back in line at once, to be
    written afresh (viewers are told `restarted`), instead of being cut off mid-sentence when
    the process ends. It starts no more of them: a task it still receives puts its answer
    back in line for another worker (or this one, restarted), and it leaves dispatching the
    line to the other processes and the reconciler."""
    _stopping.set()

    def interrupt() -> None:
        count = live.cancel_watch(CANCEL_POLL_SECONDS).interrupt_all()
        log.warning("shutting down: %d answers being written go back in line", count)

    aio.call_soon(interrupt)


def _hand_on(backend: str, message_id: str) -> None:
    """Release a slot that will not be used and give it to the next in line."""
    _quietly(lambda: scheduler.release_slot(backend, message_id), "release a slot")
    _quietly(dispatch, "dispatch the line")


def _quietly(chore: Callable[[], Any], what: str) -> None:
    """Do a Redis chore that must not fail an answer when Redis is away: a slot whose release
    is lost comes back when its lease expires, and the reconciler dispatches the line and
    tells everyone waiting their place once Redis answers again."""
    try:
        chore()
    except OUTAGE_ERRORS as exc:
        log.warning("could not %s, Redis is unreachable: %r", what, exc)


def _dispatch_from_thread() -> None:
    try:
        if not _stopping.is_set():
            _quietly(dispatch, "dispatch the line")
    finally:
        connections.close_all()


def _provenance(info: dict) -> dict:
    keys = ("model_id", "model_sha", "version", "max_input_tokens", "max_total_tokens")
    return {key: info.get(key) for key in keys if key in info}


SAMPLING_KEYS = (
    "temperature", "top_p", "top_k", "typical_p", "repetition_penalty", "frequency_penalty",
    "max_new_tokens", "do_sample", "seed", "stop",
)  # fmt: skip


def message_provenance(message: Message) -> dict[str, Any] | None:
    """Which backend and model served an answer (TGI /info) and how it sampled; None before a
    backend took it. The simulator names itself in /info's model_id."""
    if message.role != Message.Role.ASSISTANT or not (message.model_id or message.model_info):
        return None
    info = message.model_info or {}
    model_id = str(info.get("model_id") or message.model_id or "")
    sampling = message.sampling or {}
    return {
        "backend": scheduler.public_name(message.backend),
        "model_id": model_id or None,
        "model_sha": info.get("model_sha"),
        "version": info.get("version"),
        "simulated": "simulator" in model_id.lower(),
        "sampling": {key: sampling[key] for key in SAMPLING_KEYS if key in sampling},
    }


async def _generate(message: Message, prompt: str, params: SamplingParams, info: dict) -> Outcome:
    """One event loop for the whole generation: read TGI, parse, coalesce, persist, publish."""
    message_id, backend = message.pk, message.backend
    publisher = live.StreamPublisher(message_id)
    outcome = Outcome()
    await publisher.start(
        {
            "type": "started",
            "backend": scheduler.public_name(backend),
            "model": info.get("model_id", ""),
            "attempt": message.attempts,
        }
    )
    await _stream_answer(publisher, outcome, backend, prompt, params)
    if await publisher.cancel_requested():
        # The visitor's Stop wins over everything else, a worker shutting down included.
        outcome.status = Message.Status.CANCELLED
        outcome.requeue = outcome.interrupted = False
    handoff = None
    if not outcome.requeue:
        # The backend stream is closed, so its GPU slot is free now: the next in line
        # starts while this answer's bookkeeping is still being written.
        try:
            await scheduler.arelease_slot(backend, message_id)
        except live.REDIS_DOWN as exc:
            log.warning("could not release the slot of %s: %r", message_id, exc)
        handoff = asyncio.create_task(asyncio.to_thread(_dispatch_from_thread))
        outcome.handed_on = True
    outcome.events = publisher.events
    outcome.sections = _sections_of(outcome.events)
    announcement = await asyncio.to_thread(_persist_outcome, message_id, outcome)
    await publisher.finish(announcement, ANNOUNCE_PATIENCE_SECONDS)
    if handoff is not None:
        await handoff
    return outcome


async def _stream_answer(
    publisher: live.StreamPublisher,
    outcome: Outcome,
    backend: str,
    prompt: str,
    params: SamplingParams,
) -> None:
    loop = asyncio.get_running_loop()
    parser = TagParser()
    pending: list[Delta] = []
    wake = asyncio.Event()
    reading_done = False
    interval = settings.STREAM_FLUSH_INTERVAL
    publishing = asyncio.Lock()
    next_flush_at = loop.time()

    async def flush() -> None:
        # Everything pending goes out as one publish, in order: one publish at a time.
        nonlocal next_flush_at
        async with publishing:
            batch = merge_deltas(pending)
            pending.clear()
            if batch:
                await publisher.publish_deltas(batch)
                next_flush_at = loop.time() + interval

    async def flush_forever() -> None:
        # Publishes what arrived within the interval after a publish, merged into one delta.
        while True:
            await wake.wait()
            delay = next_flush_at - loop.time()
            if delay > 0 and not reading_done:
                await asyncio.sleep(delay)
            wake.clear()
            await flush()
            if reading_done and not pending:
                return

    async def read() -> None:
        # TGI's /generate_stream, or an OpenAI-compatible chat route for `openai+` backends:
        # both clients yield the same events and raise the same BackendErrors.
        async with open_client(
            backend,
            connect_timeout=settings.TGI_CONNECT_TIMEOUT,
            read_timeout=settings.TGI_READ_TIMEOUT,
            api_key=settings.TGI_API_KEY,
        ) as client:
            for attempt in range(OVERLOAD_RETRIES + 1):
                try:
                    async with client.generate_stream(prompt, params) as events:
                        async for event in events:
                            if outcome.first_token_at is None:
                                outcome.first_token_at = timezone.now()
                            outcome.tokens += 1
                            if event.text:
                                pending.extend(parser.feed(event.text))
                                due = loop.time() >= next_flush_at and not publishing.locked()
                                if pending and due:
                                    # A token after a quiet spell goes out from the reader
                                    # itself: a hop to the flusher task would wait for every
                                    # other stream the loop serves.
                                    await flush()
                                elif pending:
                                    wake.set()
                            if event.finish_reason is not None:
                                outcome.finish_reason = event.finish_reason
                                outcome.generated_tokens = event.generated_tokens
                    return
                except OverloadedError:
                    # TGI refuses at once when its own semaphore is full (another client may
                    # share it). Nothing was written yet, so waiting and retrying loses nothing.
                    if outcome.tokens or attempt == OVERLOAD_RETRIES:
                        raise
                    await asyncio.sleep(OVERLOAD_BACKOFF_SECONDS * 2**attempt)

    # The watcher is stopped by this event, never by cancelling it: redis-py can swallow a
    # cancellation that lands during a command, and a watcher that lived on in the worker's
    # shared loop would renew the lease of a finished answer, holding its GPU slot.
    stop_watching = False
    wake_watcher = asyncio.Event()
    cancels = live.cancel_watch(CANCEL_POLL_SECONDS)

    async def watch() -> None:
        # Cooperative stop (the loop's cancel watch wakes it) and lease renewal.
        renew_every = scheduler.lease_seconds() / 3
        renewed = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake_watcher.wait(), renewed + renew_every - loop.time())
            if stop_watching:
                return
            if cancels.cancelled(publisher.message_id):
                # A Stop, or this worker shutting down: then the answer goes back in line.
                outcome.interrupted = outcome.requeue = cancels.interrupted(publisher.message_id)
                reader.cancel()
                return
            if loop.time() - renewed >= renew_every:
                try:
                    await scheduler.arenew_slot(backend, publisher.message_id)
                    renewed = loop.time()
                except live.REDIS_DOWN as exc:
                    # Again in a second: the lease must be back soon after Redis is.
                    log.warning("could not renew the lease of %s: %r", publisher.message_id, exc)
                    renewed = loop.time() - renew_every + LEASE_RETRY_SECONDS

    flusher = asyncio.create_task(flush_forever())
    reader = asyncio.create_task(read())
    cancels.watch(publisher.message_id, wake_watcher)
    watcher = asyncio.create_task(watch())
    try:
        await reader
    except asyncio.CancelledError:
        if not reader.cancelled():
            raise
        if not outcome.interrupted:
            outcome.status = Message.Status.CANCELLED
    except BackendError as exc:
        _record_backend_error(outcome, backend, exc)
    finally:
        cancels.unwatch(publisher.message_id)
        stop_watching = True
        wake_watcher.set()
        pending.extend(parser.close())
        reading_done = True
        wake.set()
        await flusher
        try:
            await watcher
        except Exception:
            # Its last lease renewal or cancel check failed; the answer itself is unaffected.
            log.warning("the watcher of %s failed", publisher.message_id, exc_info=True)
    if outcome.status == Message.Status.DONE and not outcome.finish_reason:
        outcome.status = Message.Status.ERROR
        outcome.error_code = "incomplete_stream"
        outcome.error_message = ERROR_MESSAGES["incomplete_stream"]


def _record_backend_error(outcome: Outcome, backend: str, exc: BackendError) -> None:
    # What the backend said is for operators (the log); visitors get a sentence of ours. A
    # backend's error body can hold anything: internal addresses, stack traces, model paths.
    log.warning("backend %s failed an answer (%s): %s", backend, exc.code, exc)
    if isinstance(exc, BackendUnavailableError | BackendTimeoutError):
        _quietly(lambda: scheduler.mark_down(backend, str(exc)), "take a backend out of rotation")
        if outcome.tokens == 0:
            # The answer never started: put it back in line (same place) for another backend
            # or for this one when it comes back, instead of failing the visitor at once.
            outcome.requeue = True
    outcome.status = Message.Status.ERROR
    outcome.error_code = exc.code
    outcome.error_message = ERROR_MESSAGES.get(exc.code, ERROR_MESSAGES["backend_error"])


def _persist_outcome(message_id: str, outcome: Outcome) -> dict[str, Any] | None:
    """Write the end of a generation to its row; return the event to announce, if any (the
    final one, or `restarted` when the answer went back in line)."""
    try:
        message = Message.objects.filter(pk=message_id).first()
        if message is None:
            # The visitor deleted the conversation while it was being written.
            return {"type": "cancelled"}
        tokens = outcome.generated_tokens or outcome.tokens or None
        patience = timedelta(seconds=settings.BACKEND_OUTAGE_PATIENCE)
        within_patience = timezone.now() - message.created < patience
        if outcome.requeue and (outcome.interrupted or within_patience):
            if _back_in_line(message):
                return restarted_event(message)
            message.refresh_from_db()
            return _final_event(message) if message.is_final else None
        if outcome.status == Message.Status.DONE:
            if not message.finish(
                sections=outcome.sections,
                deltas=outcome.events,
                tokens=tokens,
                finish_reason=outcome.finish_reason,
                first_token_at=outcome.first_token_at,
            ):
                # Cancelled while the last tokens arrived: keep the text under the cancel.
                message.store_partial(
                    sections=outcome.sections,
                    deltas=outcome.events,
                    tokens=tokens,
                    first_token_at=outcome.first_token_at,
                )
                message.refresh_from_db()
                return _final_event(message)
            _record_service_time(message)
        elif outcome.status == Message.Status.CANCELLED:
            message.cancel(
                sections=outcome.sections,
                deltas=outcome.events,
                tokens=tokens,
                first_token_at=outcome.first_token_at,
            )
        else:
            message.fail(
                outcome.error_code,
                outcome.error_message,
                sections=outcome.sections,
                deltas=outcome.events,
                tokens=tokens,
                first_token_at=outcome.first_token_at,
            )
        message.refresh_from_db()
        return _final_event(message)
    finally:
        # This runs in a helper thread of the generation's event loop: leave no connection open.
        connections.close_all()


def _record_service_time(message: Message) -> None:
    if message.started_at and message.finished_at:
        seconds = (message.finished_at - message.started_at).total_seconds()
        pipe = live.redis_client().pipeline(transaction=False)
        pipe.lpush(SERVICE_TIMES_KEY, f"{seconds:.3f}")
        pipe.ltrim(SERVICE_TIMES_KEY, 0, scheduler.SERVICE_SAMPLES - 1)
        _quietly(pipe.execute, "record a service time")


def _final_event(message: Message) -> dict[str, Any]:
    """The event that ends a message's stream. Each carries `seq`, the last seq of the
    answer, so a viewer can tell whether it has every delta (see the consumer)."""
    seq = len(message.deltas) if message.role == Message.Role.ASSISTANT else 0
    if message.status == Message.Status.DONE:
        # "check" and "provenance" extend DESIGN 4.3 (see README, Public contracts).
        return {
            "type": "done",
            "stats": message_stats(message),
            "check": answer_checks.check(message),
            "provenance": message_provenance(message),
            "seq": seq,
        }
    if message.status == Message.Status.CANCELLED:
        return {"type": "cancelled", "seq": seq}
    return {
        "type": "error",
        "code": message.error_code or "error",
        "message": message.error_message or "The answer failed.",
        "seq": seq,
    }


def restarted_event(message: Message) -> dict[str, Any]:
    """An answer that had started is back in line and will be written again from the
    beginning, as attempt `attempt`: viewers drop what they have of it (seq starts at 1)."""
    return {"type": "restarted", "attempt": message.attempts + 1}


# --- cancelling -------------------------------------------------------------------------------


def cancel(message: Message) -> Message:
    """Stop a message. Queued: it leaves the line at once. Running: the worker notices within
    a fraction of a second, closes the backend stream (freeing the GPU slot), stores the text
    written so far and announces the end; this waits for that, so the answer returned (and
    what any viewer sees) is the final one. A worker that does not respond in time (it died)
    is overruled from the persisted delta log."""
    if message.role != Message.Role.ASSISTANT or message.is_final:
        return message
    live.request_cancel(message.pk)
    if message.status == Message.Status.QUEUED and message.cancel():
        live.publish(message.pk, {"type": "cancelled"})
        publish_queue_positions()
    else:
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        while time.monotonic() < deadline:
            message.refresh_from_db()
            if message.is_final:
                return message
            time.sleep(0.05)
        events = live.read_delta_log(message.pk)
        if message.cancel(sections=_sections_of(events), deltas=events):
            live.publish(message.pk, {"type": "cancelled"})
    message.refresh_from_db()
    return message


def _sections_of(events: list[dict[str, Any]]) -> dict[str, Any]:
    sections = Sections()
    for event in events:
        sections.apply(Delta(event["section"], event["text"], event.get("index")))
    return sections.as_dict()


# --- the line: positions, estimates, status ---------------------------------------------------


def _mean_service_seconds() -> float:
    samples = [float(value) for value in live.redis_client().lrange(SERVICE_TIMES_KEY, 0, -1)]
    return sum(samples) / len(samples) if samples else scheduler.DEFAULT_SERVICE_SECONDS


def queue_snapshot() -> scheduler.QueueSnapshot:
    now = timezone.now()
    in_flight = Message.objects.filter(
        role=Message.Role.ASSISTANT, status__in=Message.ACTIVE, dispatched_at__isnull=False
    ).values_list("started_at", flat=True)
    elapsed = [(now - started).total_seconds() if started else 0.0 for started in in_flight]
    return scheduler.QueueSnapshot(
        running_elapsed=elapsed,
        capacity=scheduler.capacity(),
        mean_service=_mean_service_seconds(),
    )


# Every submission and every waiting viewer who connects asks where they stand; under a rush
# that is hundreds of the same database and Redis reads a second in one web process. Those
# answers reuse a snapshot this young, its running times advanced by its age. Publishing new
# places from this process (after a dispatch that started answers, a cancel, a requeue) starts
# afresh; /api/v1/status and the dashboard always read afresh.
SNAPSHOT_REUSE_SECONDS = 0.25
_recent_snapshot: tuple[float, scheduler.QueueSnapshot] | None = None


def recent_queue_snapshot() -> scheduler.QueueSnapshot:
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


def _waiting() -> Any:
    return Message.objects.filter(
        role=Message.Role.ASSISTANT, status=Message.Status.QUEUED, dispatched_at__isnull=True
    )


def waiting_count() -> int:
    """Visitors in line for a slot (those already holding one are not waiting)."""
    return _waiting().count()


def waiting_line() -> list[str]:
    return list(_waiting().order_by("created", "id").values_list("id", flat=True))


def position_of(message: Message) -> int | None:
    """1-based place in line of a waiting message; 0 once it has a slot; None when not queued."""
    if message.status != Message.Status.QUEUED:
        return None
    if message.dispatched_at is not None:
        return 0
    ahead = _waiting().filter(created__lt=message.created).count()
    return ahead + 1


def eta_for_position(position: int, snapshot: scheduler.QueueSnapshot | None = None) -> float:
    if position <= 0:
        return 0.0
    snapshot = snapshot or queue_snapshot()
    estimates = scheduler.wait_estimates(snapshot, position)
    return round(estimates[-1], 1) if estimates else 0.0


def estimate_wait_for_new_arrival() -> float:
    return eta_for_position(waiting_count() + 1)


def queue_status() -> dict[str, Any]:
    waiting = waiting_count()
    snapshot = queue_snapshot()
    return {
        "accepting": bool(scheduler.backends())
        and waiting < settings.QUEUE_MAX_WAITING
        and controls.pause_banner() is None,
        "queue": {
            "waiting": waiting,
            "running": len(snapshot.running_elapsed),
            "capacity": snapshot.capacity,
            "eta_seconds": eta_for_position(waiting + 1, snapshot),
        },
    }


def queued_event(position: int, eta: float, as_of: float) -> dict[str, Any]:
    return {"type": "queued", "position": position, "eta_seconds": round(eta, 1), "as_of": as_of}


def publish_queue_positions() -> None:
    """Tell everyone waiting where they stand now (one channel-layer round for all of them)."""
    # Taken before reading the line: several processes publish concurrently, and a viewer
    # must be able to tell a stale snapshot from a fresh one (see the consumer).
    as_of = round(time.time(), 6)
    forget_queue_snapshot()
    line = waiting_line()
    if not line:
        return
    snapshot = queue_snapshot()
    estimates = scheduler.wait_estimates(snapshot, len(line))
    live.publish_many(
        [
            (message_id, queued_event(place, eta, as_of))
            for place, (message_id, eta) in enumerate(zip(line, estimates, strict=False), start=1)
        ]
    )


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    return (
        f"{minutes} min {rest:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"
    )


# --- the JSON shapes of DESIGN 4.2 ------------------------------------------------------------


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def message_stats(message: Message) -> dict[str, Any] | None:
    if message.role != Message.Role.ASSISTANT or message.started_at is None:
        return None
    if not message.is_final:
        return None
    generating = _seconds(message.first_token_at, message.finished_at)
    tokens = message.tokens or 0
    return {
        "queue_seconds": _seconds(message.created, message.started_at),
        "ttft_seconds": _seconds(message.started_at, message.first_token_at),
        "duration_seconds": _seconds(message.started_at, message.finished_at),
        "tokens": tokens,
        "tokens_per_second": round(tokens / generating, 1) if generating else None,
        "finish_reason": message.finish_reason or None,
    }


def message_events(message: Message) -> list[dict[str, Any]]:
    """The delta log of an answer: from the row when final, else from the live log in Redis.
    A queued answer has no text yet (an earlier attempt's, if any, is not its own)."""
    if message.role != Message.Role.ASSISTANT or message.status == Message.Status.QUEUED:
        return []
    return message.deltas if message.is_final else live.read_delta_log(message.pk)


def live_sections(
    message: Message, events: list[dict[str, Any]] | None = None
) -> tuple[dict[str, Any], int]:
    """Sections and last seq of a message, from one reading of its delta log."""
    events = message_events(message) if events is None else events
    return _sections_of(events), len(events)


def stream_url(message: Message, share_token: str | None = None) -> str:
    url = f"/ws/messages/{message.pk}/"
    return f"{url}?share={share_token}" if share_token else url


def message_payload(
    message: Message,
    *,
    share_token: str | None = None,
    snapshot: scheduler.QueueSnapshot | None = None,
    events: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`events`: the delta log already read by the caller, so that the sections, the seq and
    whatever else the caller renders from the log all describe the same moment."""
    if message.role == Message.Role.USER:
        sections, seq = Sections().as_dict(), 0
    else:
        sections, seq = live_sections(message, events)
    position = position_of(message)
    if position is None:
        eta = None
    elif position > 0:
        eta = eta_for_position(position, snapshot or recent_queue_snapshot())
    else:
        eta = 0.0
    error = (
        {"code": message.error_code, "message": message.error_message}
        if message.status == Message.Status.ERROR
        else None
    )
    return {
        "id": message.pk,
        "role": message.role,
        "status": message.status,
        "position": position,
        "eta_seconds": eta,
        "stream_url": stream_url(message, share_token),
        "prompt": message.prompt,
        "sections": sections,
        "stats": message_stats(message),
        "error": error,
        "seq": seq,
        "attempt": attempt_shown(message),
        "sample": message.sample_slug or None,
        "reply_to": message.reply_to_id,
        "history_turns_dropped": (message.sampling or {}).get("history_turns_dropped", 0),
        "backend": scheduler.public_name(message.backend),
        "model": message.model_id or None,
        "created": message.created.isoformat(),
        "provenance": message_provenance(message),
        "check": answer_checks.check(message),
    }


def share_url(conversation: Conversation) -> str | None:
    return f"/s/{conversation.share_token}/" if conversation.share_token else None


def visible_messages(conversation: Conversation) -> list[Message]:
    """Questions and all their answers, in order, leaving out turns replaced by an edit."""
    messages = list(conversation.messages.order_by("created"))
    hidden = {m.pk for m in messages if m.role == Message.Role.USER and m.superseded}
    shown = [m for m in messages if m.pk not in hidden and m.reply_to_id not in hidden]
    return _in_order(shown)


def conversation_payload(conversation: Conversation) -> dict[str, Any]:
    messages = visible_messages(conversation)
    waiting = any(m.status == Message.Status.QUEUED for m in messages)
    snapshot = queue_snapshot() if waiting else None
    shown = _shown_answers(messages)
    payloads = []
    for message in messages:
        payload = message_payload(message, snapshot=snapshot)
        if message.role == Message.Role.ASSISTANT:
            payload["selected"] = message.pk in shown
        payloads.append(payload)
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "share_url": share_url(conversation),
        "messages": payloads,
    }


def _shown_answers(messages: list[Message]) -> set[str]:
    """Ids of the answer shown for each question (the visitor's pick, else the newest)."""
    answers: dict[str, list[Message]] = {}
    for message in messages:
        if message.role == Message.Role.ASSISTANT and message.reply_to_id:
            answers.setdefault(message.reply_to_id, []).append(message)
    shown = set()
    for message in messages:
        if message.role == Message.Role.USER:
            chosen = chosen_answer(message, answers.get(message.pk, []))
            if chosen is not None:
                shown.add(chosen.pk)
    return shown


def shared_payload(conversation: Conversation) -> dict[str, Any]:
    return {
        "title": conversation.title,
        "messages": [
            message_payload(m, share_token=conversation.share_token)
            for m in visible_messages(conversation)
        ],
    }


def conversation_summary(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "created": conversation.created.isoformat(),
        "updated": conversation.updated.isoformat(),
        "share_url": share_url(conversation),
    }


def _in_order(messages: list[Message]) -> list[Message]:
    """Turn by turn: each question, then its answers oldest first (a regenerated answer stays
    with its question even though it was written after later turns)."""
    asked = {m.pk: m.created for m in messages if m.role == Message.Role.USER}

    def key(message: Message) -> tuple:
        turn = asked.get(message.reply_to_id, message.created)
        if message.role == Message.Role.USER:
            return (message.created, 0, message.created)
        return (turn, 1, message.created)

    return sorted(messages, key=key)


# --- keeping the database true ------------------------------------------------------------------


def reconcile() -> dict[str, int]:
    """Repair what crashes and restarts leave behind; safe to run anywhere, any time.

    - a message dispatched or running whose slot lease is gone (its worker died, or Redis
      restarted and no worker renewed it) goes back in line if nothing was written yet, and
      fails plainly otherwise;
    - backends are probed, so one that left rotation comes back when healthy;
    - the line is dispatched and everyone waiting hears their place (at least every few s).
    """
    if not scheduler.leases_intact():
        restore_redis_state()
    for backend in scheduler.backends():
        scheduler.probe(backend)
    requeued = failed = 0
    grace = timezone.now() - timedelta(seconds=scheduler.lease_seconds())
    stale = Message.objects.filter(
        role=Message.Role.ASSISTANT,
        status__in=Message.ACTIVE,
        dispatched_at__isnull=False,
        dispatched_at__lt=grace,
    )
    for message in stale:
        if scheduler.holds_slot(message.backend, message.pk):
            live.redis_client().delete(lease_missing_key(message.pk))  # a false alarm, if any
            continue
        if not _gone_for_good(message):
            continue
        events = live.read_delta_log(message.pk)
        if events:
            # One UPDATE with the text: a reader never sees the error without what was written.
            if message.fail(
                "worker_lost",
                ERROR_MESSAGES["worker_lost"],
                sections=_sections_of(events),
                deltas=events,
            ):
                failed += 1
                live.publish(message.pk, _final_event(message))
        else:
            had_started = message.status == Message.Status.RUNNING
            if _back_in_line(message):
                requeued += 1
                if had_started:
                    # Its text, if any was shown, is lost with the log: it starts afresh.
                    live.publish(message.pk, restarted_event(message))
    # An outage, not an operator disabling backends, is what fails long-waiting work.
    if not scheduler.healthy_backends(include_disabled=True):
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
    renewal = scheduler.lease_seconds() / 3
    client = live.redis_client()
    client.set(key, f"{time.time():.3f}", nx=True, ex=LEASE_MISSING_MEMORY_SECONDS)
    noted = client.get(key)
    return noted is not None and time.time() - float(noted) >= renewal


def _fail_outage_victims() -> int:
    """With every backend down, tell those who waited longer than the patience plainly."""
    cutoff = timezone.now() - timedelta(seconds=settings.BACKEND_OUTAGE_PATIENCE)
    victims = _waiting().filter(created__lt=cutoff)
    failed = 0
    for message in victims:
        if message.fail("backend_unavailable", ERROR_MESSAGES["backend_unavailable"]):
            failed += 1
            live.publish(message.pk, _final_event(message))
    return failed


# --- what a stream viewer gets on connect -----------------------------------------------------


@dataclass
class StreamState:
    final_event: dict[str, Any] | None
    stored_events: list[dict[str, Any]]
    status_event: dict[str, Any] | None
    # Sent first when the viewer's text belongs to an earlier attempt of the answer.
    restarted_event: dict[str, Any] | None = None


def attempt_shown(message: Message) -> int:
    """The attempt whose text the stream carries now: while an answer that had started waits
    in line again, the next one (which has no text yet)."""
    if message.status == Message.Status.QUEUED and message.attempts:
        return message.attempts + 1
    return message.attempts


def started_event(message: Message) -> dict[str, Any]:
    return {
        "type": "started",
        "backend": scheduler.public_name(message.backend),
        "model": message.model_id,
        "attempt": message.attempts,
    }


def stream_state(
    message_id: str,
    *,
    session_key: str | None,
    share_token: str | None,
    after: int = 0,
    attempt: int | None = None,
) -> StreamState | None:
    """What a WebSocket viewer needs on connect, or None if they may not see the message.

    `after` and `attempt`: the last seq the viewer has, and the attempt it belongs to (sent by
    pages; a client that does not say is taken to have the current attempt's text)."""
    message = Message.objects.select_related("conversation").filter(pk=message_id).first()
    if message is None or not can_view(message, session_key=session_key, share_token=share_token):
        return None
    restarted = None
    if after > 0 and attempt is not None and attempt < attempt_shown(message):
        restarted = {"type": "restarted", "attempt": attempt_shown(message)}
    if message.is_final:
        events = message.deltas if message.role == Message.Role.ASSISTANT else []
        return StreamState(_final_event(message), events, None, restarted)
    if message.status == Message.Status.RUNNING:
        status_event = started_event(message)
    else:
        as_of = round(time.time(), 6)
        position = position_of(message) or 0
        eta = eta_for_position(position, recent_queue_snapshot())
        status_event = queued_event(position, eta, as_of)
    return StreamState(None, [], status_event, restarted)


def ended_and_shared(
    message_ids: set[str], ended_for: float
) -> tuple[set[str], dict[str, str | None]]:
    """Which of these messages ended at least `ended_for` seconds ago (or are gone), and the
    share token of each one's conversation now: what the web processes' sweep checks their
    open streams against (playground/viewers.py)."""
    rows = Message.objects.filter(pk__in=message_ids).values_list(
        "pk", "status", "finished_at", "conversation__share_token"
    )
    cutoff = timezone.now() - timedelta(seconds=ended_for)
    found = {pk: (status, finished, token) for pk, status, finished, token in rows}
    ended = {
        pk
        for pk in message_ids
        if pk not in found
        or (found[pk][0] in Message.FINAL and (found[pk][1] is None or found[pk][1] < cutoff))
    }
    return ended, {pk: token for pk, (_, _, token) in found.items()}


def final_replay(message_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
    """The stored deltas and the final event of a message that has ended, else None."""
    message = Message.objects.filter(pk=message_id).first()
    if message is None:
        return [], {"type": "cancelled", "seq": 0}
    if not message.is_final:
        return None
    events = message.deltas if message.role == Message.Role.ASSISTANT else []
    return events, _final_event(message)
