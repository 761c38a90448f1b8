"""Visitors' pages in Simplified Chinese: chosen by the browser's Accept-Language or by the
switch in the header (a cookie), English by default; the server's own sentences (queue status,
durations, phases, stats, answer checks, refusals, stored failures) follow the page; and the
catalog (locale/zh_Hans/LC_MESSAGES/django.po) is complete and compiled.

The page scripts' side (djangojs) is tested in tests/integration/test_browser_i18n.py."""

from __future__ import annotations

import ast
import asyncio
import gettext
import json
import re
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import translation
from django.utils.html import escape

from inference.samples import find_sample_by_prompt, get_sample, sample_in
from playground import controls
from playground.models import Block, Message, SamplePrompt
from playground.realtime import channel_groups
from playground.services import ERROR_MESSAGES, final_event
from playground.services.errors import in_english
from tests.conversations.answers import finish
from tests.conversations.helpers import (
    VisitorFactory,
    ask,
    page,
    post_json,
    receive_until_closed,
    regenerate,
    set_running,
    stream,
    token_of,
)

CHINESE = "zh-CN,zh;q=0.9"
CATALOG = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES"

# Words of the interface that must not be left in English on a Chinese page.
UI_WORDS = ("Share", "Rename", "Regenerate", "Send", "Thinking", "Answer", "Queue", "Delete")


def chinese(client: Client) -> Client:
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = CHINESE
    return client


def ask_sample(client: Client, slug: str) -> dict[str, Any]:
    response = post_json(client, "/api/v1/conversations", {"sample": slug})
    assert response.status_code == 201, response.content
    return response.json()


def text_of(html: str, selector_class: str) -> str:
    match = re.search(rf'class="{selector_class}[^"]*"[^>]*>(.*?)</', html, re.S)
    assert match, selector_class
    return " ".join(match.group(1).split())


# --- choosing the language ---------------------------------------------------------------------


def test_a_browser_that_asks_for_chinese_gets_the_home_page_in_chinese(
    db: None, backend: str
) -> None:
    html = page(Client(HTTP_ACCEPT_LANGUAGE=CHINESE), "/")

    assert '<html lang="zh-Hans"' in html
    assert "向一个会把思考说出来的模型提问" in html
    assert '<span class="idle-label">发送</span>' in html
    assert 'placeholder="随便问点什么…"' in html
    assert "或者试试示例" in html
    assert "无需等待" in html
    # The switch offers the other language, in its own words.
    assert 'name="language" value="en" lang="en">English</button>' in html


def test_english_stays_the_default_without_accept_language(db: None, backend: str) -> None:
    html = page(Client(), "/")

    assert '<html lang="en"' in html
    assert "Ask a model that thinks out loud" in html
    assert '<span class="idle-label">Send</span>' in html
    assert "向一个会把思考说出来的模型提问" not in html
    assert 'name="language" value="zh-hans" lang="zh-Hans">中文</button>' in html


def test_a_browser_asking_for_a_language_the_site_lacks_gets_english(
    db: None, backend: str
) -> None:
    html = page(Client(HTTP_ACCEPT_LANGUAGE="fr-FR,fr;q=0.9"), "/")

    assert '<html lang="en"' in html
    assert "Ask a model that thinks out loud" in html


def test_the_switch_remembers_chinese_and_switches_back_to_english(visitor: Client) -> None:
    chosen = visitor.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})

    assert chosen.status_code == 302 and chosen["Location"] == "/"
    assert visitor.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hans"
    html = page(visitor, "/")
    assert '<html lang="zh-Hans"' in html and "向一个会把思考说出来的模型提问" in html

    visitor.post("/i18n/setlang/", {"language": "en", "next": "/"})

    assert visitor.cookies[settings.LANGUAGE_COOKIE_NAME].value == "en"
    html = page(visitor, "/")
    assert '<html lang="en"' in html and "Ask a model that thinks out loud" in html


def test_the_chosen_language_wins_over_the_browsers(visitor: Client) -> None:
    visitor.post("/i18n/setlang/", {"language": "en", "next": "/"})

    html = page(chinese(visitor), "/")

    assert '<html lang="en"' in html


# --- what the server writes for a waiting and a finished answer -------------------------------


def test_a_queued_answer_shows_its_place_and_wait_in_chinese(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    for _ in range(2):
        ask(make_visitor())
    waiting = make_visitor()
    created = ask(waiting)

    html = page(chinese(waiting), f"/c/{created['id']}/")

    status = text_of(html, "status-line")
    assert re.fullmatch(r"排队中：第 1 位 · 约 (\d+ 秒|\d+ 分 \d\d 秒)", status), status
    assert ">停止</button>" in html
    assert 'aria-label="你在队伍中的进度"' in html
    assert '<span class="phase-label">排队</span>' in html


def test_the_line_status_reads_in_chinese_with_a_chinese_wait(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    for _ in range(3):
        ask(make_visitor())

    html = page(Client(HTTP_ACCEPT_LANGUAGE=CHINESE), "/status")

    assert "2/2 正在回答" in html
    assert "1 个在等待" in html
    assert re.search(r"等待约 (\d+ 秒|\d+ 分 \d\d 秒)", html)


def test_a_full_and_a_paused_line_are_named_in_chinese(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str], settings: Any
) -> None:
    for _ in range(3):
        ask(make_visitor())
    settings.QUEUE_MAX_WAITING = 1

    full = page(Client(HTTP_ACCEPT_LANGUAGE=CHINESE), "/status")
    controls.set_paused("Back at noon.")
    paused = page(Client(HTTP_ACCEPT_LANGUAGE=CHINESE), "/")

    assert "队伍已满" in full and "有 1 个问题在等待" in full
    assert "已暂停" in paused
    # The operator's banner is their own words; its framing is ours.
    assert "已暂停接收新问题。</strong> Back at noon." in paused


def test_a_finished_answer_reads_in_chinese(
    visitor: Client, backend: str, enqueued: list[str], samples: list[SamplePrompt]
) -> None:
    created = ask_sample(visitor, "strawberry")
    finish(
        created["message"]["id"],
        thinking="I count 2 r's in strawberry.",
        reflections=("Wait, let me count again.",),
        output="So the word has 3 r's.",
        phase_seconds={"queued": 0.2, "thinking": 1.5, "reflecting": 0.5, "answering": 0.4},
        model_id="test/r1-70b",
        model_info={"model_id": "test/r1-70b"},
        backend=backend,
    )

    html = page(chinese(visitor), f"/c/{created['id']}/")

    assert text_of(html, "status-line") == "完成"
    labels = re.findall(r'<span class="phase-label">([^<]*)</span>', html)
    assert labels == ["排队", "思考", "反思", "回答", "完成"]
    assert re.search(r'<span class="phase-time">\d+\.\d+ 秒</span>', html)
    assert "思考过程" in html and "1 次反思" in html
    assert "反思 · 模型在纠正自己" in html
    assert '<h3 id="answer-title-' in html and ">回答</h3>" in html
    assert "复制回答" in html
    assert "40 个词元" in html and "20.0 词元/秒" in html and "共计 2.0 秒" in html
    assert re.search(r"排队 \d+\.\d\d 秒 · 首个词元 \d+\.\d\d 秒", html)
    assert '<summary data-role="facts">r1-70b · 2.0 秒 · 20.0 词元/秒</summary>' in html
    assert "正常结束" in html
    assert '由 <span class="provenance-model">test/r1-70b</span> 提供' in html
    assert "正确" in html and "预期答案：3。" in html
    assert "一次反思改变了结果：反思之前，思考中的答案是 2；最终答案是正确的。" in html
    assert '<span class="idle-label">重新生成</span>' in html and "<summary>分享</summary>" in html


def test_a_wrong_answer_cut_off_at_the_limit_says_so_in_chinese(
    visitor: Client, backend: str, enqueued: list[str], samples: list[SamplePrompt]
) -> None:
    created = ask_sample(visitor, "strawberry")
    finish(
        created["message"]["id"],
        output="So the word has 2 r's.",
        finish_reason="length",
        sampling={"max_new_tokens": 64, "temperature": 0.7},
        model_id="test/model",
    )

    html = page(chinese(visitor), f"/c/{created['id']}/")

    assert "回答给出的是 2，而不是 3。回答因达到长度上限而被截断。" in html
    assert "这个回答达到了长度上限（64 个新词元）而被截断，可能不完整。" in html
    assert "温度 0.7" in html and "最大新词元数 64" in html


def test_a_stored_english_failure_reads_in_chinese_and_an_operators_words_stay(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    ours = ask(visitor, "Will it fail?")
    finish(
        ours["message"]["id"],
        status="error",
        error_code="backend_timeout",
        error_message=in_english(ERROR_MESSAGES["backend_timeout"]),
    )

    html = page(chinese(visitor), f"/c/{ours['id']}/")
    api = chinese(visitor).get(f"/api/v1/messages/{ours['message']['id']}").json()

    assert text_of(html, "status-line") == "失败"
    assert "模型服务器停止了响应。" in html
    assert api["error"] == {"code": "backend_timeout", "message": "模型服务器停止了响应。"}
    english = visitor.get(f"/api/v1/messages/{ours['message']['id']}", HTTP_ACCEPT_LANGUAGE="en")
    assert english.json()["error"] == {
        "code": "backend_timeout",
        "message": "The model server stopped responding.",
    }


def test_an_operators_own_stop_reason_is_shown_as_they_wrote_it(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor, "Stop me")
    finish(
        created["message"]["id"],
        status="cancelled",
        error_code=Message.OPERATOR_STOP,
        error_message="Maintenance until 3 pm.",
    )

    html = page(chinese(visitor), f"/c/{created['id']}/")

    assert text_of(html, "status-line") == "已被站点停止"
    assert "Maintenance until 3 pm." in html


def test_alternatives_and_the_follow_up_box_read_in_chinese(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor, "Two answers please")
    finish(created["message"]["id"], output="First")
    second = regenerate(visitor, created["message"]["id"])
    finish(second["id"], output="Second")

    html = page(chinese(visitor), f"/c/{created['id']}/")

    assert "第 2 个回答，共 2 个" in html
    assert 'aria-label="上一个回答"' in html
    assert 'placeholder="继续追问…"' in html
    assert "<summary>编辑</summary>" in html and "你的对话" in html


# --- the samples in Chinese --------------------------------------------------------------------


def test_the_home_page_offers_the_samples_in_chinese(
    db: None, backend: str, samples: list[SamplePrompt]
) -> None:
    html = page(Client(HTTP_ACCEPT_LANGUAGE=CHINESE), "/")

    for sample in samples:
        version = sample_in("zh-hans", sample.slug)
        assert version is not None
        assert escape(version.title) in html, sample.slug
        assert escape(sample.title) not in html, sample.slug


def test_the_samples_api_answers_in_the_language_asked_for(
    db: None, backend: str, samples: list[SamplePrompt]
) -> None:
    english = Client().get("/api/v1/samples").json()
    chinese_list = Client(HTTP_ACCEPT_LANGUAGE=CHINESE).get("/api/v1/samples").json()

    assert [s["slug"] for s in chinese_list] == [s["slug"] for s in english]
    for listed in chinese_list:
        version = sample_in("zh-hans", listed["slug"])
        assert (listed["title"], listed["prompt"]) == (version.title, version.prompt)  # type: ignore[union-attr]
    assert english[0]["prompt"] == get_sample(english[0]["slug"]).prompt  # type: ignore[union-attr]


@pytest.mark.parametrize("slug", ["strawberry", "agatha"])
def test_a_sample_asked_in_chinese_is_asked_in_chinese_and_checked_in_chinese(
    visitor: Client, backend: str, enqueued: list[str], samples: list[SamplePrompt], slug: str
) -> None:
    version = sample_in("zh-hans", slug)
    assert version is not None

    created = ask_sample(chinese(visitor), slug)

    assert created["message"]["prompt"] == version.prompt
    assert created["message"]["sample"] == slug
    assert find_sample_by_prompt(created["message"]["prompt"]) is version, "the simulator's script"
    thinking, reflection, output = scripted_sections(version.scripted_answer)
    finish(created["message"]["id"], thinking=thinking, reflections=(reflection,), output=output)
    check = conversation_check(visitor, created["id"])
    assert (check["verdict"], check["expected"]) == ("correct", version.expected)
    assert check["reflection_changed"] is True
    html = page(visitor, f"/c/{created['id']}/")
    assert "正确" in html and f"预期答案：{escape(version.expected)}。" in html


def test_a_sample_reworded_by_the_operators_is_asked_in_their_words(
    visitor: Client, backend: str, enqueued: list[str], samples: list[SamplePrompt]
) -> None:
    SamplePrompt.objects.filter(slug="sheep").update(
        title="Sheep", prompt="A farmer has 20 sheep. All but 9 run away. How many are left?"
    )
    SamplePrompt.objects.filter(slug="strawberry").update(title="Strawberries")
    html = page(chinese(visitor), "/")

    assert "A farmer has 20 sheep." in html, "no translation for words it does not have"
    assert "Strawberries" in html, "a renamed card keeps the operators' title"
    assert escape(sample_in("zh-hans", "strawberry").prompt)[:20] in html  # type: ignore[union-attr]
    created = ask_sample(visitor, "sheep")
    assert created["message"]["prompt"].startswith("A farmer has 20 sheep.")


def test_a_chinese_visitor_waiting_for_a_sample_reads_its_last_chinese_answer(
    make_visitor: VisitorFactory, backend: str, samples: list[SamplePrompt], enqueued: list[str]
) -> None:
    english = ask_sample(make_visitor(), "strawberry")
    finish(english["message"]["id"], output="There are 3 r's in English.")
    for _ in range(2):  # both slots taken
        ask_sample(make_visitor(), "sheep")
    visitor = chinese(make_visitor())
    waiting = ask_sample(visitor, "strawberry")
    assert waiting["message"]["position"] > 0
    assert "in English" not in page(visitor, f"/c/{waiting['id']}/"), "not in another language"

    earlier = ask_sample(chinese(make_visitor()), "strawberry")
    finish(earlier["message"]["id"], output="这个单词里有 3 个 r。")

    html = page(visitor, f"/c/{waiting['id']}/")
    assert "这个单词里有 3 个 r。" in html


def scripted_sections(answer: str) -> tuple[str, str, str]:
    """Thinking (before its first reflection), that reflection and the output of a script."""
    thinking = answer.split("<thinking>\n", 1)[1].split("\n</thinking>", 1)[0]
    before, rest = thinking.split("<reflection>", 1)
    reflection = rest.split("</reflection>", 1)[0]
    output = answer.split("<output>\n", 1)[1].split("\n</output>", 1)[0]
    return before, reflection.strip(), output


def conversation_check(client: Client, conversation_id: str) -> dict[str, Any]:
    messages = client.get(f"/api/v1/conversations/{conversation_id}").json()["messages"]
    return next(m["check"] for m in messages if m["role"] == "assistant")


def test_a_shared_page_and_the_not_found_page_read_in_chinese(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor, "Shared in Chinese")
    finish(created["message"]["id"], output="Out")
    token = token_of(created["share_url"])

    shared = page(Client(HTTP_ACCEPT_LANGUAGE=CHINESE), f"/s/{token}/")
    missing = Client(HTTP_ACCEPT_LANGUAGE=CHINESE).get("/c/nothing/")

    note = "一段分享的对话，只读——回答生成时会实时更新。"
    assert f'{note}<a href="/">提出你自己的问题</a>。' in shared
    assert '<span class="idle-label">我也问问</span>' in shared
    assert missing.status_code == 404
    assert "这里什么也没有" in missing.content.decode()


# --- refusals in the reader's language ---------------------------------------------------------


def test_an_api_refusal_carries_a_chinese_message_under_a_chinese_browser(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    refused = post_json(chinese(visitor), "/api/v1/conversations", {"prompt": "   "})

    assert refused.status_code == 400
    assert refused.json() == {"error": {"code": "empty_prompt", "message": "请先写一个问题。"}}


def test_an_api_refusal_stays_english_by_default(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    refused = post_json(visitor, "/api/v1/conversations", {"prompt": "   "})

    assert refused.json()["error"]["message"] == "Write a prompt first."


def test_a_full_line_refuses_in_chinese_with_a_chinese_wait(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str], settings: Any
) -> None:
    for _ in range(3):
        ask(make_visitor())
    settings.QUEUE_MAX_WAITING = 1

    refused = post_json(chinese(make_visitor()), "/api/v1/conversations", {"prompt": "Me too"})

    assert refused.status_code == 429
    message = refused.json()["error"]["message"]
    assert re.fullmatch(
        r"队伍已满（有 1 人在等待，约需 (\d+ 秒|\d+ 分 \d\d 秒) 才能轮完）。请稍后再试。", message
    ), message


def test_a_refused_form_shows_the_chinese_refusal_on_the_page(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    response = chinese(visitor).post("/c/new", {"prompt": "   "})

    html = response.content.decode()
    assert response.status_code == 400
    assert "<strong>操作没有成功。</strong> 请先写一个问题。" in html


def test_a_blocked_visitor_is_told_until_when_in_chinese(
    make_visitor: VisitorFactory, backend: str, enqueued: list[str]
) -> None:
    controls.add_block(kind=Block.Kind.IP, value="203.0.113.9", duration=timedelta(hours=1))

    refused = post_json(
        chinese(make_visitor("203.0.113.9")), "/api/v1/conversations", {"prompt": "Hello"}
    )

    assert refused.status_code == 403
    message = refused.json()["error"]["message"]
    until = r"在 UTC 时间 \d{1,2}月\d{1,2}日 \d\d:\d\d 之前"
    assert re.fullmatch(until + "，你不能提出新问题。", message), message


def test_the_markdown_export_is_written_in_the_readers_language(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor, "Export me")
    finish(
        created["message"]["id"],
        thinking="Hmm.",
        reflections=("Again.",),
        output="Done it.",
        model_id="test/r1-70b",
    )

    markdown = chinese(visitor).get(f"/c/{created['id']}/export.md").content.decode()
    data = visitor.get(f"/c/{created['id']}/export.json").json()

    assert "## 问题\n\nExport me" in markdown and "## 回答" in markdown
    assert "**思考过程**" in markdown and "**反思 1**" in markdown and "**输出**" in markdown
    assert "_模型：test/r1-70b · 40 个词元 · 2.0 秒_" in markdown
    # The JSON is for programs: its values are the stored ones, whatever the reader's language.
    assert data["messages"][1]["status"] == "done"


# --- the stream speaks its viewer's language ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_chinese_viewer_of_a_live_answer_reads_its_end_in_chinese(
    visitor: Client, backend: str, enqueued: list[str], samples: list[SamplePrompt]
) -> None:
    created = ask_sample(visitor, "strawberry")
    message_id = created["message"]["id"]
    set_running(message_id)
    token = token_of(created["share_url"])

    async def scenario() -> list[dict[str, Any]]:
        # The viewer already has the one delta: the end it hears is the worker's own event.
        socket = stream(message_id, f"share={token}&after=1")
        socket.scope["headers"] = [(b"accept-language", CHINESE.encode())]
        connected, _ = await socket.connect()
        assert connected
        assert json.loads((await socket.receive_output(3))["text"])["type"] == "started"
        await asyncio.to_thread(finish, message_id, output="So the word has 3 r's.")
        # The worker announces the end without a visitor: in the site's language.
        with translation.override(settings.LANGUAGE_CODE):
            done = await asyncio.to_thread(lambda: final_event(Message.objects.get(pk=message_id)))
        assert done["check"]["note"] == "The answer gives 3."
        await asyncio.to_thread(channel_groups.publish, message_id, done)
        return await receive_until_closed(socket)

    events = asyncio.run(scenario())

    ended = next(event for event in events if event.get("type") == "done")
    assert ended["check"]["note"] == "回答给出的是 3。"
    assert ended["check"]["verdict"] == "correct"


@pytest.mark.django_db(transaction=True)
def test_a_chinese_viewer_of_a_failed_answer_reads_the_failure_in_chinese(
    visitor: Client, backend: str, enqueued: list[str]
) -> None:
    created = ask(visitor, "Will it fail?")
    message_id = created["message"]["id"]
    finish(
        message_id,
        status="error",
        error_code="worker_lost",
        error_message=in_english(ERROR_MESSAGES["worker_lost"]),
    )
    token = token_of(created["share_url"])

    async def scenario(language: str) -> list[dict[str, Any]]:
        socket = stream(message_id, f"share={token}")
        socket.scope["headers"] = [(b"accept-language", language.encode())]
        await socket.connect()
        return await receive_until_closed(socket)

    chinese_events = asyncio.run(scenario(CHINESE))
    english_events = asyncio.run(scenario("en"))

    assert chinese_events[-2]["message"] == "生成这个回答的工作进程在完成之前停止了。"
    assert english_events[-2]["message"] == (
        "The worker writing this answer stopped before it finished."
    )


# --- nothing of the interface left in English --------------------------------------------------


class VisibleText(HTMLParser):
    """The words a reader of the page meets (text and the attributes read aloud), leaving out
    what is not the interface's: scripts, the brand, model output, prompts, titles, model
    names and code."""

    SKIPPED_TAGS = {"script", "style", "title", "code", "textarea"}
    SKIPPED_CLASSES = {
        "brand",
        "thinking-body",
        "output-text",
        "loose-text",
        "sample-title",
        "sample-prompt",
        "conversation-title",
        "history",
        "provenance-model",
        "language-switch",
    }
    VOID = {"input", "meta", "link", "br", "img", "hr", "progress"}
    READ_ALOUD = ("aria-label", "placeholder", "title", "hx-confirm", "alt")

    def __init__(self) -> None:
        super().__init__()
        # For each open element: whether its content is skipped, and its classes.
        self.stack: list[tuple[bool, set[str]]] = []
        self.words: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        classes = set((found.get("class") or "").split())
        inside_skipped, parent_classes = self.stack[-1] if self.stack else (False, set())
        # A question's own words are the <p> in it; its label and buttons are ours.
        prompt = tag == "p" and "question" in parent_classes
        hidden_words = inside_skipped or prompt or bool(classes & self.SKIPPED_CLASSES)
        if not hidden_words:
            self.words += [found[name] or "" for name in self.READ_ALOUD if name in found]
        if tag not in self.VOID:
            self.stack.append((hidden_words or tag in self.SKIPPED_TAGS, classes))

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if not (self.stack and self.stack[-1][0]):
            self.words.append(data)


def english_left(html: str) -> set[str]:
    """English words of three letters or more that a Chinese reader would meet."""
    parser = VisibleText()
    parser.feed(html)
    # Names that stay as they are: a file format, keys, acronyms (GPU, JSON, TGI).
    allowed = {"Markdown", "Enter", "Shift", "Esc"}
    words = set(re.findall(r"[A-Za-z]{3,}", " ".join(parser.words)))
    return {word for word in words - allowed if not word.isupper()}


def test_no_visitor_page_leaves_english_interface_text_under_chinese(
    visitor: Client,
    make_visitor: VisitorFactory,
    backend: str,
    enqueued: list[str],
    samples: list[SamplePrompt],
) -> None:
    finished = ask_sample(visitor, "strawberry")
    finish(
        finished["message"]["id"],
        thinking="I count 2.",
        reflections=("Count again.",),
        output="So the word has 3 r's.",
        phase_seconds={"queued": 0.2, "thinking": 1.0, "reflecting": 0.2, "answering": 0.3},
        model_id="test/r1-70b",
        model_info={"model_id": "test/r1-70b"},
        sampling={"max_new_tokens": 64, "temperature": 0.7, "seed": 3},
        backend=backend,
    )
    second = regenerate(visitor, finished["message"]["id"])
    finish(second["id"], output="Three.")
    for _ in range(2):
        ask(make_visitor())
    waiting = make_visitor()
    queued = ask(waiting, "Still waiting")
    token = token_of(finished["share_url"])
    reader = Client(HTTP_ACCEPT_LANGUAGE=CHINESE)

    pages = {
        "home": page(chinese(visitor), "/"),
        "conversation": page(visitor, f"/c/{finished['id']}/"),
        "queued": page(chinese(waiting), f"/c/{queued['id']}/"),
        "shared": page(reader, f"/s/{token}/"),
        "status": page(reader, "/status"),
        "not found": reader.get("/c/nothing/").content.decode(),
        "refused": chinese(visitor).post("/c/new", {"prompt": " "}).content.decode(),
    }

    for name, html in pages.items():
        assert english_left(html) == set(), name
        for word in UI_WORDS:
            assert not re.search(rf">\s*{word}\b", html), (name, word)


# --- the catalog -----------------------------------------------------------------------------


def po_entries(path: Path) -> list[dict[str, Any]]:
    """The entries of a .po file: context, msgid, plural, msgstrs and flags (header included,
    as the entry whose msgid is empty)."""
    entries: list[dict[str, Any]] = []
    for block in path.read_text(encoding="utf-8").strip().split("\n\n"):
        entry: dict[str, Any] = {"ctx": None, "plural": None, "msgstr": {}, "flags": set()}
        field: str | None = None
        for line in block.splitlines():
            if line.startswith("#, "):
                entry["flags"] |= {flag.strip() for flag in line[3:].split(",")}
                continue
            if line.startswith("#"):
                continue
            keyword = re.match(r"(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?) ", line)
            if keyword:
                field = keyword.group(1)
                line = line[keyword.end() :]
            text = ast.literal_eval(line)
            if field == "msgctxt":
                entry["ctx"] = (entry["ctx"] or "") + text
            elif field == "msgid":
                entry["msgid"] = entry.get("msgid", "") + text
            elif field == "msgid_plural":
                entry["plural"] = (entry["plural"] or "") + text
            else:
                index = int(field[7:-1]) if field and field.startswith("msgstr[") else 0
                entry["msgstr"][index] = entry["msgstr"].get(index, "") + text
        entries.append(entry)
    return entries


def test_every_entry_of_the_catalog_is_translated_and_none_is_fuzzy() -> None:
    entries = po_entries(CATALOG / "django.po")
    header, messages = entries[0], entries[1:]

    assert header["msgid"] == ""
    assert "Plural-Forms: nplurals=1; plural=0;" in header["msgstr"][0]
    assert "Language: zh_Hans" in header["msgstr"][0]
    assert len(messages) > 150
    for entry in entries:
        assert "fuzzy" not in entry["flags"], entry["msgid"]
    for entry in messages:
        assert entry["msgstr"] and all(entry["msgstr"].values()), entry["msgid"]
        for placeholder in re.findall(r"%\(\w+\)[sd]", entry["msgid"]):
            assert all(placeholder in text for text in entry["msgstr"].values()), entry["msgid"]


def test_the_compiled_catalog_matches_the_po_file() -> None:
    with (CATALOG / "django.mo").open("rb") as compiled:
        catalog = gettext.GNUTranslations(compiled)
    entries = po_entries(CATALOG / "django.po")[1:]

    for entry in entries:
        msgid, ctx, plural = entry["msgid"], entry["ctx"], entry["plural"]
        if plural is None and ctx is None:
            assert catalog.gettext(msgid) == entry["msgstr"][0], msgid
        elif plural is None:
            assert catalog.pgettext(ctx, msgid) == entry["msgstr"][0], msgid
        elif ctx is None:
            forms = {catalog.ngettext(msgid, plural, n) for n in (1, 5)}
            assert forms == {entry["msgstr"][0]}, msgid
        else:
            forms = {catalog.npgettext(ctx, msgid, plural, n) for n in (1, 5)}
            assert forms == {entry["msgstr"][0]}, msgid
    # Nothing compiled that the .po no longer has (a stale .mo).
    keys = {key for key in catalog._catalog if key != ""}  # noqa: SLF001
    singular = {e["msgid"] if e["ctx"] is None else f"{e['ctx']}\x04{e['msgid']}" for e in entries}
    assert {key if isinstance(key, str) else key[0] for key in keys} == singular


def test_the_catalog_is_read_by_django_for_chinese(db: None) -> None:
    with translation.override("zh-hans"):
        assert translation.gettext("Regenerate") == "重新生成"
        assert translation.pgettext("a phase of an answer", "Thinking") == "思考"


def test_the_image_carries_the_compiled_catalogs() -> None:
    dockerfile = (Path(settings.BASE_DIR) / "Dockerfile").read_text()

    assert re.search(r"^COPY locale \./locale$", dockerfile, re.MULTILINE)


def test_each_language_loads_the_scripts_catalog_from_its_own_address(
    db: None, backend: str
) -> None:
    chinese_page = chinese(Client()).get("/").content.decode()
    english_page = Client().get("/").content.decode()

    assert '<script src="/jsi18n/zh-hans/"></script>' in chinese_page
    assert '<script src="/jsi18n/en/"></script>' in english_page
    # The address decides, not the cookie or the browser: a cached catalog cannot outlive
    # a switch of language.
    chinese_catalog = Client().get("/jsi18n/zh-hans/").content.decode()
    english_catalog = chinese(Client()).get("/jsi18n/en/").content.decode()
    assert "\\u601d\\u8003\\u4e2d" in chinese_catalog or "思考中" in chinese_catalog
    assert "思考中" not in english_catalog and "\\u601d\\u8003\\u4e2d" not in english_catalog
    assert Client().get("/jsi18n/fr/").status_code == 404
