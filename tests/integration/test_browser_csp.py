"""The Content-Security-Policy holds in a real browser: nothing the pages need is refused.

Chromium loads the home page, streams an answer with Markdown and math, opens a finished answer
full of tables, highlighted code and KaTeX, and the operators' dashboard with its charts, while
every `securitypolicyviolation` event and console message is recorded. There must be none: an
inline script, an injected <style> or an eval would show up here before it reaches production.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.stack import Stack
from tests.integration.chromium import needs_chromium
from tests.integration.stack import playground_stack
from tests.integration.test_browser import assert_rich_output_rendered, seed_conversation, shot

pytestmark = [pytest.mark.integration, needs_chromium]

ROOT = Path(__file__).resolve().parents[2]

# Runs before any of the page's own scripts, in every frame; CSP does not apply to it.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(
    `${event.effectiveDirective} blocked ${event.blockedURI || "inline"} ` +
    `at ${event.sourceFile}:${event.lineNumber} (${(event.sample || "").slice(0, 80)})`
  );
});
"""


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with playground_stack(
        "browser-csp", redis_db=10, sim_args=["--tokens-per-second", "200", "--seed", "4"]
    ) as running:
        yield running


class Watch:
    """Console messages, page errors and CSP violations of every page in a context."""

    def __init__(self, context: Any) -> None:
        self.console: list[str] = []
        self.pages: list[Any] = []
        context.add_init_script(RECORD_VIOLATIONS)
        context.on("page", self.attach)

    def attach(self, page: Any) -> None:
        self.pages.append(page)
        page.on("console", self.record)
        page.on("pageerror", lambda error: self.console.append(f"page error: {error}"))

    def record(self, message: Any) -> None:
        url = message.location.get("url") or ""
        if url.endswith("/favicon.ico"):
            return  # the browser's own guess (the admin names no icon); not the policy's doing
        self.console.append(f"{message.type}: {message.text} ({url})")

    def violations(self, page: Any) -> list[str]:
        return page.evaluate("() => window.__cspViolations")


def make_operator(stack: Stack, password: str) -> None:
    script = (
        "from django.contrib.auth import get_user_model; U = get_user_model(); "
        "U.objects.filter(username='csp-ops').exists() or "
        f"U.objects.create_superuser('csp-ops', 'ops@example.com', '{password}')"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", script],
        cwd=ROOT,
        env=stack.env,
        check=True,
    )


def test_pages_streamed_answers_math_and_the_dashboard_run_under_the_policy_untouched(
    stack: Stack, browser: Any
) -> None:
    context = browser.new_context()
    watch = Watch(context)
    page = context.new_page()
    violations: list[str] = []

    response = page.goto(stack.base_url + "/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy, policy
    assert "unsafe-eval" not in policy

    # A streamed answer: the simulator echoes the prompt, so Markdown and math come back live.
    page.fill("textarea[name=prompt]", "Is $x^2$ **bold** with `code`? And $$\\frac{1}{2}$$")
    page.keyboard.press("Enter")
    page.wait_for_selector('article.answer[data-status="done"]', timeout=30_000)
    rendered = page.locator("[data-role=output-rendered]")
    assert rendered.locator(".math-inline .katex").count() >= 1
    assert rendered.locator("blockquote strong").inner_text() == "bold"
    page.click("[data-theme-toggle]")  # theme.js switches stylesheets
    violations += watch.violations(page)

    # A finished answer with a table, highlighted code, KaTeX and hostile markup.
    session = next(c["value"] for c in context.cookies() if c["name"] == "sessionid")
    seeded = seed_conversation(stack, session)
    page.goto(f"{stack.base_url}/c/{seeded['id']}/")
    assert_rich_output_rendered(page)
    katex_styles = page.locator("[data-role=output-rendered] .katex [style]").count()
    assert katex_styles > 0, "KaTeX's layout keeps its style attributes"
    shot(page, "csp-rendering")
    violations += watch.violations(page)

    # The admin's login and the dashboard, whose charts uPlot draws.
    password = "operator-password-for-csp-tests"
    make_operator(stack, password)
    page.goto(stack.base_url + "/admin/login/?next=/ops/")
    page.fill("#id_username", "csp-ops")
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{stack.base_url}/ops/")
    page.wait_for_selector(".uplot", timeout=10_000)
    page.wait_for_timeout(2_000)  # a live refresh by ops/dashboard.js
    violations += watch.violations(page)

    assert violations == [], violations
    assert watch.console == [], watch.console

    # The watch itself works: an inline script is refused and reported.
    page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.__ran = true";
            document.body.append(script);
        }"""
    )
    page.wait_for_function("() => window.__cspViolations.length > 0")
    assert page.evaluate("() => window.__ran") is None
    assert "script-src-elem blocked inline" in watch.violations(page)[0]
    context.close()
