"""The delta logs of ended answers, read from the database once per process.

An ended answer's log never changes, and everyone who opens it needs it: the page and the API
for its seq, the stream for the deltas after the viewer's. A thousand strangers on one share
link decoded the same log of a long answer (hundreds of deltas) twice each, a tenth of the web
process's time while they opened it. The rows viewers read leave the log out (`WITHOUT_LOG`),
and this reads it once and keeps it a little while.

Kept by the answer's id and what marks a new log on its row (status, finished_at, tokens: the
text kept after a stop is stored just after the stop, with its token count), for
REMEMBER_SECONDS at most.
"""

from __future__ import annotations

from typing import Any

from playground.models import Message
from playground.short_memory import ShortMemory

# The fields the queries for viewers leave out (QuerySet.defer): read through log_of instead.
WITHOUT_LOG = ("deltas",)
REMEMBER_SECONDS = 10.0

_remembered = ShortMemory(REMEMBER_SECONDS, at_most=32)  # a long log is a few hundred KiB


def log_of(message: Message) -> list[dict[str, Any]]:
    """The stored delta log of a message (shared: not to be changed by the caller)."""
    if "deltas" in message.__dict__:  # loaded with the row
        return message.deltas
    key = (message.pk, message.status, message.finished_at, message.tokens)
    log = _remembered.recall(key)
    if log is None:
        found = Message.objects.filter(pk=message.pk).values_list("deltas", flat=True).first()
        log = found or []
        if message.is_final:
            _remembered.keep(key, log)
    message.deltas = log
    return log
