"""A launch-day visitor in Chromium: the question box in the first screen, the live text
followed (and not, once they scroll up), a follow-up that opens where it is answered, the place
in line in the tab title and a chime when the answer starts, sharing in one click with a
preview picture, a shared question asked again, an earlier question edited and its old branch
switched back to, a rich answer (bold, table, math, code) streamed without raw marks, and a
question on its way (its POST held) that says so and is sent once.

One slot (GENERATION_CONCURRENCY=1) and a slow simulator, so an answer is written for long
enough to scroll around in, and a second visitor waits in line behind it. Every test ends with
its answers finished or stopped, so the next one finds the slot free. Screenshots go to
test-artifacts/visitor-*.png.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.stack import Stack
from tests.integration.chromium import needs_chromium
from tests.integration.stack import ARTIFACTS, playground_stack
from tests.integration.test_browser import (
    NO_HORIZONTAL_SCROLL,
    seed_conversation,
    shot,
)

pytestmark = [pytest.mark.integration, needs_chromium]

# Where the live end of the answers is, against the part of the viewport the docked composer
# leaves free (the slack is follow.js's: "at the live end" within 96 px).
LIVE_END_GAP = """() => {
  const answers = [...document.querySelectorAll('article.answer')];
  const end = Math.max(...answers.map((a) => a.getBoundingClientRect().bottom));
  const docked = document.querySelector('.composer-docked');
  const free = docked ? Math.min(innerHeight, docked.getBoundingClientRect().top) : innerHeight;
  return end - free;
}"""

COUNT_TONES = """
window.tonesStarted = 0;
const start = OscillatorNode.prototype.start;
OscillatorNode.prototype.start = function (...args) {
  window.tonesStarted += 1;
  return start.apply(this, args);
};
"""

IN_VIEWPORT = """(selector) => {
  const box = document.querySelector(selector).getBoundingClientRect();
  return box.top >= 0 && box.bottom <= innerHeight && box.height > 0;
}"""


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with playground_stack(
        "browser-visitor",
        redis_db=5,
        sim_args=["--tokens-per-second", "25", "--seed", "4"],
        GENERATION_CONCURRENCY="1",
    ) as running:
        yield running


def stop_if_running(page: object) -> None:
    """Free the one slot for the next test."""
    stop = page.locator("[data-role=stop] button")  # type: ignore[attr-defined]
    if stop.count() and stop.first.is_visible():
        stop.first.click()
        page.wait_for_selector(  # type: ignore[attr-defined]
            'article.answer:is([data-status="cancelled"], [data-status="done"])', timeout=10_000
        )


@pytest.mark.parametrize(("width", "height"), [(390, 844), (1280, 800)])
def test_the_question_box_is_in_the_first_screen(
    stack: Stack, browser: object, width: int, height: int
) -> None:
    context = browser.new_context(viewport={"width": width, "height": height})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(stack.base_url + "/")

    assert page.evaluate(IN_VIEWPORT, "textarea[name=prompt]")
    assert page.evaluate(IN_VIEWPORT, "form.composer button[type=submit]")
    assert page.evaluate(NO_HORIZONTAL_SCROLL)
    shot(page, f"visitor-home-{width}")
    context.close()


def test_a_live_answer_is_followed_until_the_visitor_scrolls_up(
    stack: Stack, browser: object
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 560})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(stack.base_url + "/")
    page.click("button[data-sample=agatha]")
    page.wait_for_selector('article.answer[data-status="running"]', timeout=20_000)
    page.wait_for_function("() => document.title.startsWith('Writing… · ')", timeout=10_000)

    # The answer grows well past the first screen and the page keeps its live end in view.
    page.wait_for_function(f"() => ({LIVE_END_GAP})() + scrollY > 250", timeout=30_000)
    assert page.evaluate("() => scrollY") > 150
    assert page.evaluate(LIVE_END_GAP) <= 96
    shot(page, "visitor-following")

    # Scrolling up stops following: the text goes on growing below, the place stays.
    page.mouse.wheel(0, -10_000)
    page.wait_for_function("() => scrollY === 0")
    page.wait_for_selector("button.jump-to-live:not([hidden])", timeout=15_000)
    height = page.evaluate("() => document.documentElement.scrollHeight")
    page.wait_for_function("(h) => document.documentElement.scrollHeight > h + 40", arg=height)
    assert page.evaluate("() => scrollY") == 0
    assert page.evaluate(IN_VIEWPORT, "button.jump-to-live")
    shot(page, "visitor-scrolled-up")

    # "Jump to live" brings the live end back and following resumes.
    page.click("button.jump-to-live")
    page.wait_for_function(f"() => ({LIVE_END_GAP})() <= 96", timeout=15_000)
    page.wait_for_selector("button.jump-to-live", state="hidden")
    page.wait_for_selector('article.answer[data-status="done"]', timeout=90_000)
    assert page.title().startswith("✓ ")
    assert page.evaluate(LIVE_END_GAP) <= 96, "followed to the end"
    context.close()


def test_a_second_visitor_sees_their_place_in_line_in_the_tab_title(
    stack: Stack, browser: object
) -> None:
    first = browser.new_context()  # type: ignore[attr-defined]
    writing = first.new_page()
    writing.goto(stack.base_url + "/")
    writing.click("button[data-sample=agatha]")
    writing.wait_for_selector('article.answer[data-status="running"]', timeout=20_000)

    second = browser.new_context(  # type: ignore[attr-defined]
        viewport={"width": 390, "height": 844}, permissions=["notifications"]
    )
    # Tones the page starts, counted as they are scheduled (headless Chromium plays them to no
    # speaker).
    second.add_init_script(COUNT_TONES)
    waiting = second.new_page()
    waiting.goto(stack.base_url + "/")
    waiting.click("button[data-sample=sheep]")
    waiting.wait_for_function("() => document.title.startsWith('#1 in line · ')", timeout=30_000)
    assert waiting.evaluate(IN_VIEWPORT, "[data-role=status]")
    assert waiting.is_visible("[data-role=line-progress] progress")
    waiting.click("button[data-role=notify]")
    waiting.wait_for_function(
        "() => document.querySelector('button[data-role=notify]').textContent"
        " === 'You will be notified, with a chime'"
    )
    shot(waiting, "visitor-in-line-phone")
    assert waiting.evaluate("() => window.tonesStarted") == 0, "no sound while waiting"

    stop_if_running(writing)
    waiting.wait_for_selector('article.answer[data-status="running"]', timeout=30_000)
    waiting.wait_for_function("() => window.tonesStarted === 2")
    waiting.wait_for_selector('article.answer[data-status="done"]', timeout=60_000)
    assert waiting.title().startswith("✓ ")
    assert waiting.evaluate("() => window.tonesStarted") == 2, "one chime, once"
    first.close()
    second.close()


def test_a_follow_up_opens_at_the_new_question_with_the_composer_in_reach(
    stack: Stack, browser: object
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 720})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(stack.base_url + "/")
    session = next(c["value"] for c in context.cookies() if c["name"] == "sessionid")
    seeded = seed_conversation(stack, session)
    page.goto(f"{stack.base_url}/c/{seeded['id']}/")
    page.wait_for_selector("[data-role=output-rendered]:not([hidden])")
    assert page.evaluate("() => document.documentElement.scrollHeight > innerHeight")
    assert page.evaluate(IN_VIEWPORT, ".composer-docked textarea[name=prompt]"), "docked"
    assert page.evaluate("() => scrollY") == 0

    page.fill(".composer-docked textarea[name=prompt]", "And what about 9.11 versus 9.9?")
    page.click(".composer-docked button[type=submit]")

    page.wait_for_function("() => document.querySelectorAll('article.answer').length === 2")
    # The new turn is on screen: its question, or, once the answer streams and the page follows
    # it, the answer's live end below it.
    turn = "ol.turns > li.turn:last-child"
    page.wait_for_function(
        "(s) => { const b = document.querySelector(s).getBoundingClientRect();"
        " return b.bottom > 0 && b.top < innerHeight; }",
        arg=turn,
        timeout=15_000,
    )
    assert "9.11 versus 9.9" in page.inner_text(turn + " .question")
    assert page.evaluate(IN_VIEWPORT, ".composer-docked textarea[name=prompt]")
    shot(page, "visitor-follow-up")
    page.wait_for_selector(
        "ol.turns > li.turn:last-child article.answer[data-status=done]", timeout=60_000
    )
    context.close()


def test_copy_link_copies_the_share_link_and_its_reader_can_ask_the_same(
    stack: Stack, browser: object
) -> None:
    owner_context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])  # type: ignore[attr-defined]
    owner = owner_context.new_page()
    owner.goto(stack.base_url + "/")
    owner.click("button[data-sample=bat-and-ball]")
    owner.wait_for_selector('article.answer[data-status="done"]', timeout=60_000)

    owner.click(".share-tool summary")
    owner.click("button[data-copy=share-link]")
    owner.wait_for_function(
        "() => document.querySelector('button[data-copy=share-link]').textContent === 'Copied'"
    )
    link = owner.evaluate("() => navigator.clipboard.readText()")
    assert link == owner.input_value("#share-link")
    assert "/s/" in link
    shot(owner, "visitor-share")

    reader_context = browser.new_context(viewport={"width": 390, "height": 844})  # type: ignore[attr-defined]
    reader = reader_context.new_page()
    reader.goto(link)
    assert reader.evaluate(NO_HORIZONTAL_SCROLL)
    shot(reader, "visitor-shared-phone")
    # The link's preview picture: what a chat app shows when the link is pasted.
    image = reader.get_attribute('meta[property="og:image"]', "content")
    assert image == link + "preview.png"
    size = reader.evaluate(
        "(src) => new Promise((done) => { const img = new Image();"
        " img.onload = () => done([img.naturalWidth, img.naturalHeight]); img.src = src; })",
        image,
    )
    assert size == [1200, 630]
    (ARTIFACTS / "visitor-share-preview.png").write_bytes(reader.request.get(image).body())
    reader.click("form.ask-yourself button")
    reader.wait_for_url(f"{stack.base_url}/c/**")
    assert "/s/" not in reader.url
    reader.wait_for_selector('article.answer[data-status="done"]', timeout=60_000)
    assert "ball" in reader.inner_text(".question p")
    assert "Expected" in reader.inner_text("[data-role=check]"), "asked as the sample: checked"
    owner_context.close()
    reader_context.close()


def ask_and_stop(page: object, composer: str, prompt: str, turns: int) -> None:
    """Ask, and stop the answer once it is written: a finished turn, quickly."""
    page.fill(f"{composer} textarea[name=prompt]", prompt)  # type: ignore[attr-defined]
    page.click(f"{composer} button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        "(n) => document.querySelectorAll('ol.turns > li.turn').length === n", arg=turns
    )
    stop_and_wait_for_the_page(page)


def stop_and_wait_for_the_page(page: object) -> None:
    """Stop the running answer and wait for the page the stop's form swaps in: the stream says
    "cancelled" before that, and what is typed or opened in between would be swapped away."""
    page.wait_for_selector(  # type: ignore[attr-defined]
        'li.turn:last-child article.answer[data-status="running"]', timeout=20_000
    )
    page.evaluate("() => { document.querySelector('ol.turns').dataset.old = 'yes'; }")  # type: ignore[attr-defined]
    page.click("[data-role=stop] button")  # type: ignore[attr-defined]
    page.wait_for_function("() => !document.querySelector('ol.turns').dataset.old")  # type: ignore[attr-defined]
    page.wait_for_selector('article.answer[data-status="cancelled"]')  # type: ignore[attr-defined]


def shown_questions(page: object) -> list[str]:
    return page.eval_on_selector_all(".turn .question > p", "ps => ps.map(p => p.textContent)")  # type: ignore[attr-defined]


@pytest.mark.parametrize(("width", "height"), [(390, 844), (1280, 800)])
def test_an_earlier_question_is_edited_and_the_old_branch_switched_back_to(
    stack: Stack, browser: object, width: int, height: int
) -> None:
    context = browser.new_context(viewport={"width": width, "height": height})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(stack.base_url + "/")
    ask_and_stop(page, "form.composer", "One", turns=1)
    ask_and_stop(page, ".composer-docked", "Two", turns=2)
    ask_and_stop(page, ".composer-docked", "Three", turns=3)
    assert shown_questions(page) == ["One", "Two", "Three"]

    second = "ol.turns > li.turn:nth-child(2)"
    page.click(f"{second} .edit-question summary")
    page.fill(f"{second} .edit-question textarea", "Two, in other words")
    assert page.evaluate(NO_HORIZONTAL_SCROLL)
    shot(page, f"visitor-edit-before-{width}")
    page.click(f"{second} .edit-question button[type=submit]")

    # The new version replaces turn two and the turns after it, and its answer is on screen.
    page.wait_for_function("() => document.querySelectorAll('ol.turns > li.turn').length === 2")
    assert shown_questions(page) == ["One", "Two, in other words"]
    assert "Version 2 of 2" in page.inner_text(f"{second} .versions")
    page.wait_for_function(
        "(s) => { const b = document.querySelector(s).getBoundingClientRect();"
        " return b.bottom > 0 && b.top < innerHeight; }",
        arg=f"{second} article.answer",
        timeout=15_000,
    )
    stop_and_wait_for_the_page(page)
    assert page.evaluate(NO_HORIZONTAL_SCROLL)
    shot(page, f"visitor-edit-after-{width}")

    # The old version comes back with the turn that followed it, where the visitor clicked.
    top_before = page.evaluate(
        f"() => document.querySelector('{second}').getBoundingClientRect().top"
    )
    page.click(f"{second} .versions button[aria-label='Previous version of this question']")
    page.wait_for_function("() => document.querySelectorAll('ol.turns > li.turn').length === 3")
    assert shown_questions(page) == ["One", "Two", "Three"]
    assert "Version 1 of 2" in page.inner_text(f"{second} .versions")
    # Where it was on screen once the page settles (a frame or two after the swap).
    page.wait_for_function(
        "([s, top]) => Math.abs(document.querySelector(s).getBoundingClientRect().top - top) <= 2",
        arg=[second, top_before],
        timeout=5_000,
    )
    assert page.evaluate(NO_HORIZONTAL_SCROLL)
    shot(page, f"visitor-edit-switched-back-{width}")

    page.click(f"{second} .versions button[aria-label='Next version of this question']")
    page.wait_for_function("() => document.querySelectorAll('ol.turns > li.turn').length === 2")
    assert shown_questions(page) == ["One", "Two, in other words"]
    context.close()


# Every change to the rendered answer, checked for Markdown's marks shown as typed.
WATCH_FOR_RAW_MARKS = """
window.rawMarksSeen = [];
window.renderedChanges = 0;
new MutationObserver(() => {
  const rendered = document.querySelector('[data-role=output-rendered]');
  if (!rendered) return;
  window.renderedChanges += 1;
  const text = rendered.textContent;
  if (text.includes('**') || text.includes('$$')) window.rawMarksSeen.push(text);
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


def test_rich_formatting_streams_without_raw_marks_and_renders_table_math_and_code(
    stack: Stack, browser: object
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    context.add_init_script(WATCH_FOR_RAW_MARKS)
    page = context.new_page()
    page.goto(stack.base_url + "/")
    page.click("button[data-sample=odd-numbers]")
    page.wait_for_selector('article.answer[data-status="done"]', timeout=90_000)

    # Streamed in many steps, and not one of them showed a "**" or "$$" as typed.
    assert page.evaluate("() => window.renderedChanges") > 10
    assert page.evaluate("() => window.rawMarksSeen") == []
    rendered = "[data-role=output-rendered]"
    assert page.inner_text(f"{rendered} strong") == "10000"
    assert page.locator(f"{rendered} table tr").count() == 5
    assert page.locator(f"{rendered} .katex").count() >= 3
    assert "print(sum(range(1, 200, 2)))" in page.inner_text(f"{rendered} pre code")
    assert "Expected: 10000." in page.inner_text("[data-role=check]")
    shot(page, "visitor-rich-answer")
    context.close()


def hold_questions(page: object) -> list[object]:
    """Hold every question the page posts (the routes are let through by the caller): a launch
    rush's POST answered many seconds later, made to wait as long as the test needs."""
    held: list[object] = []

    def hold(route: object) -> None:
        if route.request.method == "POST":  # type: ignore[attr-defined]
            held.append(route)
        else:
            route.continue_()  # type: ignore[attr-defined]

    page.route("**/c/new", hold)  # type: ignore[attr-defined]
    return held


def test_a_question_on_its_way_says_so_and_a_second_enter_sends_nothing(
    stack: Stack, browser: object
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})  # type: ignore[attr-defined]
    page = context.new_page()
    held = hold_questions(page)
    page.goto(stack.base_url + "/")
    box = ".composer-first textarea[name=prompt]"
    page.fill(box, "How many r's are in strawberry?")
    page.press(box, "Enter")
    page.wait_for_selector(".composer-first form.htmx-request")

    button = page.locator(".composer-first button[type=submit]")
    assert button.is_disabled()
    assert button.inner_text() == "Sending…"
    # Not at once: a quick answer never flashes the note.
    assert not page.locator(".composer-first .busy-note").is_visible()
    page.wait_for_selector(".composer-first .busy-note", state="visible", timeout=5_000)
    assert "keep this page open" in page.inner_text(".composer-first .busy-note")
    assert page.evaluate(NO_HORIZONTAL_SCROLL)
    shot(page, "visitor-sending")

    page.press(box, "Enter")
    page.wait_for_timeout(500)
    assert len(held) == 1, "the second Enter was dropped"

    held[0].continue_()  # type: ignore[attr-defined]
    page.wait_for_url(f"{stack.base_url}/c/**")
    page.wait_for_selector("article.answer")
    assert page.locator("li.turn").count() == 1
    page.wait_for_timeout(500)
    assert len(held) == 1, "nothing was queued to be sent after the first answer either"
    stop_if_running(page)
    context.close()


def test_one_sample_at_a_time_is_on_its_way(stack: Stack, browser: object) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    page = context.new_page()
    held = hold_questions(page)
    page.goto(stack.base_url + "/")
    page.click("button[data-sample=strawberry]")
    page.wait_for_selector("form.sample-card.htmx-request")

    card = page.locator("button[data-sample=strawberry]")
    assert card.is_disabled()
    assert "Sending…" in card.inner_text()
    page.wait_for_selector("form.sample-card .busy-note", state="visible", timeout=5_000)
    page.click("button[data-sample=sheep]")
    page.wait_for_timeout(500)
    assert len(held) == 1, "the second sample was dropped"

    held[0].continue_()  # type: ignore[attr-defined]
    page.wait_for_url(f"{stack.base_url}/c/**")
    page.wait_for_selector("article.answer")
    assert "strawberry" in page.inner_text(".question p")
    stop_if_running(page)
    context.close()
