"""Putting a question in line: the prompt checked, admission (blocks, pause, rate limits,
one answer at a time, a full line), the rows written in the line's turn, and dispatch.
Also regenerating an answer and editing a question (a new version of its turn), which queue
answers the same way, and choosing which answer or version of a turn is shown.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext, ngettext

from playground import controls, limits, logs, rotation, slots
from playground.durations import format_wait
from playground.models import Conversation, Message, SamplePrompt
from playground.ops import metrics
from playground.realtime import redis_clients
from playground.services.dispatching import (
    dispatch,
    enqueue,
    remember_request_id,
    with_leases,
)
from playground.services.errors import (
    ALREADY_GENERATING,
    ERROR_MESSAGES,
    OUTAGE_ERRORS,
    NotFound,
    PlaygroundError,
)
from playground.services.line import (
    estimate_wait_for_new_arrival,
    take_a_place_in_line,
    waiting,
)
from playground.services.queries import (
    in_visitors_language,
    is_shown,
    last_question,
    questions_of,
    shown_path,
)
from playground.visitors import limit_key

log = logging.getLogger(__name__)


# The longest Retry-After a full line tells a visitor to wait.
QUEUE_FULL_RETRY_CAP = 600


def storable(text: str) -> bool:
    # Lone surrogates cannot be encoded and PostgreSQL refuses NUL: reject both up front
    # rather than fail inside the database.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def clean_prompt(prompt: str | None) -> str:
    """The prompt as it is asked: text a database can store, trimmed, not empty, not too long."""
    if prompt is None:
        raise PlaygroundError("empty_prompt", gettext("Write a prompt or pick a sample."))
    if not storable(prompt):
        raise PlaygroundError(
            "invalid_params", gettext("The prompt contains characters that are not text.")
        )
    text = prompt.strip()
    if not text:
        raise PlaygroundError("empty_prompt", gettext("Write a prompt first."))
    if len(text) > settings.PROMPT_MAX_CHARS:
        raise PlaygroundError(
            "prompt_too_long",
            gettext("Prompts are limited to %(limit)d characters (this one has %(length)d).")
            % {"limit": settings.PROMPT_MAX_CHARS, "length": len(text)},
        )
    return text


def resolve_prompt(*, prompt: str | None = None, sample: str | None = None) -> tuple[str, str]:
    """Return (prompt text, sample slug) from either a free prompt or a sample slug."""
    if sample:
        found = SamplePrompt.objects.filter(slug=sample, enabled=True).first()
        if found is None:
            raise PlaygroundError("unknown_sample", gettext("There is no such sample prompt."))
        found = in_visitors_language(found)
        return found.prompt, found.slug
    return clean_prompt(prompt), ""


@metrics.counting_refusals
def check_admission(session_key: str, client_ip: str | None) -> int:
    """Refuse what the site must not take; return how many wait in line."""
    # The operators' switches and the address's budget in one round trip. Blocks and the
    # pause come first all the same: a visitor they refuse gets the spend back, so that a
    # blocked visitor does not use up the budget of everyone else at the address.
    pipe = redis_clients.redis_client().pipeline(transaction=False)
    controls.read_switches(pipe)
    spend = limits.spend_in(pipe, limit_key(client_ip))
    blocks_end, banner, spent = pipe.execute()
    refusal = controls.refusal_from(session_key, client_ip, blocks_end, banner)
    if refusal is not None:
        limits.give_back(spend)
        raise PlaygroundError(refusal.code, refusal.message, status=refusal.status)
    if not rotation.backends():
        limits.give_back(spend)
        raise PlaygroundError("no_backend", ERROR_MESSAGES["no_backend"], status=503)
    wait = limits.seconds_to_wait(spent)
    if wait:
        raise PlaygroundError(
            "rate_limited",
            gettext(
                "Too many questions from your network in a short time. "
                "Please try again in %(wait)s."
            )
            % {"wait": format_wait(wait)},
            status=429,
            retry_after=wait,
        )
    load = _active_load(session_key, client_ip)
    if load["session"]:
        raise PlaygroundError(
            "already_generating",
            ALREADY_GENERATING,
            status=409,
        )
    if load["ip"] >= settings.IP_MAX_ACTIVE:
        raise PlaygroundError(
            "rate_limited",
            gettext(
                "Too many answers are being written for your network at once. "
                "Please wait for one to finish."
            ),
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
            ngettext(
                "The line is full right now (%(waiting)d person waiting, about %(wait)s to get "
                "through). Please try again in a little while.",
                "The line is full right now (%(waiting)d people waiting, about %(wait)s to get "
                "through). Please try again in a little while.",
                waiting,
            )
            % {"waiting": waiting, "wait": format_wait(wait)},
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


def submit(
    *,
    session_key: str,
    client_ip: str | None,
    prompt: str | None = None,
    sample: str | None = None,
    conversation: Conversation | None = None,
) -> Message:
    """Queue a new question (a new conversation, or a follow-up turn) and return the answer row."""
    text, slug = resolve_prompt(prompt=prompt, sample=sample)
    waiting = check_admission(session_key, client_ip)

    def create() -> Message:
        nonlocal conversation
        if conversation is None:
            conversation = Conversation.objects.create(
                session_key=session_key, client_ip=client_ip, title=title_for(text)
            )
            # Written a moment ago, its `updated` needs no second write.
            return _ask(conversation, text, slug, session_key, client_ip, parent=None, touch=False)
        # A follow-up follows the last question the page shows.
        parent = last_question(conversation)
        return _ask(conversation, text, slug, session_key, client_ip, parent=parent)

    return _create_and_dispatch(create, line_was_empty=not waiting)


def _ask(
    conversation: Conversation,
    text: str,
    slug: str,
    session_key: str,
    client_ip: str | None,
    *,
    parent: Message | None,
    touch: bool = True,
) -> Message:
    """A new question in a conversation, following `parent`, and its queued answer."""
    question = Message.objects.create(
        conversation=conversation,
        parent=parent,
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
        # The object, not its id: every caller answers with the conversation too.
        conversation=question.conversation,
        role=Message.Role.ASSISTANT,
        reply_to=question,
        prompt=question.prompt,
        sample_slug=question.sample_slug,
        status=Message.Status.QUEUED,
        session_key=session_key,
        client_ip=client_ip,
        created=max(timezone.now(), question.created),
    )


def _create_and_dispatch(create: Callable[[], Message], *, line_was_empty: bool) -> Message:
    """`line_was_empty`: nobody waited when admission looked. Under a rush somebody does, and
    the question joins the line without looking for a slot of its own."""
    leased_on: str | None = None
    try:
        try:
            with transaction.atomic():
                take_a_place_in_line()
                answer = create()
                if line_was_empty:
                    leased_on = _slot_for_the_head_of_the_line(answer)
        except BaseException:
            # The commit failed after the lease: nobody will run this answer.
            if leased_on is not None:
                slots.release_slot(leased_on, answer.pk)
            raise
    except IntegrityError:
        # The partial unique index on active answers per session lost a race to a double submit.
        metrics.record_rejected("already_generating")
        raise PlaygroundError("already_generating", ALREADY_GENERATING, status=409) from None
    dispatched_others = False
    try:
        if leased_on is not None:
            enqueue(answer.pk, logs.current_request_id())
        else:
            # One round trip for both writes: under a rush, every one a submission makes
            # waits its turn on a busy machine.
            pipe = redis_clients.redis_client().pipeline(transaction=False)
            remember_request_id(answer.pk, pipe)
            metrics.record_admitted(pipe)
            pipe.execute()
            dispatched_others = dispatch() > 0
    except OUTAGE_ERRORS:
        # The question is in line (committed): the reconciler dispatches it, or puts it back
        # in line if its task was lost, once Redis answers again. Nothing to refuse.
        log.warning("could not dispatch %s after queueing it", answer.pk, exc_info=True)
        dispatched_others = True  # it may have got as far as this one
    if leased_on is not None:
        metrics.record_admitted()
    if dispatched_others:
        # Read back: the pass may have given this one a slot.
        return Message.objects.select_related("conversation").get(pk=answer.pk)
    # As written (a slot leased in the transaction is on the row object too); under a rush,
    # where every slot is busy, this spares each submission a query.
    return answer


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
    if waiting().exclude(pk=answer.pk).exists() or controls.draining():
        return None
    backend = with_leases(slots.acquire_slot, answer.pk)
    if backend is None:
        return None
    try:
        answer.mark_dispatched(backend)
    except BaseException:
        slots.release_slot(backend, answer.pk)
        raise
    return backend


def regenerate(answer: Message, *, session_key: str, client_ip: str | None) -> Message:
    """A new answer to the same question; the old one stays as an alternative."""
    question = answer.reply_to
    if answer.role != Message.Role.ASSISTANT or question is None or not is_shown(question):
        raise NotFound("message")
    if not answer.is_final:
        raise PlaygroundError("already_generating", ALREADY_GENERATING, status=409)
    waiting = check_admission(session_key, client_ip)

    def create() -> Message:
        Message.objects.filter(pk=question.pk).update(selected_answer=None)
        return _queue_answer(question, session_key, client_ip)

    return _create_and_dispatch(create, line_was_empty=not waiting)


def select(message: Message) -> None:
    """Show this answer among its question's regenerations (and send it back to the model in
    follow-ups), or show this version of a question with the turns that followed it."""
    if message.role == Message.Role.ASSISTANT and message.reply_to_id is not None:
        Message.objects.filter(pk=message.reply_to_id).update(selected_answer=message)
    elif message.role == Message.Role.USER:
        _select_version(message)
    else:
        raise NotFound("message")


def _select_version(question: Message) -> None:
    conversation = question.conversation
    questions = questions_of(conversation)
    if question in shown_path(questions):
        return
    if _writing(conversation.messages.all()):
        # The answer being written would vanish from the page with the turns it belongs to.
        raise PlaygroundError("already_generating", ALREADY_GENERATING, status=409)
    by_id = {q.pk: q for q in questions}
    chosen: Message | None = question
    with transaction.atomic():
        # Every turn on the way down to it shows the version that leads there.
        while chosen is not None:
            _choose_version(chosen)
            chosen = by_id.get(chosen.parent_id) if chosen.parent_id else None


def _choose_version(question: Message) -> None:
    versions = Message.objects.filter(
        conversation_id=question.conversation_id,
        role=Message.Role.USER,
        parent_id=question.parent_id,
    )
    versions.exclude(pk=question.pk).update(superseded=True)
    versions.filter(pk=question.pk).update(superseded=False)


def _writing(messages: QuerySet[Message]) -> bool:
    return messages.filter(role=Message.Role.ASSISTANT, status__in=Message.ACTIVE).exists()


def edit_question(
    conversation: Conversation,
    *,
    session_key: str,
    client_ip: str | None,
    prompt: str,
    question_id: str | None = None,
) -> Message:
    """Ask a shown question (the last one unless `question_id` names another) again in new
    words, as a new version of its turn. The old version stays, with its answers and the turns
    that followed it, one switch away; the new one is shown and answered afresh."""
    text = clean_prompt(prompt)
    path = shown_path(questions_of(conversation))
    if question_id is None:
        question = path[-1] if path else None
    else:
        question = next((q for q in path if q.pk == question_id), None)
    if question is None:
        raise NotFound("message")
    if _writing(Message.objects.filter(reply_to__in=path[path.index(question) :])):
        raise PlaygroundError("already_generating", ALREADY_GENERATING, status=409)
    waiting = check_admission(session_key, client_ip)
    # Sent again word for word, a sample stays that sample (its answer is still checked).
    slug = question.sample_slug if text == question.prompt else ""

    def create() -> Message:
        if question.parent_id is None and conversation.title == title_for(question.prompt):
            # The title was the old first question's own words: the new ones replace them (a
            # rename stays).
            conversation.title = title_for(text)
            conversation.save(update_fields=["title"])
        answer = _ask(conversation, text, slug, session_key, client_ip, parent=question.parent)
        _choose_version(answer.reply_to)
        return answer

    return _create_and_dispatch(create, line_was_empty=not waiting)


def shortened(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def title_for(prompt: str) -> str:
    return shortened(" ".join(prompt.split()), 80)
