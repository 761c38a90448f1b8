"""Writing one answer in a worker: claim it, build the prompt, stream it (streaming.py),
store the outcome and hand the slot on; and putting the answers of a worker that shuts
down back in line.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections
from django.utils import timezone

from inference.backends import protocol_of
from inference.chat import fit_answer, fit_chat
from inference.client import (
    SamplingParams,
)
from inference.prompt import DEFAULT_SYSTEM_PROMPT, Turn, build_prompt, fit_history
from playground import rotation, slots
from playground.models import Message
from playground.realtime import cancel_flags, channel_groups, delta_log, redis_clients, shared_loop
from playground.services.dispatching import (
    dispatch,
    hand_on,
)
from playground.services.errors import (
    ERROR_MESSAGES,
    in_english,
    quietly,
)
from playground.services.line import (
    back_in_line,
    publish_queue_positions,
    record_service_time,
)
from playground.services.payloads import (
    final_event,
    provenance_of,
    restarted_event,
    sections_of,
)
from playground.services.queries import (
    chosen_answer,
)
from playground.services.streaming import (
    CANCEL_POLL_SECONDS,
    AnswerStream,
    Outcome,
)

log = logging.getLogger(__name__)


# How long a finished generation keeps trying to tell its viewers when Redis is away; past
# it, the web processes' sweep tells them from the database (playground/viewers.py).
ANNOUNCE_PATIENCE_SECONDS = 30.0


def conversation_history(message: Message) -> list[Turn]:
    """Earlier turns as the model should see them: each question this one follows (its
    branch, whatever other versions the conversation holds) with the *output* of its chosen
    finished answer. Thinking is left out on purpose: it would crowd the context and the
    model card's format treats it as scratch work."""
    question_of_this = message.reply_to
    if question_of_this is None or question_of_this.parent_id is None:
        return []  # a first question: nothing more to read on the way to its first token
    questions = {
        question.pk: question
        for question in Message.objects.filter(
            conversation_id=message.conversation_id, role=Message.Role.USER
        )
    }
    earlier: list[Message] = []
    parent = questions.get(question_of_this.parent_id)
    while parent is not None:
        earlier.append(parent)
        parent = questions.get(parent.parent_id) if parent.parent_id else None
    earlier.reverse()
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
        hand_on(backend, message.pk)
        return
    if message.status != Message.Status.QUEUED:
        return  # a redelivered task: another worker is writing this answer
    if _stopping.is_set():
        # Received while this worker shuts down: the slot goes, and the answer waits in its
        # place in line for a worker that stays.
        back_in_line(message)
        quietly(lambda: slots.release_slot(backend, message.pk), "release a slot")
        return
    # Everything the generation needs is read first, so that claiming the message and
    # recording its provenance is a single write on the way to the first token.
    info = rotation.backend_info(backend)
    protocol = protocol_of(backend)
    prompt, dropped = build_model_prompt(message, info, protocol=protocol)
    params = sampling_params()
    if protocol == "openai":
        params = fit_answer(prompt, info.get("max_total_tokens"), params)
    claimed = message.mark_running(
        model_id=str(info.get("model_id", "")),
        model_info=provenance_of(info),
        sampling={**params.to_parameters(), "history_turns_dropped": dropped},
    )
    if not claimed:
        if message.is_final:
            hand_on(backend, message.pk)
        return
    outcome = None
    try:
        outcome = shared_loop.run(_generate(message, prompt, params, info))
    except Exception:
        log.exception("generation of %s crashed", message_id)
        if message.fail("worker_error", in_english(ERROR_MESSAGES["worker_error"])):
            quietly(
                lambda: channel_groups.publish(message.pk, final_event(message)), "announce the end"
            )
    finally:
        close_old_connections()
    if outcome is None or not outcome.handed_on:
        quietly(lambda: slots.release_slot(backend, message.pk), "release a slot")
        if outcome is not None and outcome.requeue:
            quietly(publish_queue_positions, "publish the line")
        if not _stopping.is_set():
            quietly(dispatch, "dispatch the line")


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
        count = cancel_flags.cancel_watch(CANCEL_POLL_SECONDS).interrupt_all()
        log.warning("shutting down: %d answers being written go back in line", count)

    shared_loop.call_soon(interrupt)


def _dispatch_from_thread() -> None:
    try:
        if not _stopping.is_set():
            quietly(dispatch, "dispatch the line")
    finally:
        connections.close_all()


async def _generate(message: Message, prompt: str, params: SamplingParams, info: dict) -> Outcome:
    """One event loop for the whole generation: read TGI, parse, coalesce, persist, publish."""
    message_id, backend = message.pk, message.backend
    publisher = delta_log.StreamPublisher(message_id)
    outcome = Outcome()
    await publisher.start(
        {
            "type": "started",
            "backend": rotation.public_name(backend),
            "model": info.get("model_id", ""),
            "attempt": message.attempts,
        }
    )
    await AnswerStream(publisher, outcome, backend, prompt, params).run()
    if await publisher.cancel_requested():
        # The visitor's Stop wins over everything else, a worker shutting down included.
        outcome.status = Message.Status.CANCELLED
        outcome.requeue = outcome.interrupted = False
    handoff = None
    if not outcome.requeue:
        # The backend stream is closed, so its GPU slot is free now: the next in line
        # starts while this answer's bookkeeping is still being written.
        try:
            await slots.arelease_slot(backend, message_id)
        except redis_clients.REDIS_DOWN as exc:
            log.warning("could not release the slot of %s: %r", message_id, exc)
        handoff = asyncio.create_task(asyncio.to_thread(_dispatch_from_thread))
        outcome.handed_on = True
    outcome.events = publisher.events
    outcome.sections = sections_of(outcome.events)
    announcement = await asyncio.to_thread(_persist_outcome, message_id, outcome)
    await publisher.finish(announcement, ANNOUNCE_PATIENCE_SECONDS)
    if handoff is not None:
        await handoff
    return outcome


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
            if back_in_line(message):
                return restarted_event(message)
            message.refresh_from_db()
            return final_event(message) if message.is_final else None
        # What the visitor was shown, stored with whatever way the answer ended.
        written = {
            "sections": outcome.sections,
            "deltas": outcome.events,
            "tokens": tokens,
            "first_token_at": outcome.first_token_at,
        }
        if outcome.status == Message.Status.DONE:
            finished = message.finish(
                finish_reason=outcome.finish_reason,
                phase_seconds=outcome.phase_seconds,
                **written,
            )
            if not finished:
                # Cancelled while the last tokens arrived: keep the text under the cancel.
                message.store_partial(**written)
                message.refresh_from_db()
                return final_event(message)
            record_service_time(message)
        elif outcome.status == Message.Status.CANCELLED:
            message.cancel(**written)
        else:
            message.fail(outcome.error_code, outcome.error_message, **written)
        message.refresh_from_db()
        return final_event(message)
    finally:
        # This runs in a helper thread of the generation's event loop: leave no connection open.
        connections.close_all()
