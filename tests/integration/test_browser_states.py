"""The line's states, named for a visitor on a phone in Chromium: intake paused, the line full
(said before anyone clicks), a drain telling a waiting visitor at once that the line is on hold,
and an answer the site's operators stopped, told as theirs with their reason.

One slot and a line of one (GENERATION_CONCURRENCY=1, QUEUE_MAX_WAITING=1). The operators'
controls are run the way the dashboard runs them (playground.ops.actions), in a process of
their own against the stack. Screenshots go to test-artifacts/states-*.png.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.stack import Stack
from tests.integration.chromium import needs_chromium
from tests.integration.stack import playground_stack
from tests.integration.test_browser import NO_HORIZONTAL_SCROLL, shot

pytestmark = [pytest.mark.integration, needs_chromium]

ROOT = Path(__file__).resolve().parents[2]
PHONE = {"width": 390, "height": 844}
STATUS_PILL = "#queue-status .pill"
ANSWER_STATUS = "(document.querySelector('[data-role=status]')?.textContent || '')"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with playground_stack(
        "browser-states",
        redis_db=8,
        sim_args=["--tokens-per-second", "15", "--seed", "6"],
        GENERATION_CONCURRENCY="1",
        QUEUE_MAX_WAITING="1",
    ) as running:
        yield running


def operators(stack: Stack, code: str) -> None:
    """Run an operators' control against the stack, as the dashboard's view would."""
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c",
         f"from playground.ops import actions\nfrom playground.models import Message\n{code}"],
        cwd=ROOT, env=stack.env, check=True,
    )  # fmt: skip


def test_paused_full_on_hold_and_stopped_by_the_site_are_named(
    stack: Stack, browser: object
) -> None:
    phone = browser.new_context(viewport=PHONE)  # type: ignore[attr-defined]
    home = phone.new_page()

    operators(stack, "actions.pause(None, 'Back in ten minutes')")
    home.goto(stack.base_url + "/")
    assert home.inner_text(STATUS_PILL) == "Paused"
    assert "answers already in line are still written" in home.inner_text("#queue-status")
    assert home.evaluate(NO_HORIZONTAL_SCROLL)
    shot(home, "states-paused-phone")
    operators(stack, "actions.resume(None)")

    # One visitor's answer is written, a second waits: the line of one is full.
    writing = phone.new_page()
    writing.goto(stack.base_url + "/")
    writing.click("button[data-sample=agatha]")
    writing.wait_for_selector('article.answer[data-status="running"]', timeout=20_000)
    second = browser.new_context(viewport=PHONE)  # type: ignore[attr-defined]
    waiting = second.new_page()
    waiting.goto(stack.base_url + "/")
    waiting.click("button[data-sample=sheep]")
    waiting.wait_for_function(
        f"() => {ANSWER_STATUS}.includes('In line: #1')",
        timeout=20_000,
    )

    third = browser.new_context(viewport=PHONE)  # type: ignore[attr-defined]
    newcomer = third.new_page()
    newcomer.goto(stack.base_url + "/")
    assert newcomer.inner_text(STATUS_PILL) == "The line is full"
    assert "new ones are turned away" in newcomer.inner_text("#queue-status")
    shot(newcomer, "states-full-phone")

    # A drain: the waiting visitor is told at once, without reloading, and shown no estimate.
    operators(stack, "actions.drain(None)")
    waiting.wait_for_function(
        f"() => {ANSWER_STATUS}.includes('on hold')",
        timeout=10_000,
    )
    assert "about" not in waiting.inner_text("[data-role=status]")
    assert waiting.evaluate(NO_HORIZONTAL_SCROLL)
    shot(waiting, "states-on-hold-phone")

    # The operators stop the answer being written (the dashboard's Cancel): its visitor reads
    # that the site did, and why, not their own "Stopped".
    answer_id = writing.get_attribute("article.answer", "id").removeprefix("answer-")
    operators(stack, f"actions.cancel(None, Message.objects.get(pk='{answer_id}'))")
    writing.wait_for_selector('article.answer[data-status="cancelled"]', timeout=15_000)
    assert writing.inner_text("[data-role=status]") == "Stopped by the site"
    assert "The site's operators stopped this answer." in writing.inner_text("article.answer")
    assert writing.is_visible("[data-regenerate-for] button"), "they may ask again"
    assert writing.evaluate(NO_HORIZONTAL_SCROLL)
    shot(writing, "states-stopped-by-the-site-phone")

    # The line moves again and the waiting visitor's answer is written.
    operators(stack, "actions.undrain(None)")
    waiting.wait_for_selector('article.answer[data-status="done"]', timeout=60_000)
    phone.close()
    second.close()
    third.close()
