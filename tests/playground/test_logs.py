"""Logs an operator can search (playground/logs.py): the two formats, the request id on every
line of a request, and the same id on the worker's lines for the answer the request asked for."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.test import Client, RequestFactory

import playground.tasks  # noqa: F401  (connects the task signal handlers, as in a worker)
from playground import logs, services, slots
from playground.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]
GENERATED_ID = re.compile(r"[0-9a-f]{16}")
log = logging.getLogger("tests.playground.test_logs")


class Captured(logging.Handler):
    """The records that reach a handler set up as settings.LOGGING sets up the console's."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(logs.RequestIdFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def request_ids(self, message: str) -> list[str | None]:
        return [
            getattr(record, "request_id", None)
            for record in self.records
            if message in record.getMessage()
        ]


@pytest.fixture
def captured() -> Iterator[Captured]:
    handler = Captured()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


@pytest.fixture
def sent_tasks(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What would be handed to Celery, headers included."""
    sent: list[dict[str, Any]] = []

    def send_task(name: str, args: list[str], headers: dict[str, str] | None = None) -> None:
        sent.append({"name": name, "message_id": args[0], "headers": headers})

    monkeypatch.setattr(celery_app, "send_task", send_task)
    return sent


def a_record(message: str = "hello %s", *args: Any, **extra: Any) -> logging.LogRecord:
    record = logging.getLogger("playground.example").makeRecord(
        "playground.example", logging.WARNING, __file__, 1, message, args, None, extra=extra
    )
    logs.RequestIdFilter().filter(record)
    return record


def ask(client: Client, prompt: str, request_id: str | None = None) -> dict[str, Any]:
    headers = {"X-Request-ID": request_id} if request_id else {}
    response = client.post(
        "/api/v1/conversations",
        json.dumps({"prompt": prompt}),
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 201, response.content
    return response.json()["message"]


def new_visitor(address: str) -> Client:
    client = Client(enforce_csrf_checks=True, REMOTE_ADDR=address)
    client.get("/api/v1/status")
    client.defaults["HTTP_X_CSRFTOKEN"] = client.cookies["csrftoken"].value
    return client


# --- the formats ---------------------------------------------------------------------------------


def test_json_lines_parse_and_carry_the_standard_and_extra_fields() -> None:
    logs.set_request_id("req-42")
    try:
        record = a_record("answer %s took %d s", "abc", 3, backend="http://gpu1:80", tokens=12)
    finally:
        logs.set_request_id(None)

    entry = json.loads(logs.JsonFormatter().format(record))

    assert entry["level"] == "WARNING"
    assert entry["logger"] == "playground.example"
    assert entry["message"] == "answer abc took 3 s"
    assert entry["request_id"] == "req-42"
    assert entry["backend"] == "http://gpu1:80"
    assert entry["tokens"] == 12
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["timestamp"])
    assert "exc_info" not in entry
    assert not {"args", "msg", "levelno", "pathname", "created"} & set(entry)


def test_json_lines_carry_the_exception_as_a_string() -> None:
    try:
        raise ValueError("the backend said no")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )

    entry = json.loads(logs.JsonFormatter().format(record))

    assert entry["message"] == "failed"
    assert entry["exc_info"].startswith("Traceback (most recent call last):")
    assert "ValueError: the backend said no" in entry["exc_info"]


def test_a_json_line_stays_one_line_whatever_the_message_holds() -> None:
    record = a_record("first\nsecond\u2028third \ud800 %s", object())

    line = logs.JsonFormatter().format(record)

    assert "\n" not in line and "\u2028" not in line
    line.encode("utf-8")  # a lone surrogate would not encode
    assert json.loads(line)["message"].startswith("first\nsecond\u2028third \ud800 <object")


def test_plain_lines_show_the_start_of_the_request_id() -> None:
    logs.set_request_id("0123456789abcdef")
    try:
        with_id = logs.PlainFormatter().format(a_record("queued %s", "m1"))
    finally:
        logs.set_request_id(None)
    without_id = logs.PlainFormatter().format(a_record("queued %s", "m1"))

    assert with_id.endswith(" WARNING playground.example [01234567]: queued m1")
    assert without_id.endswith(" WARNING playground.example: queued m1")


# --- the request id ------------------------------------------------------------------------------


def test_a_request_gets_an_id_in_its_response_header(visitor: Client) -> None:
    first = visitor.get("/api/v1/status")["X-Request-ID"]
    second = visitor.get("/api/v1/status")["X-Request-ID"]

    assert GENERATED_ID.fullmatch(first) and GENERATED_ID.fullmatch(second)
    assert first != second
    assert logs.current_request_id() is None, "the id ends with its request"


def test_a_safe_incoming_request_id_is_kept(visitor: Client) -> None:
    response = visitor.get("/api/v1/status", headers={"X-Request-ID": "edge-7f.3_A"})

    assert response["X-Request-ID"] == "edge-7f.3_A"


@pytest.mark.parametrize(
    "incoming",
    ["has space", "x" * 65, "<script>", "forged\nline", 'quote"d', "ünicode", ""],
)
def test_an_unsafe_incoming_request_id_is_replaced(visitor: Client, incoming: str) -> None:
    response = visitor.get("/api/v1/status", headers={"X-Request-ID": incoming})

    assert GENERATED_ID.fullmatch(response["X-Request-ID"])


def test_lines_written_while_handling_a_request_carry_its_id(
    visitor: Client, backend: str, captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The broker is unreachable: the view logs that it could not hand the question on.
    def broker_gone(name: str, args: list[str], **options: Any) -> None:
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(celery_app, "send_task", broker_gone)

    ask(visitor, "Still there?", request_id="visitor-1")

    assert captured.request_ids("could not dispatch") == ["visitor-1"]


def test_django_s_own_line_for_a_404_carries_the_id(visitor: Client, captured: Captured) -> None:
    # Django writes "Not Found" after the middleware returned; the request still knows its id.
    response = visitor.get("/no-such-page", headers={"X-Request-ID": "lost-1"})

    assert response.status_code == 404
    assert captured.request_ids("Not Found: /no-such-page") == ["lost-1"]


def test_the_id_reaches_lines_of_async_middleware_and_view_threads(captured: Captured) -> None:
    # Under uvicorn the chain is asynchronous and views run in threads (asgiref).
    seen: list[str | None] = []

    def view_work() -> None:
        seen.append(logs.current_request_id())
        log.warning("inside the view's thread")

    async def get_response(request: HttpRequest) -> HttpResponseBase:
        await sync_to_async(view_work)()
        return HttpResponse("ok")

    middleware = logs.request_id_middleware(get_response)
    request = RequestFactory().get("/", headers={"X-Request-ID": "async-1"})

    response = asyncio.run(middleware(request))

    assert response["X-Request-ID"] == "async-1"
    assert seen == ["async-1"]
    assert captured.request_ids("inside the view's thread") == ["async-1"]


# --- carried to the worker -----------------------------------------------------------------------


def test_a_question_s_generation_task_carries_its_request_id(
    visitor: Client, backend: str, sent_tasks: list[dict[str, Any]]
) -> None:
    message = ask(visitor, "Count the r's", request_id="visitor-2")

    assert sent_tasks == [
        {
            "name": "playground.tasks.generate",
            "message_id": message["id"],
            "headers": {logs.TASK_HEADER: "visitor-2"},
        }
    ]


def test_an_answer_that_waited_in_line_keeps_its_own_request_id(
    db: None, backend: str, sent_tasks: list[dict[str, Any]]
) -> None:
    # Two slots: the third question waits, and is handed on later by someone else's work.
    first = ask(new_visitor("10.9.0.1"), "one", request_id="first")
    ask(new_visitor("10.9.0.2"), "two", request_id="second")
    third = ask(new_visitor("10.9.0.3"), "three", request_id="third")
    assert len(sent_tasks) == 2, "the third waits"

    slots.release_slot(backend, first["id"])
    logs.set_request_id("first")  # the worker that finished the first answer dispatches
    try:
        services.dispatch()
    finally:
        logs.set_request_id(None)

    assert sent_tasks[-1]["message_id"] == third["id"]
    assert sent_tasks[-1]["headers"] == {logs.TASK_HEADER: "third"}


@celery_app.task(name="tests.playground.test_logs.log_a_line")
def log_a_line() -> str | None:
    log.warning("writing an answer")
    return logs.current_request_id()


def test_a_task_s_lines_carry_the_request_id_from_its_headers(captured: Captured) -> None:
    result = log_a_line.apply(headers={logs.TASK_HEADER: "visitor-3"})

    assert result.get() == "visitor-3"
    assert captured.request_ids("writing an answer") == ["visitor-3"]
    assert logs.current_request_id() is None, "the next task does not inherit it"


def test_a_task_without_the_header_has_no_request_id(captured: Captured) -> None:
    logs.set_request_id("left-over")  # as if an earlier task had not cleaned up

    result = log_a_line.apply()

    assert result.get() is None
    assert captured.request_ids("writing an answer") == [None]


# --- LOG_FORMAT at start-up ----------------------------------------------------------------------


def _run_django(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", f"import django, logging; django.setup(); {code}"],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "playground.settings", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_unknown_log_format_stops_start_up_naming_it() -> None:
    result = _run_django("", LOG_FORMAT="yaml")

    assert result.returncode != 0
    assert "ImproperlyConfigured: LOG_FORMAT='yaml' is invalid: expected plain or json." in (
        result.stderr
    )


def test_log_format_json_makes_every_line_of_the_process_json() -> None:
    code = "logging.getLogger('playground.x').warning('hi %s', 'there', extra={'slot': 3})"
    result = _run_django(code, LOG_FORMAT="JSON")

    assert result.returncode == 0, result.stderr
    entry = json.loads(result.stderr.strip().splitlines()[-1])
    assert entry["message"] == "hi there"
    assert entry["slot"] == 3
    assert entry["logger"] == "playground.x"
