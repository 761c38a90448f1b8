"""How an answer reads on the page: phases, stats, provenance, answer checks, the no-JavaScript
fallback, vendored libraries and color contrast (the browser side is in
tests/integration/test_browser.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from inference.samples import get_sample
from playground import durations, presenters, services
from playground.models import Conversation, Message, SamplePrompt
from tests.conversations.test_views import answer_of, page_text, start_conversation
from tests.ops.test_answer_checks import parse

ROOT = Path(__file__).resolve().parents[2]
SIMULATOR_INFO = {
    "model_id": "reflection-playground/simulator",
    "model_sha": None,
    "version": "3.3.6-dev0",
    "max_input_tokens": 8191,
}
REAL_INFO = {"model_id": "acme/reasoner-70b", "model_sha": "0123456789abcdef99", "version": "3.3.4"}
SAMPLING = {
    "max_new_tokens": 2048,
    "temperature": 0.7,
    "top_p": 0.95,
    "do_sample": True,
    "stop": [],
    "details": True,
    "return_full_text": False,
    "history_turns_dropped": 0,
}


def finish(answer: Message, text: str, *, info: dict | None = None, **changes: Any) -> Message:
    """Store `text` (a tagged answer) as the finished answer, as the worker would."""
    sections, log = parse(text)
    now = timezone.now()
    info = info or SIMULATOR_INFO
    fields: dict[str, Any] = {
        "status": Message.Status.DONE,
        "started_at": now,
        "first_token_at": now,
        "finished_at": now,
        "tokens": 280,
        "finish_reason": "eos_token",
        "sections": sections.as_dict(),
        "deltas": log,
        "backend": "http://backend.test:8080",
        "model_id": info["model_id"],
        "model_info": info,
        "sampling": SAMPLING,
        **changes,
    }
    Message.objects.filter(pk=answer.pk).update(**fields)
    answer.refresh_from_db()
    return answer


def sample_answer(visitor: Client, slug: str, **changes: Any) -> tuple[Conversation, Message]:
    conversation = start_conversation(visitor, sample=slug)
    sample = get_sample(slug)
    assert sample is not None
    return conversation, finish(answer_of(conversation), sample.scripted_answer, **changes)


# --- the payload and the done event -----------------------------------------------------------


def test_a_finished_sample_answer_carries_its_check_and_provenance(
    visitor: Client, backend: str, enqueued: list[str], samples: list[SamplePrompt]
) -> None:
    _, answer = sample_answer(visitor, "strawberry")
    body = visitor.get(f"/api/v1/messages/{answer.pk}").json()
    assert body["check"] == {
        "verdict": "correct",
        "expected": "3",
        "found": "3",
        "reflection_changed": True,
        "note": "A reflection changed the outcome: before it, the thinking's answer was 2; "
        "the final answer is right.",
    }
    # Visitors see which of the backends served it, never its internal address.
    assert "backend.test" not in json.dumps(body)
    assert body["backend"] == "backend-1"
    assert body["provenance"] == {
        "backend": "backend-1",
        "model_id": "reflection-playground/simulator",
        "model_sha": None,
        "version": "3.3.6-dev0",
        "simulated": True,
        "sampling": {
            "temperature": 0.7,
            "top_p": 0.95,
            "max_new_tokens": 2048,
            "do_sample": True,
            "stop": [],
        },
    }
    done = services.final_event(answer)
    assert done["type"] == "done"
    assert done["check"] == body["check"]
    assert done["provenance"] == body["provenance"]
    assert done["stats"]["finish_reason"] == "eos_token"


def test_a_finished_answer_shows_the_sections_stored_when_it_ended(
    visitor: Client,
    backend: str,
    enqueued: list[str],
    samples: list[SamplePrompt],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, answer = sample_answer(visitor, "sheep")
    stored, log = answer.sections, answer.deltas

    def rebuilt(events: list[dict[str, Any]]) -> dict[str, Any]:
        raise AssertionError("a finished answer's sections were rebuilt from its log")

    monkeypatch.setattr(services.payloads, "sections_of", rebuilt)
    payload = services.message_payload(answer)
    assert (payload["sections"], payload["seq"]) == (stored, len(log))
    monkeypatch.undo()
    # Ended before writing anything: the same shape, empty.
    conversation = start_conversation(visitor.__class__(), prompt="Hello")
    failed = finish(answer_of(conversation), "", status=Message.Status.ERROR, sections={})
    assert services.message_payload(failed)["sections"] == {
        "thinking": "",
        "reflections": [],
        "output": "",
        "text": "",
    }


def test_queued_answers_and_free_prompts_have_no_check_or_provenance_yet(
    visitor: Client, backend: str, enqueued: list[str], samples: list[SamplePrompt]
) -> None:
    conversation = start_conversation(visitor, sample="sheep")
    body = visitor.get(f"/api/v1/messages/{answer_of(conversation).pk}").json()
    assert body["check"] is None
    assert body["provenance"] is None
    conversation = start_conversation(visitor.__class__(), prompt="Hello")
    free = finish(answer_of(conversation), "<output>\nHi!\n</output>")
    assert services.message_payload(free)["check"] is None
    assert services.message_payload(free)["provenance"]["simulated"] is True


def test_a_real_model_is_not_called_a_simulator(
    visitor: Client, backend: str, enqueued: list[str], samples: list[SamplePrompt]
) -> None:
    conversation, answer = sample_answer(visitor, "sheep", model_id="", model_info=REAL_INFO)
    provenance = services.message_payload(answer)["provenance"]
    assert provenance["simulated"] is False
    assert provenance["model_id"] == "acme/reasoner-70b"
    html = page_text(visitor.get(f"/c/{conversation.pk}/"))
    assert re.search(r'class="simulated-note" data-role="simulated"\s+hidden', html)
    assert "acme/reasoner-70b" in html
    assert "(revision <code>0123456789ab</code>)" in html
    assert "TGI 3.3.4" in html


# --- the page ---------------------------------------------------------------------------------


def test_the_page_shows_badge_note_stats_provenance_and_the_simulator_plainly(
    visitor: Client, backend: str, enqueued: list[str], samples: list[SamplePrompt]
) -> None:
    conversation, _ = sample_answer(visitor, "decimal-compare")
    for client, path in (
        (visitor, f"/c/{conversation.pk}/"),
        (Client(), f"/s/{conversation.share_token}/"),
    ):
        html = page_text(client.get(path))
        assert 'class="check check-correct"' in html
        assert '<span aria-hidden="true">✓</span> Correct' in html
        assert "Expected: 9.9." in html
        assert "A reflection changed the outcome" in html
        assert "the thinking&#x27;s answer was 9.11" in html
        assert "Served by the playground's simulator, not a real model." in html
        assert not re.search(r'data-role="simulated"\s+hidden', html)
        assert "reflection-playground/simulator" in html
        assert "temperature 0.7, top_p 0.95, max new tokens 2048" in html
        assert "280 tokens" in html
        assert "finished normally" in html
        assert re.search(r'data-role="cutoff"\s+hidden', html), "not cut off"
        # The thinking folds away once there is an answer; the reflection sits where it was.
        assert re.search(r'<details class="thinking" data-role="thinking-box"\s+>', html)
        assert 'class="reflection" role="note"' in html
        assert "· 1 reflection" in html
        assert 'data-role="phases"' not in html, "a finished answer shows its stats instead"
        assert 'http-equiv="refresh"' not in html


def test_a_wrong_answer_gets_a_cross_and_a_cut_off_answer_says_so(
    visitor: Client, backend: str, enqueued: list[str], samples: list[SamplePrompt]
) -> None:
    conversation = start_conversation(visitor, sample="strawberry")
    finish(
        answer_of(conversation),
        "<thinking>\nCounting.\n</thinking>\n<output>\nThere are 2 r's in",
        finish_reason="length",
    )
    html = page_text(visitor.get(f"/c/{conversation.pk}/"))
    assert 'class="check check-incorrect"' in html
    assert '<span aria-hidden="true">✗</span> Incorrect' in html
    assert "The answer gives 2, not 3. It was cut off at the length limit." in html
    assert not re.search(r'data-role="cutoff"\s+hidden', html)
    assert "This answer was cut off at the length limit (2048 new tokens)" in html
    assert "cut off at the length limit</p>" in html or "· cut off at the length limit" in html


def test_no_check_is_shown_for_a_free_prompt(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    conversation = start_conversation(visitor, prompt="How are you?")
    finish(answer_of(conversation), "<output>\nFine, 3 r's.\n</output>")
    html = page_text(visitor.get(f"/c/{conversation.pk}/"))
    assert re.search(r'<p class="check" data-role="check"\s+hidden>', html)


def test_an_active_answer_shows_its_phase_and_refreshes_without_javascript(
    visitor: Client, backend: str, enqueued: list[str], samples: list[SamplePrompt]
) -> None:
    conversation = start_conversation(visitor, sample="sheep")
    answer = answer_of(conversation)
    for client, path in (
        (visitor, f"/c/{conversation.pk}/"),
        (Client(), f"/s/{conversation.share_token}/"),
    ):
        html = page_text(client.get(path))
        assert '<noscript><meta http-equiv="refresh" content="3"></noscript>' in html
        assert 'data-role="phases"' in html
        assert 'data-phase="queued" data-state="current" aria-current="step"' in html
        assert 'data-phase="thinking" data-state="future"' in html
        assert f'data-created="{answer.created.timestamp():.3f}"' in html

    Message.objects.filter(pk=answer.pk).update(
        status=Message.Status.RUNNING, started_at=timezone.now()
    )
    html = page_text(visitor.get(f"/c/{conversation.pk}/"))
    assert 'data-phase="queued" data-state="past"' in html
    assert 'data-phase="thinking" data-state="current"' in html
    assert "Thinking…" in html
    assert 'http-equiv="refresh"' in html

    finish(answer, get_sample("sheep").scripted_answer)  # type: ignore[union-attr]
    html = page_text(visitor.get(f"/c/{conversation.pk}/"))
    assert 'http-equiv="refresh"' not in html


def test_a_finished_answer_keeps_its_timed_phases_after_a_reload(
    visitor: Client, backend: str, enqueued: list[str], samples: list[SamplePrompt]
) -> None:
    conversation = start_conversation(visitor, sample="sheep")
    answer = answer_of(conversation)
    finish(
        answer,
        "<thinking>\nCounting.\n</thinking>\n<output>\n9\n</output>",
        phase_seconds={"thinking": 4.2, "answering": 2.25},
    )

    html = page_text(visitor.get(f"/c/{conversation.pk}/"))

    assert 'data-role="phases"' in html
    for name, time in (("thinking", "4.2 s"), ("answering", "2.2 s")):
        assert re.search(
            rf'data-phase="{name}" data-state="past"><span class="phase-label">\w+</span> '
            rf'<span class="phase-time">{time}</span>',
            html,
        ), name
    assert 'data-phase="reflecting" data-state="skipped"' in html, "no reflection this time"
    assert 'data-phase="done" data-state="past"' in html
    assert 'aria-current="step"' not in html


@pytest.mark.parametrize(
    ("deltas", "phase"),
    [
        ([], "thinking"),
        ([("thinking", None)], "thinking"),
        ([("thinking", None), ("reflection", 0)], "reflecting"),
        ([("thinking", None), ("reflection", 0), ("thinking", None)], "thinking"),
        ([("thinking", None), ("output", None), ("text", None)], "answering"),
    ],
)
def test_the_phase_of_a_running_answer_follows_its_last_section(
    deltas: list[tuple[str, int | None]], phase: str
) -> None:
    message = Message(role=Message.Role.ASSISTANT, status=Message.Status.RUNNING)
    events = [{"section": section, "index": index, "text": "x"} for section, index in deltas]
    assert presenters.phase_of(message, events) == phase


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "–"), (0.314, "0.31 s"), (4.24, "4.2 s"), (12.4, "12 s"), (65, "1 min 05 s")],
)
def test_seconds_are_formatted_like_the_page_script_does(seconds: float | None, text: str) -> None:
    assert durations.format_measured(seconds) == text
    script = (ROOT / "static/js/stream/format.js").read_text()
    assert "export function formatSeconds(seconds)" in script


def test_the_composer_names_the_keyboard_shortcuts(db: None, backend: str) -> None:
    html = page_text(Client().get("/"))
    assert "Enter sends · Shift+Enter for a new line · Esc stops an answer" in html
    assert 'aria-describedby="composer-hint"' in html
    assert 'id="announcer" role="status" aria-live="polite"' in html
    assert 'href="#main">Skip to the content</a>' in html


# --- vendored libraries, no inline scripts ----------------------------------------------------

VENDORED = (
    "vendor/marked/marked.umd.js",
    "vendor/dompurify/purify.min.js",
    "vendor/katex/katex.min.js",
    "vendor/katex/katex.min.css",
    "vendor/highlight/highlight.min.js",
    "vendor/highlight/a11y-light.min.css",
    "vendor/highlight/a11y-dark.min.css",
    "js/theme.js",
    "js/stream.js",
)
# ES modules that js/stream.js imports: no page names them, but each is served.
MODULES = (
    "js/render.js",
    *(f"js/stream/{module.name}" for module in sorted((ROOT / "static/js/stream").glob("*.js"))),
)


def test_every_script_and_stylesheet_is_served_from_our_own_static_files(
    db: None, backend: str
) -> None:
    html = page_text(Client().get("/"))
    scripts = re.findall(r"<script\b([^>]*)>", html)
    assert scripts, html
    for attributes in scripts:
        # No inline scripts: a Content-Security-Policy without 'unsafe-inline' will hold.
        source = re.search(r'\bsrc="([^"]+)"', attributes)
        assert source, attributes
        # Our own files; and the scripts' translations, served per language by Django.
        assert source.group(1).startswith("/static/") or source.group(1) == "/jsi18n/en/"
    for path in VENDORED:
        assert f'"/static/{path}"' in html, path
        response = Client().get(f"/static/{path}")
        assert response.status_code == 200, path
    for path in MODULES:
        assert Client().get(f"/static/{path}").status_code == 200, path
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)


def test_katex_fonts_and_licenses_are_vendored() -> None:
    css = (ROOT / "static/vendor/katex/katex.min.css").read_text()
    fonts = set(re.findall(r"url\((fonts/[^)]+)\)", css))
    assert fonts
    for font in fonts:
        assert (ROOT / "static/vendor/katex" / font).is_file(), font
    for name in ("marked", "dompurify", "katex", "highlight"):
        assert (ROOT / "static/vendor" / name / "LICENSE").is_file()
        assert (ROOT / "static/vendor" / name / "VERSION").is_file()


# --- WCAG AA contrast of the main text/background pairs ---------------------------------------


def _palettes() -> dict[str, dict[str, str]]:
    css = (ROOT / "static/css/playground.css").read_text()

    def block(selector: str) -> dict[str, str]:
        start = css.index(selector)
        body = css[css.index("{", start) + 1 : css.index("}", start)]
        return dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})", body))

    light = block(":root {")
    dark_media = block(':root:not([data-theme="light"])')
    dark_toggle = block(':root[data-theme="dark"]')
    assert dark_media == dark_toggle, "the system's dark and the toggle's dark are the same"
    return {"light": light, "dark": dark_toggle}


def _luminance(color: str) -> float:
    channels = [int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


TEXT_PAIRS = (
    ("text", "bg"),
    ("text", "surface"),
    ("muted", "bg"),
    ("muted", "surface"),
    ("muted", "thinking-bg"),
    ("text", "reflection-bg"),
    ("reflection-text", "reflection-bg"),
    ("text", "output-bg"),
    ("output-text", "output-bg"),
    ("muted", "output-bg"),
    ("accent", "output-bg"),
    ("text", "thinking-bg"),
    ("accent", "bg"),
    ("accent", "surface"),
    ("accent-text", "accent"),
    ("error", "bg"),
    ("error", "surface"),
    ("text", "warn-bg"),
    ("ok", "ok-bg"),
    ("bad", "bad-bg"),
    ("text", "code-bg"),
)


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize(("fg", "bg"), TEXT_PAIRS, ids=[f"{f}-on-{b}" for f, b in TEXT_PAIRS])
def test_text_colors_meet_wcag_aa(theme: str, fg: str, bg: str) -> None:
    palette = _palettes()[theme]
    ratio = contrast(palette[fg], palette[bg])
    assert ratio >= 4.5, f"{theme}: --{fg} on --{bg} is {ratio:.2f}:1"
