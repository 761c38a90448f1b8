"""A real browser (Debian's Chromium driven by Playwright) against the real stack.

A visitor opens the playground, clicks the strawberry card and watches the thinking, a
reflection and the answer stream in, each in its own area. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from playground.devstack import Stack
from tests.stack import ARTIFACTS, playground_stack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="Chromium is not installed (Debian: apt-get install chromium); CI installs it",
    ),
]

playwright_sync = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with playground_stack(
        "browser", redis_db=9, sim_args=["--tokens-per-second", "60", "--seed", "2"]
    ) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_sync.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


def shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def test_clicking_a_sample_streams_thinking_reflection_and_answer_live(
    stack: Stack, browser: object
) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(stack.base_url + "/")
    shot(page, "home")

    page.click("button[data-sample=strawberry]")

    answer = page.locator("article.answer")
    page.wait_for_selector(".thinking-text", timeout=20_000)
    assert answer.get_attribute("data-status") == "running", "thinking arrives while running"
    page.wait_for_selector("aside.reflection .reflection-text", timeout=20_000)
    assert answer.get_attribute("data-status") == "running", "the reflection arrives live"
    shot(page, "streaming")
    page.wait_for_selector('article.answer[data-status="done"]', timeout=30_000)
    shot(page, "done")

    assert "3" in page.inner_text("[data-role=output]")
    assert "strawberry" in (page.text_content("[data-role=thinking]") or "")
    assert page.inner_text("[data-role=status]").strip() == "Done"
    assert "tokens" in page.inner_text("[data-role=stats]")
    assert dialogs == []
    page.close()


def test_a_prompt_full_of_markup_is_shown_as_text_and_never_runs(
    stack: Stack, browser: object
) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    payload = "<script>alert('x')</script><img src=x onerror=\"alert('y')\"> what is 2+2?"
    page.goto(stack.base_url + "/")

    page.fill("textarea[name=prompt]", payload)
    page.click("form.composer button[type=submit]")
    page.wait_for_selector('article.answer[data-status="done"]', timeout=30_000)

    assert payload in page.inner_text(".question p")
    assert payload[:30] in page.inner_text("[data-role=output]")
    assert page.locator(".question img").count() == 0
    assert dialogs == []
    shot(page, "markup-prompt")
    page.close()


def test_stop_ends_the_answer_and_keeps_what_was_written(stack: Stack, browser: object) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(stack.base_url + "/")
    page.click("button[data-sample=agatha]")
    page.wait_for_selector(".thinking-text", timeout=20_000)

    page.click("[data-role=stop] button")

    page.wait_for_selector('article.answer[data-status="cancelled"]', timeout=10_000)
    assert page.inner_text("[data-role=status]").strip() == "Stopped"
    assert (page.text_content("[data-role=thinking]") or "").strip()
    page.close()


def test_a_dropped_connection_resumes_without_losing_or_repeating_text(
    stack: Stack, browser: object
) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(stack.base_url + "/")
    page.click("button[data-sample=weissensee]")
    page.wait_for_selector(".thinking-text", timeout=20_000)

    # Every socket drops at once: the web server goes away and comes back on the same port.
    stack.kill("web")
    stack.start_web()

    page.wait_for_selector('article.answer[data-status="done"]', timeout=60_000)
    message_id = page.get_attribute("article.answer", "id").removeprefix("answer-")
    stored = page.request.get(f"{stack.base_url}/api/v1/messages/{message_id}").json()
    def squeeze(text: str) -> str:
        return "".join(text.split())

    thinking = "".join(page.locator(".thinking-text").all_text_contents())
    reflections = page.locator(".reflection-text").all_text_contents()
    output = page.text_content("[data-role=output]") or ""
    assert squeeze(thinking) == squeeze(stored["sections"]["thinking"])
    assert [squeeze(r) for r in reflections] == [
        squeeze(r) for r in stored["sections"]["reflections"]
    ]
    assert output.strip() == stored["sections"]["output"].strip()
    page.close()
