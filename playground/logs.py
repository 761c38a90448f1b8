"""Log lines an operator can search: the request id, and the two formats (LOG_FORMAT).

Every HTTP request gets an id (the `X-Request-ID` a proxy or client sent, when it is short and
safe, else a new one), sent back in the response's `X-Request-ID`. It lives in a context
variable while the request is handled, so every log line written meanwhile carries it, in the
views' threads too (asgiref copies context variables into them). The generation task of an
answer carries its request's id in a Celery message header, and the worker sets it for the
task's duration (playground/tasks.py): an answer's web and worker lines share one id.

`plain` (the default) is for reading in a terminal and shows the first characters of the id;
`json` writes each record as one JSON object per line for a log store to index.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Callable
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from asgiref.sync import iscoroutinefunction
from django.utils.decorators import sync_and_async_middleware

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase

HTTP_HEADER = "X-Request-ID"
# The Celery message header that carries a generation's request id to the worker.
TASK_HEADER = "request_id"
# A caller's id is kept only if it cannot forge log lines or bloat them; anything else is
# replaced, not cleaned, so an id in the logs is always exactly what the response said.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Enough to tell apart the requests of a terminal's scrollback.
PLAIN_ID_LENGTH = 8

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    return _request_id.get()


def set_request_id(request_id: str | None) -> Token[str | None]:
    return _request_id.set(request_id)


def request_id_for(incoming: str | None) -> str:
    """The caller's id if it is safe to log, else a fresh one."""
    if incoming and _SAFE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return secrets.token_hex(8)


Handler = Callable[["HttpRequest"], Any]


@sync_and_async_middleware
def request_id_middleware(get_response: Handler) -> Handler:
    """First in MIDDLEWARE, so the other middleware's lines carry the id too. The request
    keeps its id as an attribute for the lines Django writes after the middleware returned
    (`django.request`'s "Not Found: …"), which pass the request along (RequestIdFilter)."""

    def start(request: HttpRequest) -> Token[str | None]:
        request.request_id = request_id_for(request.headers.get(HTTP_HEADER))
        return set_request_id(request.request_id)

    def finish(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        response[HTTP_HEADER] = request.request_id
        return response

    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponseBase:
            token = start(request)
            try:
                return finish(request, await get_response(request))
            finally:
                _request_id.reset(token)

        return middleware

    def sync_middleware(request: HttpRequest) -> HttpResponseBase:
        token = start(request)
        try:
            return finish(request, get_response(request))
        finally:
            _request_id.reset(token)

    return sync_middleware


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record written while a request or its task is handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            request_id = current_request_id() or getattr(
                getattr(record, "request", None), "request_id", None
            )
            if request_id:
                record.request_id = request_id
        return True


class PlainFormatter(logging.Formatter):
    """`time LEVEL logger [request]: message`, the id cut to its first characters."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        where = f"{record.name} [{request_id[:PLAIN_ID_LENGTH]}]" if request_id else record.name
        return f"{self.formatTime(record)} {record.levelname} {where}: {record.message}"


# What every record has; anything else on a record was passed in `extra` and is logged too,
# except uvicorn's copy of its message with terminal colour codes.
_NOT_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: timestamp (ISO 8601, UTC), level, logger,
    message, then the record's extra fields (request_id among them), and `exc_info` (the
    formatted traceback) when there was an exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _NOT_FIELDS:
                entry.setdefault(name, value)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        # ASCII escapes keep a model's lone surrogates or a U+2028 from breaking the line (or
        # the stream's encoding); str() stands in for whatever an extra field holds.
        return json.dumps(entry, default=str)
