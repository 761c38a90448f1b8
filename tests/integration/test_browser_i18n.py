"""A visitor whose browser asks for Chinese, in Chromium: the page says so (<html lang>), and
everything the page's scripts write while an answer is asked, waited for, written and finished
is in Simplified Chinese (the status line, the tab title, the phase times, the reflection
label, the facts and stats, the check, the announcements, the copy button, the theme toggle).
A visitor whose browser asks for English switches to Chinese with the header's button, and the
choice stays for the pages after.

The server-rendered texts are translated in django.po; the texts checked here are the ones the
scripts write from djangojs.po. One slot (GENERATION_CONCURRENCY=1), so a second visitor waits
in line; every test ends with its answers finished or stopped. Screenshots go to
test-artifacts/i18n-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from devtools.stack import Stack
from inference.samples import sample_in
from tests.integration.chromium import needs_chromium
from tests.integration.stack import playground_stack
from tests.integration.test_browser import NO_HORIZONTAL_SCROLL, shot

pytestmark = [pytest.mark.integration, needs_chromium]

# Optional chaining: read while a page is being replaced (a form's navigation), the element
# is missing for a moment, and a predicate that throws ends Playwright's wait at once.
STATUS_TEXT = "document.querySelector('[data-role=status]')?.textContent.trim()"
STATUS = f"() => {STATUS_TEXT}"
LANG = "() => document.documentElement.lang"
SWITCH_TEXT = "document.querySelector('form.language-switch button')?.textContent.trim()"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with playground_stack(
        "browser-i18n",
        redis_db=7,
        sim_args=["--tokens-per-second", "40", "--seed", "4"],
        GENERATION_CONCURRENCY="1",
    ) as running:
        yield running


def chinese_context(browser: object, width: int = 1280, height: int = 800) -> object:
    """A browser set to Chinese (China): it sends Accept-Language: zh-CN."""
    return browser.new_context(  # type: ignore[attr-defined]
        locale="zh-CN",
        viewport={"width": width, "height": height},
        permissions=["clipboard-read", "clipboard-write"],
    )


@pytest.mark.parametrize(("width", "height"), [(390, 844), (1280, 800)])
def test_a_chinese_browser_sees_the_live_answer_written_in_chinese(
    stack: Stack, browser: object, width: int, height: int
) -> None:
    context = chinese_context(browser, width, height)
    page = context.new_page()
    page.goto(stack.base_url + "/")
    assert page.evaluate(LANG) == "zh-Hans"
    toggle = page.locator("button[data-theme-toggle]")
    assert toggle.inner_text() == "主题：跟随系统"
    assert (toggle.get_attribute("aria-label") or "").startswith("主题：跟随系统（当前为")
    assert page.evaluate(NO_HORIZONTAL_SCROLL)
    shot(page, f"i18n-home-{width}")
    sheep = sample_in("zh-hans", "sheep")
    assert sheep is not None
    assert page.inner_text("button[data-sample=sheep] .sample-title") == sheep.title

    page.click("button[data-sample=sheep]")
    page.wait_for_selector('article.answer[data-status="running"]', timeout=20_000)
    page.wait_for_function(
        f"() => ['思考中…', '反思中…', '回答中…', '完成'].includes({STATUS_TEXT})",
        timeout=10_000,
    )
    # The status line may be the server's (the page opened on a running answer) before the
    # script has run: the tab title follows within the wait.
    page.wait_for_function("() => document.title.startsWith('生成中… · ')", timeout=10_000)
    # The sheep's thinking catches its own mistake: the reflection is labelled and counted.
    page.wait_for_selector("aside.reflection .reflection-text", timeout=20_000)
    assert page.inner_text("aside.reflection .reflection-label") == "反思 · 模型在纠正自己"
    assert page.inner_text("[data-role=reflection-count]").strip() == "· 1 次反思"
    assert page.evaluate(NO_HORIZONTAL_SCROLL)
    shot(page, f"i18n-writing-{width}")

    page.wait_for_selector('article.answer[data-status="done"]', timeout=60_000)
    assert page.evaluate(STATUS) == "完成"
    assert page.title().startswith("✓ ")
    # The time spent in each phase, in the page's units.
    thinking_time = page.inner_text('.phase[data-phase="thinking"] .phase-time')
    assert re.fullmatch(r"[\d.]+ 秒", thinking_time), thinking_time
    facts = page.inner_text("[data-role=facts]")
    assert re.fullmatch(r"\S+ · [\d.]+ 秒 · [\d.]+ 词元/秒", facts), facts
    page.click("[data-role=facts]")
    stats = page.inner_text("[data-role=stats]")
    for piece in ("排队 ", "首个词元 ", " 个词元", " 词元/秒", "共计 ", "正常结束"):
        assert piece in stats, stats
    assert "由 " in page.inner_text("[data-role=provenance]")
    # The sample was asked in its Chinese words and answered in Chinese (the simulator's
    # Chinese script), and the same checker read the Chinese answer.
    assert page.inner_text(".question > p") == sheep.prompt
    assert "还剩 9 只羊" in page.inner_text("[data-role=output-rendered]")
    check = page.inner_text("[data-role=check]")
    assert "正确" in check and "预期答案：9。" in check, check
    assert "反思之前，思考中的答案是 8" in check, check
    page.wait_for_function(
        "() => document.getElementById('announcer').textContent.startsWith('回答已完成。')"
    )
    assert "预期答案：9" in page.inner_text("#announcer")

    page.click("button[data-copy=answer]")
    page.wait_for_function(
        "() => document.querySelector('button[data-copy=answer]').textContent === '已复制'"
    )
    assert page.evaluate(NO_HORIZONTAL_SCROLL)
    shot(page, f"i18n-done-{width}")
    context.close()


def test_a_chinese_visitor_waiting_in_line_sees_their_place_in_chinese(
    stack: Stack, browser: object
) -> None:
    first = chinese_context(browser)
    writing = first.new_page()
    writing.goto(stack.base_url + "/")
    writing.click("button[data-sample=agatha]")
    writing.wait_for_selector('article.answer[data-status="running"]', timeout=20_000)

    second = chinese_context(browser, 390, 844)
    waiting = second.new_page()
    waiting.goto(stack.base_url + "/")
    waiting.click("button[data-sample=sheep]")
    waiting.wait_for_function("() => document.title.startsWith('排队第 1 位 · ')", timeout=10_000)
    waiting.wait_for_function(f"() => {STATUS_TEXT}.startsWith('排队中：第 1 位')")
    assert waiting.evaluate(NO_HORIZONTAL_SCROLL)
    shot(waiting, "i18n-in-line-390")

    # The first visitor stops theirs. The stop form's page swap may come before or after the
    # socket's "cancelled": the status line says so in Chinese either way.
    writing.click("[data-role=stop] button")
    writing.wait_for_selector('article.answer[data-status="cancelled"]', timeout=10_000)
    writing.wait_for_function(f"() => {STATUS_TEXT} === '已停止'", timeout=5_000)
    shot(writing, "i18n-stopped-1280")

    waiting.wait_for_selector('article.answer[data-status="done"]', timeout=60_000)
    assert waiting.evaluate(STATUS) == "完成"
    first.close()
    second.close()


def test_the_language_switch_turns_the_pages_chinese_and_is_remembered(
    stack: Stack, browser: object
) -> None:
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(stack.base_url + "/")
    assert page.evaluate(LANG) == "en"
    toggle = page.locator("button[data-theme-toggle]")
    assert toggle.inner_text() == "Theme: system"

    page.click("form.language-switch button")
    page.wait_for_function(f"() => {SWITCH_TEXT} === 'English'", timeout=10_000)
    # A whole new page, head included: a boosted swap of the body alone would keep the old
    # <html lang> and the scripts' English catalog.
    assert page.evaluate(LANG) == "zh-Hans", "the switch must not be boosted"
    assert toggle.inner_text() == "主题：跟随系统", "the scripts' catalog is Chinese"

    # Remembered: a new page load is Chinese too, its scripts included (the catalog one page
    # loaded in English must not come back from the browser's cache).
    page.goto(stack.base_url + "/")
    assert page.evaluate(LANG) == "zh-Hans"
    assert page.locator("button[data-theme-toggle]").inner_text() == "主题：跟随系统", (
        "the scripts' catalog must have a URL of its own per language"
    )
    page.click("button[data-sample=sheep]")
    page.wait_for_selector('article.answer[data-status="done"]', timeout=60_000)
    assert page.evaluate(STATUS) == "完成"
    assert page.evaluate(NO_HORIZONTAL_SCROLL)
    shot(page, "i18n-switched-1280")

    # And back: English again, the scripts included.
    page.click("form.language-switch button")
    page.wait_for_function(f"() => {SWITCH_TEXT} === '中文'", timeout=10_000)
    page.goto(stack.base_url + "/")
    assert page.evaluate(LANG) == "en"
    assert page.locator("button[data-theme-toggle]").inner_text() == "Theme: system"
    context.close()
