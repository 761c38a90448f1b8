"""The operators' dashboard in a real browser (Debian's Chromium under Playwright), against a
stack with four backends (two TGI, one OpenAI-compatible, one that never answers) and a full
list of answers in progress: it fits a laptop's window, controls that stop something ask first
(in a dialog, or on a page of the server's without JavaScript), the list holds still under
the pointer, and the charts' history outlives restarts of the web and worker processes.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.integration.stack as integration_stack
from devtools.processes import free_port
from devtools.stack import Stack
from tests.integration.chromium import needs_chromium
from tests.integration.stack import Visitor, playground_stack
from tests.integration.test_browser import shot, watch_for_scripts
from tests.support.simulator import running_simulator

pytestmark = [pytest.mark.integration, needs_chromium]

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "operator-password-for-dashboard-tests"
ANSWERS = 28  # more than the 25 the list shows
PROMPT = "Explain, carefully and at length, why the sky is blue at noon and red at sunset. " * 2
FITS = "() => document.documentElement.scrollWidth <= window.innerWidth"


class FourBackends(Stack):
    """The stack's own simulator, then the spare backends the test started."""

    spare: tuple[str, ...] = ()

    def start_simulator(self) -> None:
        super().start_simulator()
        self.env["TGI_URL"] += "," + ",".join(self.spare)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    # Slow backends with two slots each: a few answers run on each, the rest wait in line.
    with (
        running_simulator(tokens_per_second=4.0) as second,
        running_simulator(tokens_per_second=4.0) as third,
        contextlib.ExitStack() as started,
    ):
        nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        FourBackends.spare = (second.replace("127.0.0.1", "localhost"), f"openai+{third}", nobody)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(integration_stack, "Stack", FourBackends)
            running = started.enter_context(
                playground_stack(
                    "browser-ops",
                    redis_db=6,
                    sim_args=["--tokens-per-second", "4", "--seed", "5"],
                    GENERATION_CONCURRENCY="2",
                )
            )
        yield running


@pytest.fixture(scope="module")
def answers(stack: Stack) -> list[str]:
    """A full list: each from a visitor of their own (one answer at a time per visitor)."""
    ids = []
    for number in range(ANSWERS):
        visitor = Visitor(stack.base_url)
        created = visitor.post("/api/v1/conversations", {"prompt": f"{number}: {PROMPT}"})
        assert created.status_code < 300, created.text
        ids.append(created.json()["message"]["id"])
        visitor.close()
    return ids


@pytest.fixture(scope="module")
def operator_state(stack: Stack, browser: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A logged-in operator's cookies, saved for every context the tests open."""
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c",
         "from django.contrib.auth import get_user_model;"
         "U = get_user_model();"
         "U.objects.filter(username='dash').exists() or "
         f"U.objects.create_superuser('dash', 'dash@example.com', '{PASSWORD}')"],
        cwd=ROOT, env=stack.env, check=True,
    )  # fmt: skip
    context = browser.new_context()
    page = context.new_page()
    page.goto(stack.base_url + "/admin/login/?next=/ops/")
    page.fill("#id_username", "dash")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{stack.base_url}/ops/")
    path = str(tmp_path_factory.mktemp("operator") / "state.json")
    context.storage_state(path=path)
    context.close()
    return path


@pytest.fixture
def dashboard(
    stack: Stack, browser: Any, operator_state: str, answers: list[str]
) -> Iterator[tuple[Any, list[str]]]:
    """The dashboard at 1,280 × 800 after a live refresh; what went wrong in its scripts."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, storage_state=operator_state
    )
    page = context.new_page()
    problems = watch_for_scripts(page)
    page.goto(stack.base_url + "/ops/")
    page.wait_for_function("() => document.getElementById('live-status').textContent.length")
    page.wait_for_timeout(2_000)  # at least one refresh by ops/dashboard.js
    yield page, problems
    context.close()


def axis_labels(page: Any, chart: str, axis: str = "y") -> list[str]:
    """An axis's tick labels as drawn (uPlot draws them on a canvas; the chart's label
    repeats them for screen readers)."""
    label = page.get_attribute(f"[data-chart={chart}]", "aria-label")
    return label.partition(f"; {axis} axis: ")[2].partition(";")[0].split(", ")


def shown_answers(page: Any) -> list[str]:
    return page.eval_on_selector_all(
        "#active tr[data-answer]", "rows => rows.map(r => r.dataset.answer)"
    )


def test_the_dashboard_fits_a_laptop_window_with_four_backends_and_a_full_list(
    dashboard: tuple[Any, list[str]],
) -> None:
    page, problems = dashboard

    assert page.locator("#backends tbody tr").count() == 4
    assert len(shown_answers(page)) == 25
    assert page.locator("#active td[data-a=status]", has_text="running").count() >= 2
    assert page.evaluate(FITS), page.evaluate("document.documentElement.scrollWidth")
    for table in ("#backends", "#active", "#gpus"):
        scroller = page.locator(table).locator("xpath=..")
        assert scroller.evaluate("e => e.scrollWidth <= e.clientWidth"), f"{table} scrolls"
    shot(page, "dashboard-1280")
    page.set_viewport_size({"width": 1024, "height": 768})
    page.wait_for_timeout(500)
    assert page.evaluate(FITS), "a 1,024 px window still has no horizontal scroll"
    shot(page, "dashboard-1024")
    assert problems == []


def test_the_latency_tiles_and_chart_axes_carry_their_units(
    dashboard: tuple[Any, list[str]],
) -> None:
    page, _ = dashboard

    for tile in page.locator("[data-format=latency]").all_inner_texts():
        assert tile == "–" or tile.endswith((" ms", " s")), tile
    ttft = axis_labels(page, "ttft")
    assert len(ttft) >= 3 and all(label.endswith((" ms", " s")) for label in ttft), ttft
    assert len(set(ttft)) == len(ttft), f"distinct ticks: {ttft}"
    assert axis_labels(page, "gpu") == ["0 %", "25 %", "50 %", "75 %", "100 %"]
    queue = axis_labels(page, "queue")
    assert all(label.isdigit() for label in queue) and len(set(queue)) == len(queue), queue
    clock = axis_labels(page, "queue", "time")
    assert len(clock) >= 3 and len(set(clock)) == len(clock), f"distinct times: {clock}"
    assert all(re.fullmatch(r"\d\d:\d\d(:\d\d)?", label) for label in clock), clock


def test_cancel_asks_in_a_dialog_naming_the_answer_and_only_yes_cancels_it(
    dashboard: tuple[Any, list[str]],
) -> None:
    page, problems = dashboard
    target = shown_answers(page)[-1]
    button = page.locator(f'tr[data-answer="{target}"] button', has_text="Cancel")

    button.click()
    dialog = page.locator("dialog#confirm")
    assert dialog.is_visible()
    assert page.inner_text("#confirm-question") == f"Cancel answer {target}?"
    page.click("#confirm button[value=no]")
    assert not dialog.is_visible()
    page.wait_for_timeout(1_600)
    assert target in shown_answers(page), "No changes nothing"

    button.click()
    page.click("#confirm button[value=yes]")

    page.wait_for_url("**/ops/")
    assert page.inner_text(".ops-flash") == f"Answer {target} is cancelled."
    page.wait_for_timeout(1_600)
    assert target not in shown_answers(page)
    assert problems == []


def test_the_list_holds_still_under_the_pointer_and_catches_up_when_it_leaves(
    stack: Stack, dashboard: tuple[Any, list[str]]
) -> None:
    page, problems = dashboard
    before = shown_answers(page)
    page.evaluate("document.querySelectorAll('#active tr[data-answer]').forEach(r => r.mark = 1)")
    aimed = before[3]
    page.locator(f'tr[data-answer="{aimed}"] button', has_text="Cancel").hover()

    # Another operator cancels the first answer in the list meanwhile.
    token = page.eval_on_selector("input[name=csrfmiddlewaretoken]", "input => input.value")
    done = page.request.post(
        f"{stack.base_url}/ops/messages/cancel",
        form={"message_id": before[0], "csrfmiddlewaretoken": token, "confirmed": "yes"},
        max_redirects=0,
    )
    assert done.status == 302
    page.wait_for_timeout(3_200)  # two refreshes

    assert shown_answers(page) == before, "nothing moved under the pointer"
    assert page.evaluate(
        "[...document.querySelectorAll('#active tr[data-answer]')].every(r => r.mark)"
    )
    assert page.is_visible("#active-held")
    under_pointer = page.evaluate(
        """(id) => {
          const button = document.querySelector(`tr[data-answer="${id}"] button`);
          const box = button.getBoundingClientRect();
          return document.elementFromPoint(box.x + 4, box.y + 4).closest("tr").dataset.answer;
        }""",
        aimed,
    )
    assert under_pointer == aimed

    page.mouse.move(2, 2)
    page.wait_for_timeout(1_800)

    after = shown_answers(page)
    assert before[0] not in after and aimed in after
    assert page.is_hidden("#active-held")
    kept = page.evaluate(
        '(id) => document.querySelector(`tr[data-answer="${id}"]`).mark === 1', aimed
    )
    assert kept, "rows are updated in place, never re-created"
    assert problems == []


def test_without_javascript_a_control_asks_on_a_page_of_its_own(
    stack: Stack, browser: Any, operator_state: str
) -> None:
    context = browser.new_context(java_script_enabled=False, storage_state=operator_state)
    page = context.new_page()
    page.goto(stack.base_url + "/ops/")

    page.click("form[action='/ops/drain'] button")

    assert page.inner_text("#confirm-title") == "Drain?"
    assert page.locator("[data-show='controls.draining']").count() == 0, "not the dashboard"
    shot(page, "dashboard-confirm-no-js")
    page.click("text=No, back to the dashboard")
    assert page.is_hidden("[data-show='controls.draining']"), "No left it undrained"
    page.click("form[action='/ops/drain'] button")
    page.click(".confirm-page button[type=submit]")
    assert page.is_visible("[data-show='controls.draining']")
    page.click("form[action='/ops/undrain'] button")  # giving back asks nothing
    assert page.is_hidden("[data-show='controls.draining']")
    context.close()


def test_the_charts_history_outlives_restarts_of_web_and_worker_processes(
    stack: Stack, browser: Any, operator_state: str
) -> None:
    context = browser.new_context(storage_state=operator_state)
    page = context.new_page()

    def history() -> list[float]:
        page.goto(stack.base_url + "/ops/")
        return [point["t"] for point in json.loads(page.inner_text("#ops-series"))]

    earlier = history()
    for _ in range(40):
        if len(earlier) >= 2:
            break
        page.wait_for_timeout(500)
        earlier = history()
    assert len(earlier) >= 2, "the sampler writes a point every 5 s"

    stack.kill_web()
    stack.start_web()
    workers = [name for name in stack.processes if name.startswith("worker")]
    for name in workers:
        stack.kill(name)
    for name in workers:
        stack.start_worker(name, beat=name == "worker")

    kept = history()
    assert kept[: len(earlier)] == earlier
    context.close()
