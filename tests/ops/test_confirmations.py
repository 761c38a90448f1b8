"""Controls that stop something for visitors ask first; without JavaScript the server asks.

A POST of such a control without `confirmed=yes` changes nothing and answers with a page that
says what will happen and repeats the form, confirmed; the dashboard's script asks in a dialog
and sends the form confirmed (tests/integration/test_browser_ops.py clicks through it).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from playground import controls, services, slots
from playground.models import AuditLog, Block, Message
from tests.ops.operators import logged_in, post

pytestmark = pytest.mark.django_db(transaction=True)

HIDDEN_INPUT = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def repeated_fields(page: str) -> dict[str, str]:
    """The fields the confirmation page's form sends, its CSRF token left out."""
    form = page[page.index('<form method="post"', page.index("confirm-title")) :]
    form = form[: form.index("</form>")]
    fields = {name: html.unescape(value) for name, value in HIDDEN_INPUT.findall(form)}
    fields.pop("csrfmiddlewaretoken", None)
    return fields


def queued_answer() -> Message:
    return services.submit(session_key="someone", client_ip="198.51.100.9", prompt="Why <b>?")


def nothing_changed(backend: str) -> bool:
    return (
        controls.state() == controls.ControlState(banner=None, draining=False)
        and slots.healthy_backends() == [backend]
        and not Block.objects.exists()
        and not Message.objects.filter(status=Message.Status.CANCELLED).exists()
        and not AuditLog.objects.exists()
    )


# Each control that stops something: (url, what the form sends, the question, what was done).
ASKED: dict[str, tuple[str, Callable[[str], dict[str, Any]], str, Callable[[str], bool]]] = {
    "pause": (
        "/ops/pause",
        lambda backend: {"banner": "Back at 18:00 UTC."},
        "Pause intake?",
        lambda backend: controls.pause_banner() == "Back at 18:00 UTC.",
    ),
    "drain": ("/ops/drain", lambda backend: {}, "Drain?", lambda backend: controls.draining()),
    "disable": (
        "/ops/backends/state",
        lambda backend: {"backend": backend, "action": "disable"},
        "out of rotation?",
        lambda backend: slots.healthy_backends() == [],
    ),
    "cancel": (
        "/ops/messages/cancel",
        lambda backend: {"message_id": queued_answer().pk},
        "Cancel answer ",
        lambda backend: Message.objects.filter(status=Message.Status.CANCELLED).exists(),
    ),
    "block": (
        "/ops/blocks",
        lambda backend: {"kind": "ip", "value": "203.0.113.5", "duration": "90", "reason": ""},
        "Block 203.0.113.5 for 90 min?",
        lambda backend: Block.objects.filter(label="203.0.113.5").exists(),
    ),
}


@pytest.mark.parametrize("control", ASKED)
def test_a_control_that_stops_something_asks_first_and_changes_nothing(
    control: str, dead_backend: str, operator: Client, enqueued: list[str]
) -> None:
    url, fields, question, done = ASKED[control]

    response = post(operator, url, fields(dead_backend), confirmed=False)

    page = response.content.decode()
    assert response.status_code == 200
    assert question in html.unescape(page)
    assert not done(dead_backend)
    assert nothing_changed(dead_backend)


@pytest.mark.parametrize("control", ASKED)
def test_confirming_on_the_servers_page_sends_the_same_control(
    control: str, dead_backend: str, operator: Client, enqueued: list[str]
) -> None:
    url, fields, _, done = ASKED[control]
    sent = {name: str(value) for name, value in fields(dead_backend).items()}
    page = post(operator, url, sent, confirmed=False).content.decode()
    repeated = repeated_fields(page)
    assert repeated == {**sent, "confirmed": "yes"}, "the same fields, confirmed"
    assert f'action="{url}"' in page

    response = post(operator, url, repeated, confirmed=False)

    assert response.status_code == 302 and response["Location"] == "/ops/"
    assert done(dead_backend)
    assert AuditLog.objects.count() == 1


def test_the_question_about_an_answer_quotes_its_prompt_as_text(
    dead_backend: str, operator: Client, enqueued: list[str]
) -> None:
    answer = queued_answer()

    page = post(operator, "/ops/messages/cancel", {"message_id": answer.pk}, confirmed=False)

    text = page.content.decode()
    assert "Why &lt;b&gt;?" in text and "<b>" not in text
    assert f"It is queued (backend {dead_backend})." in text


@pytest.mark.parametrize(
    ("url", "data", "done"),
    [
        ("/ops/resume", {}, lambda backend: controls.pause_banner() is None),
        ("/ops/undrain", {}, lambda backend: not controls.draining()),
        (
            "/ops/backends/state",
            {"action": "enable"},
            lambda backend: slots.healthy_backends() == [backend],
        ),
        (
            "/ops/backends/concurrency",
            {"concurrency": "5"},
            lambda backend: controls.concurrency_override(backend) == 5,
        ),
    ],
)
def test_controls_that_give_back_act_at_once_without_asking(
    url: str,
    data: dict[str, str],
    done: Callable[[str], bool],
    dead_backend: str,
    operator: Client,
    enqueued: list[str],
) -> None:
    controls.set_paused("Paused.")
    controls.set_draining(True)
    controls.set_backend_enabled(dead_backend, False)

    response = post(operator, url, {"backend": dead_backend, **data}, confirmed=False)

    assert response.status_code == 302
    assert done(dead_backend)


def test_changing_the_banner_while_paused_is_not_asked_about(
    dead_backend: str, operator: Client
) -> None:
    controls.set_paused("Back soon.")

    response = post(operator, "/ops/pause", {"banner": "Back at 19:00."}, confirmed=False)

    assert response.status_code == 302
    assert controls.pause_banner() == "Back at 19:00."


def test_cancelling_an_answer_that_already_ended_says_so_without_asking(
    dead_backend: str, operator: Client, enqueued: list[str]
) -> None:
    answer = queued_answer()
    services.cancel(answer)

    response = post(operator, "/ops/messages/cancel", {"message_id": answer.pk}, confirmed=False)

    assert response.status_code == 302
    assert "had already ended" in operator.get("/ops/").content.decode()


def test_the_dashboard_marks_exactly_the_forms_that_stop_something(
    dead_backend: str, enqueued: list[str]
) -> None:
    answer = queued_answer()

    page = logged_in(staff=True).get("/ops/").content.decode()

    asking = re.findall(r'<form method="post" action="([^"]+)"[^>]* data-confirm="', page)
    plain = re.findall(r'<form method="post" action="([^"]+)"(?:(?!data-confirm)[^>])*>', page)
    assert sorted(set(asking)) == [
        "/ops/backends/state",
        "/ops/blocks",
        "/ops/drain",
        "/ops/messages/cancel",
        "/ops/pause",
    ]
    assert "/ops/backends/concurrency" in plain and "/ops/drain" not in plain
    row = page[page.index(f'<tr data-answer="{answer.pk}">') :]
    assert 'data-confirm="Cancel answer {message_id}?"' in row[: row.index("</tr>")]
