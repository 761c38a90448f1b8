"""A real browser (Debian's Chromium driven by Playwright) against the real stack.

A visitor opens the playground, clicks the strawberry card and watches the thinking, a
reflection and the answer stream in, each in its own area. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.stack import Stack
from tests.integration.chromium import needs_chromium
from tests.integration.stack import ARTIFACTS, playground_stack

pytestmark = [pytest.mark.integration, needs_chromium]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with playground_stack(
        "browser", redis_db=9, sim_args=["--tokens-per-second", "60", "--seed", "2"]
    ) as running:
        yield running


def shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def open_facts(page: object) -> None:
    """Open the stats and provenance under an answer's compact facts line (one click away)."""
    page.click("[data-role=facts]")  # type: ignore[attr-defined]


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
    open_facts(page)
    assert "tokens" in page.inner_text("[data-role=stats]")
    assert page.is_visible("form[data-regenerate-for] button"), "regenerate without a reload"
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
    stack.kill_web()
    stack.start_web()

    page.wait_for_selector('article.answer[data-status="done"]', timeout=60_000)
    assert_the_page_shows_the_stored_answer(page, stack)
    page.close()


def assert_the_page_shows_the_stored_answer(page: object, stack: Stack) -> dict:
    """The streamed page holds exactly the stored answer (whitespace aside); the answer."""
    message_id = page.get_attribute("article.answer", "id").removeprefix("answer-")  # type: ignore[attr-defined]
    stored = page.request.get(f"{stack.base_url}/api/v1/messages/{message_id}").json()  # type: ignore[attr-defined]

    def squeeze(text: str) -> str:
        return "".join(text.split())

    thinking = "".join(page.locator(".thinking-text").all_text_contents())  # type: ignore[attr-defined]
    reflections = page.locator(".reflection-text").all_text_contents()  # type: ignore[attr-defined]
    output = page.text_content("[data-role=output]") or ""  # type: ignore[attr-defined]
    assert squeeze(thinking) == squeeze(stored["sections"]["thinking"])
    assert [squeeze(r) for r in reflections] == [
        squeeze(r) for r in stored["sections"]["reflections"]
    ]
    assert output.strip() == stored["sections"]["output"].strip()
    return stored


def test_an_answer_restarted_by_a_worker_restart_replaces_its_text_cleanly(
    stack: Stack, browser: object
) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(stack.base_url + "/")
    page.click("button[data-sample=day-before]")
    page.wait_for_selector(".thinking-text", timeout=20_000)
    before = page.text_content("[data-role=thinking]") or ""

    # What Ctrl-C and `make run` do to the workers: the answer goes back in line, and the page
    # is told to drop the interrupted attempt's text.
    workers = [name for name in stack.processes if name.startswith("worker")]
    for name in workers:
        stack.kill(name, signal.SIGTERM)
    page.wait_for_selector('article.answer[data-status="queued"]', timeout=20_000)
    assert "restarted" in page.inner_text("[data-role=status]")
    assert (page.text_content("[data-role=thinking]") or "") == "", f"cleared: {before[:40]}"
    for name in workers:
        stack.start_worker(name, beat=name == "worker")

    page.wait_for_selector('article.answer[data-status="done"]', timeout=60_000)
    stored = assert_the_page_shows_the_stored_answer(page, stack)  # one attempt, unspliced
    assert stored["attempt"] == 2
    page.close()


# --- reading an answer: Markdown, math, code, phases, checks, provenance (issue 6) ----------

HOSTILE = {
    # Each would set window.__pwned or open a dialog if it ever ran.
    "script": "<script>window.__pwned = 'script'; alert('script')</script>",
    "img": "<img src=x onerror=\"window.__pwned = 'img'; alert('img')\">",
    "svg": "<svg onload=\"alert('svg')\"></svg>",
    "link": "[click me](javascript:alert('link'))",
    "raw_link": "<a href=\"javascript:alert('a')\" onclick=\"alert('a')\">raw link</a>",
    "iframe": "<iframe src=\"javascript:alert('iframe')\"></iframe>",
    "style": '<p style="position:fixed;inset:0">overlay</p>',
}

RICH_OUTPUT = "\n".join(
    [
        "## Squares",
        "",
        "| n | n squared |",
        "|---|-----------|",
        "| 2 | 4 |",
        "| 3 | 9 |",
        "",
        "```python",
        "def square(n):",
        "    return n * n  # $not math$ in code",
        "```",
        "",
        "Pythagoras: $a^2 + b^2 = c^2$, and Euler \\(e^{i\\pi} + 1 = 0\\).",
        "",
        "$$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$",
        "",
        "\\[\\sum_{k=1}^{n} k = \\frac{n(n+1)}{2}\\]",
        "",
        "Prices like $5 and $10 stay plain text. A [safe link](https://example.com/).",
        "",
        "- [x] a task that is done",
        "- an image: ![tracker](https://example.com/pixel.png)",
        "",
        "Inline: " + " and ".join(HOSTILE.values()),
        "",
        *(f"{value}\n" for value in HOSTILE.values()),
    ]
)

SEED_SCRIPT = r"""
import json, os
from django.utils import timezone
from playground.models import Conversation, Message

spec = json.loads(os.environ["SEED_SPEC"])
now = timezone.now()
conversation = Conversation.objects.create(session_key=spec["session_key"], title=spec["title"])
question = Message.objects.create(
    conversation=conversation, role="user", prompt=spec["prompt"], status="done",
    session_key=spec["session_key"],
)
sections = {"thinking": "", "reflections": [], "output": "", "text": ""}
for delta in spec["deltas"]:
    if delta["section"] == "reflection":
        sections["reflections"].append(delta["text"])
    else:
        sections[delta["section"]] += delta["text"]
Message.objects.create(
    conversation=conversation, role="assistant", reply_to=question, prompt=spec["prompt"],
    status="done", session_key=spec["session_key"], sections=sections, deltas=spec["deltas"],
    created=now, started_at=now, first_token_at=now, finished_at=now, tokens=321,
    finish_reason="length", backend="http://tgi.internal:80",
    model_id="acme/reasoner-70b",
    model_info={
        "model_id": "acme/reasoner-70b", "model_sha": "0123456789abcdef", "version": "3.3.4",
    },
    sampling={"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 321, "details": True},
)
print(json.dumps({"id": conversation.pk, "share": conversation.share_token}))
"""


def seed_conversation(stack: Stack, session_key: str) -> dict[str, str]:
    """A finished answer full of Markdown, math, code and hostile markup, straight into the
    stack's database (the simulator only ever echoes one line of a prompt)."""
    pieces = [
        ("thinking", None, f"\nThinking with {HOSTILE['script']}\n"),
        ("reflection", 0, f"\nWait: {HOSTILE['img']}\n"),
        ("thinking", None, "\nDone thinking.\n"),
        ("output", None, f"\n{RICH_OUTPUT}\n"),
    ]
    deltas = [
        {"type": "delta", "seq": seq, "section": section, "index": index, "text": text}
        for seq, (section, index, text) in enumerate(pieces, start=1)
    ]
    spec = {
        "session_key": session_key,
        "title": "Rendering " + HOSTILE["img"],
        "prompt": "Show me everything " + HOSTILE["script"],
        "deltas": deltas,
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", SEED_SCRIPT],
        cwd=Path(__file__).resolve().parents[2],
        env={**stack.env, "SEED_SPEC": json.dumps(spec)},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def watch_for_scripts(page: object) -> list[str]:
    """Dialogs (a hostile script ran) and uncaught errors of the page's own scripts."""
    seen: list[str] = []
    page.on("dialog", lambda dialog: (seen.append(dialog.message), dialog.dismiss()))  # type: ignore[attr-defined]
    page.on("pageerror", lambda error: seen.append(f"page error: {error}"))  # type: ignore[attr-defined]
    return seen


MODEL_TEXT = (
    ".question > p, .conversation-title, [data-role=thinking], [data-role=output], "
    "[data-role=output-rendered], [data-role=text], #active td.prompt"
)
FIND_BAD_MARKUP = """(areas) => {
    const bad = [];
    // Anywhere in the page body: nothing that runs or loads.
    for (const el of document.body.querySelectorAll("*")) {
        const tag = el.tagName.toLowerCase();
        const data = tag === "script" && el.type === "application/json";  // json_script
        if (["script", "img", "iframe", "object", "embed"].includes(tag) && !data) bad.push(tag);
        for (const attr of el.attributes) {
            if (attr.name.startsWith("on")) bad.push(`${tag}[${attr.name}]`);
            const url = ["href", "src", "action", "formaction"].includes(attr.name);
            if (url && /^\\s*javascript:/i.test(attr.value)) bad.push(`${tag}[${attr.name}]`);
        }
    }
    // Where model output and prompts are shown: no forms, styles or SVG of their own either.
    for (const area of document.querySelectorAll(areas)) {
        for (const el of area.querySelectorAll("*")) {
            const tag = el.tagName.toLowerCase();
            if (el.closest(".katex")) continue;  // KaTeX's own layout (trust off)
            const own = ["form", "input", "button:not([data-copy])", "style", "svg"];
            if (own.some((selector) => el.matches(selector))) bad.push(`model ${tag}`);
            if (el.hasAttribute("style")) bad.push(`model ${tag}[style]`);
        }
    }
    return bad;
}"""


def assert_nothing_ran(page: object, dialogs: list[str]) -> None:
    """No dialog, no flag set, nothing executable in the page, no markup from the model."""
    assert dialogs == []
    assert page.evaluate("() => window.__pwned === undefined")  # type: ignore[attr-defined]
    found = page.evaluate(FIND_BAD_MARKUP, MODEL_TEXT)  # type: ignore[attr-defined]
    assert found == [], found


def assert_rich_output_rendered(page: object) -> None:
    output = page.locator("[data-role=output-rendered]")  # type: ignore[attr-defined]
    output.wait_for(state="visible", timeout=10_000)
    assert page.locator("[data-role=output]").is_hidden()  # type: ignore[attr-defined]
    assert output.locator("h2").inner_text() == "Squares"
    assert output.locator(".table-scroll table tr").count() == 3
    assert output.locator("td").nth(3).inner_text() == "9"
    code = output.locator(".code-block pre code.hljs")
    assert "$not math$" in code.inner_text(), "math inside code stays code"
    assert code.locator(".hljs-keyword").count() >= 1, "the code is highlighted"
    assert output.locator(".code-block button[data-copy=code]").count() == 1
    assert output.locator(".math-inline .katex").count() == 2
    assert output.locator(".math-display .katex-display").count() == 2
    assert output.locator(".katex .mfrac").count() >= 2
    assert "$5 and $10 stay plain text" in output.inner_text()
    links = output.locator("a[href]")
    for i in range(links.count()):
        link = links.nth(i)
        assert link.get_attribute("target") == "_blank"
        assert link.get_attribute("rel") == "noopener noreferrer nofollow"
    assert output.locator('a[href="https://example.com/"]').inner_text() == "safe link"
    assert output.locator('a[href="https://example.com/pixel.png"]').count() == 1
    assert output.locator("a:not([href])").count() == 0, "a refused URL leaves just the text"
    assert "click me" in output.inner_text()
    # Raw HTML from the model is shown as text, never parsed.
    assert "<script>" in output.inner_text()
    assert "onerror" in output.inner_text()


def test_markdown_math_and_code_render_and_hostile_output_never_runs(
    stack: Stack, browser: object
) -> None:
    owner = browser.new_context()  # type: ignore[attr-defined]
    page = owner.new_page()
    dialogs = watch_for_scripts(page)
    page.goto(stack.base_url + "/")
    session = next(c["value"] for c in owner.cookies() if c["name"] == "sessionid")
    seeded = seed_conversation(stack, session)

    page.goto(f"{stack.base_url}/c/{seeded['id']}/")
    assert_rich_output_rendered(page)
    assert_nothing_ran(page, dialogs)
    assert HOSTILE["script"] in page.inner_text(".question p")
    assert HOSTILE["img"] in (page.text_content(".reflection-text") or "")
    assert "cut off at the length limit" in page.inner_text("[data-role=cutoff]")
    open_facts(page)
    provenance = page.inner_text("[data-role=provenance]")
    assert "acme/reasoner-70b" in provenance and "0123456789ab" in provenance
    assert "TGI 3.3.4" in provenance and "temperature 0.7" in provenance
    assert page.locator("[data-role=simulated]").is_hidden(), "a real model is not the simulator"
    shot(page, "rendering-owner")

    shared = browser.new_context()  # type: ignore[attr-defined]
    reader = shared.new_page()
    reader_dialogs = watch_for_scripts(reader)
    reader.goto(f"{stack.base_url}/s/{seeded['share']}/")
    assert_rich_output_rendered(reader)
    assert_nothing_ran(reader, reader_dialogs)
    open_facts(reader)
    assert "acme/reasoner-70b" in reader.inner_text("[data-role=provenance]")
    shot(reader, "rendering-shared")
    shared.close()
    owner.close()


def test_a_markdown_prompt_renders_live_and_its_markup_never_runs(
    stack: Stack, browser: object
) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    dialogs = watch_for_scripts(page)
    prompt = (
        "Is $x^2$ **bold** with `code`? "
        '<script>window.__pwned = 1; alert(1)</script><img src=x onerror="alert(2)">'
    )
    page.goto(stack.base_url + "/")
    page.fill("textarea[name=prompt]", prompt)
    page.keyboard.press("Enter")  # Enter sends
    page.wait_for_selector('article.answer[data-status="done"]', timeout=30_000)

    output = page.locator("[data-role=output-rendered]")
    assert output.locator("blockquote .math-inline .katex").count() == 1
    assert output.locator("blockquote strong").inner_text() == "bold"
    assert output.locator("blockquote code").inner_text() == "code"
    assert "<script>" in output.inner_text()
    assert_nothing_ran(page, dialogs)
    assert page.locator("[data-role=simulated]").is_visible()
    assert "not a real model" in page.inner_text("[data-role=simulated]")
    assert page.locator("[data-role=check]").is_hidden(), "a free prompt has no answer check"
    page.close()


def test_phases_check_and_provenance_of_a_sample_and_the_thinking_panel(
    stack: Stack, browser: object
) -> None:
    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(stack.base_url + "/")
    page.click("button[data-sample=decimal-compare]")

    page.wait_for_selector('.phase[data-phase="thinking"][data-state="current"]', timeout=20_000)
    assert page.locator("[data-role=thinking-box]").get_attribute("open") is not None
    assert page.locator('.phase[data-phase="queued"]').get_attribute("data-state") == "past"
    page.wait_for_selector('.phase[data-phase="reflecting"][data-state="current"]', timeout=20_000)
    # The live region is emptied and written a moment later (so a repeat is read again).
    page.wait_for_function(
        "() => document.getElementById('announcer').textContent.includes('Reflection')",
        timeout=5_000,
    )
    page.wait_for_selector('.phase[data-phase="answering"][data-state="current"]', timeout=20_000)
    # The answer arrived: the thinking folds away.
    page.wait_for_function(
        "() => !document.querySelector('[data-role=thinking-box]').open", timeout=5_000
    )
    page.wait_for_selector('article.answer[data-status="done"]', timeout=30_000)
    shot(page, "phases-done")

    phases = page.inner_text("[data-role=phases]")
    for label in ("Queued", "Thinking", "Reflecting", "Answering", "Done"):
        assert label in phases
    assert " s" in page.inner_text('.phase[data-phase="reflecting"]')
    check = page.locator("[data-role=check]")
    assert "Correct" in check.inner_text() and "Expected: 9.9" in check.inner_text()
    assert "A reflection changed the outcome" in check.inner_text()
    assert page.locator("[data-role=check].check-correct").count() == 1
    # One compact line of facts, filled live; the details are one click away.
    facts = page.inner_text("[data-role=facts]")
    assert re.fullmatch(r"simulator · [\d.]+ s · [\d.]+ tokens/s", facts), facts
    assert page.locator("[data-role=stats]").is_hidden()
    open_facts(page)
    stats = page.inner_text("[data-role=stats]")
    for piece in ("Queue", "First token", "tokens", "tokens/s", "in all", "finished normally"):
        assert piece in stats
    assert "reflection-playground/simulator" in page.inner_text("[data-role=provenance]")
    assert page.locator("[data-role=simulated]").is_visible()
    page.wait_for_function(
        "() => document.getElementById('announcer').textContent.startsWith('Answer ready')"
    )
    assert "Correct" in page.inner_text("#announcer")

    # The visitor opens the thinking again; the choice outlives the page.
    page.click("[data-role=thinking-box] summary")
    # A <details> reports its toggle in a task of its own: the choice is stored a moment after
    # the click, and a reload at once could come first.
    page.wait_for_function("() => localStorage.getItem('playground:thinking') === 'open'")
    page.reload()
    page.wait_for_selector("[data-role=output-rendered]:not([hidden])")
    assert page.locator("[data-role=thinking-box]").get_attribute("open") is not None
    assert "Correct" in page.inner_text("[data-role=check]"), "the server renders the check too"
    # The phases and their times outlive the reload too.
    for name in ("queued", "thinking", "reflecting", "answering"):
        phase = page.locator(f'.phase[data-phase="{name}"]')
        assert phase.get_attribute("data-state") == "past", name
        assert re.search(r"\d s$", phase.inner_text()), phase.inner_text()
    context.close()


def test_the_share_link_in_a_second_browser_shows_the_stream_live(
    stack: Stack, browser: object
) -> None:
    owner = browser.new_page()  # type: ignore[attr-defined]
    owner.goto(stack.base_url + "/")
    owner.click("button[data-sample=weissensee]")
    owner.wait_for_selector(".thinking-text", timeout=20_000)
    share_url = owner.input_value("#share-link")

    other = browser.new_context()  # type: ignore[attr-defined]
    reader = other.new_page()
    dialogs = watch_for_scripts(reader)
    reader.goto(share_url)
    answer = reader.locator("article.answer")
    assert answer.get_attribute("data-status") in {"queued", "running"}
    before = len(reader.text_content("[data-role=thinking]") or "")
    reader.wait_for_function(
        "(n) => document.querySelector('[data-role=thinking]').textContent.length > n",
        arg=before,
        timeout=10_000,
    )
    assert answer.get_attribute("data-status") == "running", "text arrived while it was written"
    shot(reader, "shared-live")
    reader.wait_for_selector('article.answer[data-status="done"]', timeout=60_000)
    owner.wait_for_selector('article.answer[data-status="done"]', timeout=10_000)
    assert reader.text_content("[data-role=output]") == owner.text_content("[data-role=output]")
    assert "Correct" in reader.inner_text("[data-role=check]")
    assert reader.locator("[data-role=stop]").count() == 0
    assert_nothing_ran(reader, dialogs)
    shot(reader, "shared-done")
    other.close()
    owner.close()


def test_escape_stops_and_copy_buttons_copy(stack: Stack, browser: object) -> None:
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(stack.base_url + "/")
    page.click("button[data-sample=agatha]")
    page.wait_for_selector(".thinking-text", timeout=20_000)
    page.keyboard.press("Escape")
    page.wait_for_selector('article.answer[data-status="cancelled"]', timeout=10_000)
    assert page.inner_text("[data-role=status]").strip() == "Stopped"

    page.goto(stack.base_url + "/")
    page.click("button[data-sample=sheep]")
    page.wait_for_selector('article.answer[data-status="done"]', timeout=30_000)
    copy = page.locator("button[data-copy=answer]")
    copy.focus()
    page.keyboard.press("Enter")  # keyboard reachable
    page.wait_for_function(
        "() => document.querySelector('button[data-copy=answer]').textContent === 'Copied'"
    )
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied == (page.text_content("[data-role=output]") or "").strip()
    assert "9" in copied
    context.close()


def test_dark_mode_follows_the_system_and_the_toggle(stack: Stack, browser: object) -> None:
    dark = browser.new_context(color_scheme="dark")  # type: ignore[attr-defined]
    page = dark.new_page()
    page.goto(stack.base_url + "/")
    background = "() => getComputedStyle(document.body).backgroundColor"
    assert page.evaluate(background) == "rgb(21, 22, 24)"
    shot(page, "dark-system")
    dark.close()

    light = browser.new_context(color_scheme="light")  # type: ignore[attr-defined]
    page = light.new_page()
    page.goto(stack.base_url + "/")
    assert page.evaluate(background) == "rgb(247, 247, 244)"
    toggle = page.locator("button[data-theme-toggle]")
    assert toggle.inner_text() == "Theme: system"
    toggle.click()
    assert toggle.inner_text() == "Theme: light"
    toggle.click()
    assert toggle.inner_text() == "Theme: dark"
    assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"
    assert page.evaluate(background) == "rgb(21, 22, 24)"
    page.reload()
    assert page.evaluate(background) == "rgb(21, 22, 24)", "the choice is remembered"
    page.click("button[data-sample=bat-and-ball]")
    page.wait_for_selector('article.answer[data-status="done"]', timeout=30_000)
    shot(page, "dark-toggle-answer")
    toggle = page.locator("button[data-theme-toggle]")
    toggle.click()
    assert toggle.inner_text() == "Theme: system"
    assert page.evaluate(background) == "rgb(247, 247, 244)"
    light.close()


NO_HORIZONTAL_SCROLL = "() => document.documentElement.scrollWidth <= window.innerWidth"


def test_a_phone_sized_viewport_has_no_horizontal_scroll(stack: Stack, browser: object) -> None:
    phone = browser.new_context(  # type: ignore[attr-defined]
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    page = phone.new_page()
    page.goto(stack.base_url + "/")
    assert page.evaluate(NO_HORIZONTAL_SCROLL)
    shot(page, "mobile-home")
    session = next(c["value"] for c in phone.cookies() if c["name"] == "sessionid")
    seeded = seed_conversation(stack, session)
    page.goto(f"{stack.base_url}/c/{seeded['id']}/")
    page.wait_for_selector("[data-role=output-rendered]:not([hidden])")
    assert page.evaluate(NO_HORIZONTAL_SCROLL)
    shot(page, "mobile-rendered")
    page.goto(stack.base_url + "/")
    page.click("button[data-sample=agatha]")
    page.wait_for_selector('article.answer[data-status="done"]', timeout=40_000)
    assert page.evaluate(NO_HORIZONTAL_SCROLL)
    shot(page, "mobile-answer")
    phone.close()


def test_without_javascript_the_form_posts_and_the_page_refreshes_until_done(
    stack: Stack, browser: object
) -> None:
    context = browser.new_context(java_script_enabled=False)  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(stack.base_url + "/")
    page.click("button[data-sample=day-before]")
    assert page.url.startswith(f"{stack.base_url}/c/")
    assert page.locator("noscript").count() >= 1
    # Nothing but <meta http-equiv=refresh> brings the page up to date.
    page.wait_for_selector('article.answer[data-status="done"]', timeout=60_000)
    assert "Wednesday" in page.inner_text("[data-role=output]")
    assert "Correct" in page.inner_text("[data-role=check]")
    open_facts(page)  # a <details>: opens without JavaScript
    assert "tokens" in page.inner_text("[data-role=stats]")
    html = page.content()
    assert 'http-equiv="refresh"' not in html, "a finished page stops refreshing"
    shot(page, "no-javascript")
    context.close()


def test_the_dashboard_shows_accuracy_and_never_runs_a_hostile_prompt(
    stack: Stack, browser: object
) -> None:
    password = "operator-password-for-tests"
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c",
         "from django.contrib.auth import get_user_model;"
         "U = get_user_model();"
         "U.objects.filter(username='ops').exists() or "
         f"U.objects.create_superuser('ops', 'ops@example.com', '{password}')"],
        cwd=Path(__file__).resolve().parents[2], env=stack.env, check=True,
    )  # fmt: skip
    visitor = browser.new_page()  # type: ignore[attr-defined]
    visitor.goto(stack.base_url + "/")
    visitor.click("button[data-sample=alice-siblings]")  # the one sample no other test asks
    visitor.wait_for_selector('article.answer[data-status="done"]', timeout=30_000)

    operator = browser.new_context()  # type: ignore[attr-defined]
    ops = operator.new_page()
    dialogs = watch_for_scripts(ops)
    ops.goto(stack.base_url + "/admin/login/?next=/ops/")
    ops.fill("#id_username", "ops")
    ops.fill("#id_password", password)
    ops.click("input[type=submit]")
    ops.wait_for_url(f"{stack.base_url}/ops/")
    # Drain, so the hostile question waits in line where the dashboard lists its prompt.
    ops.click("form[action='/ops/drain'] button")
    ops.click("#confirm button[value=yes]")  # draining asks first
    ops.locator("[data-show='controls.draining']").wait_for()
    hostile = HOSTILE["script"] + HOSTILE["img"] + " accuracy?"
    visitor.goto(stack.base_url + "/")
    visitor.fill("textarea[name=prompt]", hostile)
    visitor.click("form.composer button[type=submit]")
    try:
        ops.goto(stack.base_url + "/ops/")
        shown = hostile[:120]  # the dashboard shows the start of a prompt
        assert shown in ops.inner_text("#active td.prompt")
        ops.wait_for_timeout(2_000)  # at least one live refresh by ops/dashboard.js
        assert shown in ops.inner_text("#active td.prompt")
        assert_nothing_ran(ops, dialogs)
        row = ops.locator('#accuracy tr[data-sample="alice-siblings"]')
        assert row.locator("[data-window=all_time]").inner_text().startswith("1/1")
        assert row.locator("[data-window=last_hour]").inner_text().startswith("1/1")
        shot(ops, "dashboard")
    finally:
        ops.goto(stack.base_url + "/ops/")
        ops.click("form[action='/ops/undrain'] button")
    visitor.wait_for_selector('article.answer[data-status="done"]', timeout=30_000)
    operator.close()
    visitor.close()
