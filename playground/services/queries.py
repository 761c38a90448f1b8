"""Finding what a visitor may see: their conversations and messages, shared ones, samples,
and which answer stands for each question.
"""

from __future__ import annotations

import logging

from django.utils.translation import get_language

from inference.samples import ENGLISH, get_sample, sample_in
from playground.models import Conversation, Message, SamplePrompt
from playground.realtime import presence
from playground.services.errors import (
    NotFound,
)
from playground.services.stored_logs import WITHOUT_LOG

log = logging.getLogger(__name__)


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
            presence.touch(message.pk)


def can_view(message: Message, *, session_key: str | None, share_token: str | None) -> bool:
    conversation = message.conversation
    if share_token:
        return conversation.share_token == share_token
    return bool(session_key) and conversation.session_key == session_key


def samples() -> list[SamplePrompt]:
    return [in_visitors_language(sample) for sample in SamplePrompt.objects.filter(enabled=True)]


def in_visitors_language(sample: SamplePrompt) -> SamplePrompt:
    """The sample as this request's visitor reads and asks it: its version in their language
    where it has one. A prompt the operators reworded has no translation and stays as they wrote
    it; a title they changed stays too."""
    version = sample_in(get_language() or ENGLISH, sample.slug)
    builtin = get_sample(sample.slug)
    if version is None or builtin is None or version.language == ENGLISH:
        return sample
    if " ".join(sample.prompt.split()) != " ".join(builtin.prompt.split()):
        return sample
    sample.prompt = version.prompt
    if sample.title == builtin.title:
        sample.title = version.title
    return sample


def earlier_answer_to_sample(slug: str, prompt: str, excluding: str) -> Message | None:
    """The latest finished answer to sample `slug`, asked in the same words (its version in the
    same language), that was the first question of its conversation (so no visitor's earlier
    turns shaped it), for someone waiting for the same sample to read meanwhile."""
    return (
        Message.objects.filter(
            role=Message.Role.ASSISTANT,
            status=Message.Status.DONE,
            sample_slug=slug,
            prompt=prompt,
            reply_to__parent__isnull=True,
        )
        .exclude(pk=excluding)
        .order_by("-finished_at")
        .first()
    )


def shown_path(questions: list[Message]) -> list[Message]:
    """The questions a conversation's page shows, first to last, out of all its `questions`.

    Questions form a tree (each follows its parent; edits add siblings). From the first turn
    on, each turn shows the version not superseded (the newest, should several claim it) and
    continues with the questions that follow that version."""
    followers: dict[str | None, list[Message]] = {}
    for question in sorted(questions, key=lambda q: (q.created, q.pk)):
        followers.setdefault(question.parent_id, []).append(question)
    path: list[Message] = []
    parent_id: str | None = None
    while versions := followers.get(parent_id):
        chosen = [q for q in versions if not q.superseded] or versions
        path.append(chosen[-1])
        parent_id = chosen[-1].pk
    return path


def questions_of(conversation: Conversation) -> list[Message]:
    return list(conversation.messages.filter(role=Message.Role.USER))


def last_question(conversation: Conversation) -> Message | None:
    path = shown_path(questions_of(conversation))
    return path[-1] if path else None


def is_shown(question: Message) -> bool:
    return question in shown_path(questions_of(question.conversation))


def turn_versions(conversation: Conversation, shown: list[Message]) -> dict[str, list[Message]]:
    """For each question in `shown`: the versions of its turn (itself among them), oldest
    first."""
    siblings: dict[str | None, list[Message]] = {}
    for question in sorted(questions_of(conversation), key=lambda q: (q.created, q.pk)):
        siblings.setdefault(question.parent_id, []).append(question)
    return {
        message.pk: siblings.get(message.parent_id, [message])
        for message in shown
        if message.role == Message.Role.USER
    }


HISTORY_LIMIT = 100


def history(session_key: str | None) -> list[Conversation]:
    if not session_key:
        return []
    return list(
        Conversation.objects.filter(session_key=session_key).order_by("-updated")[:HISTORY_LIMIT]
    )


def chosen_answer(question: Message, answers: list[Message]) -> Message | None:
    """The answer shown for a question: the visitor's pick, else the newest."""
    for answer in answers:
        if answer.pk == question.selected_answer_id:
            return answer
    return answers[-1] if answers else None


def visible_messages(conversation: Conversation) -> list[Message]:
    """The shown path's questions and all their answers, in order (other versions of a turn,
    and the turns that followed them, are left out)."""
    messages = list(conversation.messages.defer(*WITHOUT_LOG).order_by("created"))
    path = {q.pk for q in shown_path([m for m in messages if m.role == Message.Role.USER])}
    return in_order([m for m in messages if m.pk in path or m.reply_to_id in path])


def shown_answers(messages: list[Message]) -> set[str]:
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


def in_order(messages: list[Message]) -> list[Message]:
    """Turn by turn: each question, then its answers oldest first (a regenerated answer stays
    with its question even though it was written after later turns)."""
    asked = {m.pk: m.created for m in messages if m.role == Message.Role.USER}

    def key(message: Message) -> tuple:
        turn = asked.get(message.reply_to_id, message.created)
        if message.role == Message.Role.USER:
            return (message.created, 0, message.created)
        return (turn, 1, message.created)

    return sorted(messages, key=key)
