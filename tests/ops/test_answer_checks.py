"""Answer checks: each sample's checker reads the answer's claim, and the dashboard counts them."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone, translation

from inference.parser import Delta, Sections, TagParser
from inference.samples import SAMPLES, VERSIONS, get_sample, sample_in
from playground import answer_checks, short_memory
from playground.answer_checks import CORRECT, INCORRECT, checker_for, judge
from playground.models import Conversation, Message, SamplePrompt, new_id
from playground.ops import accuracy


def parse(answer: str) -> tuple[Sections, list[dict[str, Any]]]:
    """Sections and the delta log of a tagged answer, as the worker would store them."""
    parser = TagParser()
    deltas: list[Delta] = [*parser.feed(answer), *parser.close()]
    sections = Sections()
    for delta in deltas:
        sections.apply(delta)
    log = [
        {"type": "delta", "seq": i, "section": d.section, "text": d.text, "index": d.index}
        for i, d in enumerate(deltas, start=1)
    ]
    return sections, log


def verdict(slug: str, text: str) -> str | None:
    found = checker_for(slug, None)
    assert found is not None
    return found[0](text).verdict


# --- every sample's scripted answer -----------------------------------------------------------


@pytest.mark.parametrize("sample", VERSIONS, ids=[f"{s.slug}-{s.language}" for s in VERSIONS])
def test_every_scripted_answer_is_correct_and_its_reflection_changed_the_outcome(
    sample: Any,
) -> None:
    """In every language: the scripted answers are checked by the same checkers."""
    sections, log = parse(sample.scripted_answer)
    checker, expected = checker_for(sample.slug, get_sample(sample.slug).expected)  # type: ignore[misc, union-attr]
    result = judge(
        checker,
        expected,
        output=sections.output,
        thinking_before_reflection=answer_checks.thinking_before_first_reflection(log),
    )
    assert result["verdict"] == CORRECT, result
    assert result["expected"] == get_sample(sample.slug).expected  # type: ignore[union-attr]
    # Each scripted reflection fixes a real mistake made before it.
    assert result["reflection_changed"] is True, result
    assert result["note"].startswith("A reflection changed the outcome")


def test_every_sample_has_its_own_checker() -> None:
    assert set(answer_checks.CHECKERS) == {sample.slug for sample in SAMPLES}


# --- right and wrong answers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slug", "text", "expected"),
    [
        ("strawberry", 'There are **3** r\'s in "strawberry".', CORRECT),
        ("strawberry", "The letter r appears three times.", CORRECT),
        ("strawberry", "The word has 2 r's.", INCORRECT),
        ("strawberry", "There are 13 r's in strawberry.", INCORRECT),
        ("strawberry", "The answer is 13.", INCORRECT),
        ("strawberry", "It has 3.5 r's.", INCORRECT),
        ("strawberry", "Strawberry is a fruit.", None),
        ("decimal-compare", "**9.9** is larger than 9.11.", CORRECT),
        ("decimal-compare", "9.90 is bigger than 9.11.", CORRECT),
        ("decimal-compare", "The larger number is 9.9.", CORRECT),
        ("decimal-compare", "9.11 is the smaller one.", CORRECT),
        ("decimal-compare", "9.11 is larger than 9.9.", INCORRECT),
        ("decimal-compare", "The bigger one is 9.11, since 11 > 9.", INCORRECT),
        ("decimal-compare", "9.9 is smaller than 9.11.", INCORRECT),
        ("decimal-compare", "Answer: 9.95", None),
        ("agatha", "**Agatha herself** killed Aunt Agatha.", CORRECT),
        ("agatha", "Aunt Agatha killed herself.", CORRECT),
        ("agatha", "The killer is Agatha.", CORRECT),
        ("agatha", "The butler is the killer.", INCORRECT),
        ("agatha", "Charles killed Aunt Agatha.", INCORRECT),
        ("agatha", "The butler cannot be the killer and Charles is not the killer.", None),
        ("weissensee", "Walk around the Weißer See and have cake at the Milchhäuschen.", CORRECT),
        ("weissensee", "Swim in the Weisser See.", CORRECT),
        ("weissensee", "Start at the Weißer See, then the Mauerpark flea market.", INCORRECT),
        (
            "weissensee",
            "See the Weißer See. The Mauerpark is not in Weißensee, so skip it.",
            CORRECT,
        ),
        ("weissensee", "Visit the Brecht-Haus.", None),
        ("bat-and-ball", "The ball costs $0.05.", CORRECT),
        ("bat-and-ball", "The ball costs 5 cents and the bat $1.05.", CORRECT),
        ("bat-and-ball", "The ball costs $0.10.", INCORRECT),
        ("bat-and-ball", "The ball is ten cents.", INCORRECT),
        ("alice-siblings", "Each of her brothers has 3 sisters.", CORRECT),
        ("alice-siblings", "Every brother has 2 sisters.", INCORRECT),
        ("alice-siblings", "Each brother has 13 sisters.", INCORRECT),
        ("day-before", "Yesterday was **Wednesday**.", CORRECT),
        ("day-before", "Yesterday was Thursday.", INCORRECT),
        ("sheep", "The farmer has 9 sheep left.", CORRECT),
        ("sheep", "So 8 sheep are left.", INCORRECT),
        ("sheep", "19 sheep remain.", INCORRECT),
        # The same checkers read answers in Chinese.
        ("strawberry", "“strawberry” 里有 **3** 个 r。", CORRECT),
        ("strawberry", "所以这个单词里有2个r。", INCORRECT),
        ("strawberry", "字母 r 一共出现了三次。", CORRECT),
        ("strawberry", "有 13 个 r。", INCORRECT),
        ("decimal-compare", "**9.9** 更大。", CORRECT),
        ("decimal-compare", "9.9 比 9.11 大 0.79。", CORRECT),
        ("decimal-compare", "所以 9.11 更大。", INCORRECT),
        ("decimal-compare", "9.11 比 9.9 小。", CORRECT),
        ("decimal-compare", "较大的是 9.11。", INCORRECT),
        ("agatha", "凶手是**阿加莎本人**。", CORRECT),
        ("agatha", "阿加莎姑妈是自杀的。", CORRECT),
        ("agatha", "所以管家就是凶手。", INCORRECT),
        ("agatha", "查尔斯是凶手。", INCORRECT),
        ("agatha", "管家不可能是凶手，查尔斯也不是凶手。", None),
        ("weissensee", "绕着白湖（Weißer See）散步。", CORRECT),
        ("weissensee", "先去白湖，再去墙公园（Mauerpark）的跳蚤市场。", INCORRECT),
        ("weissensee", "去白湖。墙公园（Mauerpark）并不在魏森湖区，所以把它去掉。", CORRECT),
        ("bat-and-ball", "球的价格是 **0.05 美元**（5 美分）。", CORRECT),
        ("bat-and-ball", "球是 5 美分，球拍是 1.05 美元。", CORRECT),
        ("bat-and-ball", "球的价格是 0.10 美元。", INCORRECT),
        ("bat-and-ball", "球拍是 1.05 美元。", None),
        ("alice-siblings", "爱丽丝的每个兄弟都有 **3** 个姐妹。", CORRECT),
        ("alice-siblings", "所以每个兄弟有两个姐妹。", INCORRECT),
        ("day-before", "昨天是**星期三**。", CORRECT),
        ("day-before", "昨天是周四。", INCORRECT),
        ("sheep", "农夫还剩 **9** 只羊。", CORRECT),
        ("sheep", "所以还剩8只羊。", INCORRECT),
        ("sheep", "九只羊留了下来。", CORRECT),
        ("odd-numbers", "前 100 个奇数的和是 **10000**。", CORRECT),
        ("odd-numbers", "所以它们的和是 10100。", INCORRECT),
        ("odd-numbers", "总和为一万。", CORRECT),
    ],
)
def test_checkers_read_the_claim(slug: str, text: str, expected: str | None) -> None:
    assert verdict(slug, text) == expected


@pytest.mark.parametrize(
    ("numeral", "value"),
    [
        ("三", 3),
        ("两", 2),
        ("十", 10),
        ("十七", 17),
        ("二十", 20),
        ("一百零五", 105),
        ("一万", 10000),
    ],
)
def test_chinese_numerals_are_read_as_numbers(numeral: str, value: int) -> None:
    assert answer_checks.number_value(numeral) == value


def test_an_answer_to_a_chinese_version_names_what_it_found_in_chinese(db: None) -> None:
    chinese = sample_in("zh-hans", "agatha")
    assert chinese is not None
    sections, log = parse(chinese.scripted_answer)
    message = Message(
        role="assistant",
        status="done",
        sample_slug="agatha",
        prompt=chinese.prompt,
        sections=sections.as_dict(),
        deltas=log,
    )

    result = answer_checks.check(message, expected="Agatha herself")

    assert result is not None
    assert result["verdict"] == CORRECT
    assert (result["expected"], result["found"]) == ("阿加莎本人", "阿加莎本人")
    assert "管家" in result["note"], "the thinking's answer before the reflection, in Chinese"


def test_the_most_frequent_claim_wins_and_ties_go_to_the_first() -> None:
    assert verdict("strawberry", "Not 2 r's: it has 3 r's. Yes, 3 r's.") == CORRECT
    assert verdict("strawberry", "It has 2 r's, or maybe 3 r's.") == INCORRECT


@pytest.mark.parametrize(
    ("expected", "text", "result"),
    [
        ("42", "The answer is 42.", CORRECT),
        ("42", "The answer is 142.", INCORRECT),
        ("42", "forty-two", INCORRECT),
        ("3", "three", CORRECT),
        ("9.9", "It is 9.90.", CORRECT),
        ("9.9", "It is 9.11.", INCORRECT),
        ("$0.05", "It costs $0.05.", CORRECT),
        ("Paris", "The capital is **Paris**.", CORRECT),
        ("Paris", "The capital is Parisian.", INCORRECT),
        ("Weißer See", "the WEISSER SEE, of course", CORRECT),
        ("Weißer See", "the weißer see, of course", CORRECT),
    ],
)
def test_the_generic_fallback_compares_the_normalised_expected_answer(
    expected: str, text: str, result: str
) -> None:
    assert answer_checks.generic(expected)(text).verdict == result


def test_an_expected_answer_changed_in_the_admin_is_checked_generically() -> None:
    checker, shown = checker_for("strawberry", "4")  # type: ignore[misc]
    assert shown == "4"
    assert checker("There are 4 r's.").verdict == CORRECT
    assert checker("There are 3 r's.").verdict == INCORRECT
    # The same expected answer, differently written, keeps the sample's own checker.
    assert checker_for("strawberry", " 3 ")[0] is answer_checks.CHECKERS["strawberry"]  # type: ignore[index]
    assert checker_for("my-own-sample", "") is None


# --- the reflection heuristic -----------------------------------------------------------------


def test_no_reflection_means_no_change_to_report() -> None:
    checker, expected = checker_for("strawberry", None)  # type: ignore[misc]
    _, log = parse("<thinking>\nThere are 3 r's.\n</thinking>\n<output>\n3 r's.\n</output>")
    before = answer_checks.thinking_before_first_reflection(log)
    assert before is None
    result = judge(checker, expected, output="It has 3 r's.", thinking_before_reflection=before)
    assert result["reflection_changed"] is None
    assert result["note"] == "The answer gives 3."


def test_a_reflection_that_breaks_a_right_answer_is_reported() -> None:
    sample = get_sample("sheep")
    assert sample is not None
    answer = (
        "<thinking>\nAll but 9 run away, so 9 sheep are left.\n<reflection>\nNo wait, "
        "17 - 9 = 8.\n</reflection>\n</thinking>\n<output>\n8 sheep are left.\n</output>"
    )
    sections, log = parse(answer)
    checker, expected = checker_for("sheep", None)  # type: ignore[misc]
    result = judge(
        checker,
        expected,
        output=sections.output,
        thinking_before_reflection=answer_checks.thinking_before_first_reflection(log),
    )
    assert result["verdict"] == INCORRECT
    assert result["reflection_changed"] is True
    assert "had the right answer (9)" in result["note"]


def test_a_reflection_that_keeps_the_same_outcome_changed_nothing() -> None:
    answer = (
        "<thinking>\nSo 9 sheep are left.\n<reflection>\nLet me double-check: yes.\n"
        "</reflection>\n</thinking>\n<output>\n9 sheep are left.\n</output>"
    )
    sections, log = parse(answer)
    checker, expected = checker_for("sheep", None)  # type: ignore[misc]
    before = answer_checks.thinking_before_first_reflection(log)
    result = judge(checker, expected, output=sections.output, thinking_before_reflection=before)
    assert (result["verdict"], result["reflection_changed"]) == (CORRECT, False)


def test_thinking_that_states_no_answer_before_the_reflection_is_undecided() -> None:
    answer = (
        "<thinking>\nLet me count.\n<reflection>\nCareful.\n</reflection>\n</thinking>\n"
        "<output>\nThere are 3 r's.\n</output>"
    )
    sections, log = parse(answer)
    checker, expected = checker_for("strawberry", None)  # type: ignore[misc]
    before = answer_checks.thinking_before_first_reflection(log)
    assert before is not None and "Let me count" in before
    result = judge(checker, expected, output=sections.output, thinking_before_reflection=before)
    assert (result["verdict"], result["reflection_changed"]) == (CORRECT, None)


def test_no_output_or_no_clear_answer_is_incorrect_and_says_why() -> None:
    checker, expected = checker_for("strawberry", None)  # type: ignore[misc]
    empty = judge(checker, expected, output="  ", thinking_before_reflection=None, cut_off=True)
    assert empty["verdict"] == INCORRECT
    assert empty["note"] == "The answer has no output section. It was cut off at the length limit."
    vague = judge(checker, expected, output="Berries!", thinking_before_reflection=None)
    assert (vague["verdict"], vague["note"]) == (
        INCORRECT,
        "No clear answer was found in the output.",
    )
    wrong = judge(checker, expected, output="It has 2 r's.", thinking_before_reflection=None)
    assert wrong["note"] == "The answer gives 2, not 3."


# --- judging stored messages ------------------------------------------------------------------


def answered(
    slug: str, answer: str, *, status: str = "done", finished: datetime | None = None
) -> Message:
    sections, log = parse(answer)
    conversation = Conversation.objects.create(session_key="s")
    session = new_id()  # one active answer per session
    now = finished or timezone.now()
    return Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        prompt="q",
        sample_slug=slug,
        status=status,
        session_key=session,
        sections=sections.as_dict(),
        deltas=log,
        created=now - timedelta(seconds=5),
        started_at=now - timedelta(seconds=4),
        finished_at=now,
        finish_reason="eos_token",
    )


def test_check_of_a_message(samples: list[SamplePrompt]) -> None:
    sample = get_sample("agatha")
    assert sample is not None
    message = answered("agatha", sample.scripted_answer)
    result = answer_checks.check(message)
    assert result is not None
    assert result["verdict"] == CORRECT and result["reflection_changed"] is True
    assert result["expected"] == "Agatha herself"

    wrong = answered("agatha", "<output>The butler is the killer.</output>")
    assert answer_checks.check(wrong)["verdict"] == INCORRECT  # type: ignore[index]


def test_no_check_for_free_prompts_unfinished_or_stopped_answers(
    samples: list[SamplePrompt],
) -> None:
    sample = get_sample("sheep")
    assert sample is not None
    assert answer_checks.check(answered("", sample.scripted_answer)) is None
    for status in ("queued", "running", "cancelled", "error"):
        assert answer_checks.check(answered("sheep", sample.scripted_answer, status=status)) is None
    question = Message(role=Message.Role.USER, status="done", sample_slug="sheep")
    assert answer_checks.check(question) is None


def test_check_uses_the_expected_answer_edited_in_the_admin(samples: list[SamplePrompt]) -> None:
    SamplePrompt.objects.filter(slug="sheep").update(expected_answer="17")
    sample = get_sample("sheep")
    assert sample is not None
    result = answer_checks.check(answered("sheep", sample.scripted_answer))
    assert result is not None
    assert (result["verdict"], result["expected"]) == (INCORRECT, "17")


def test_a_finished_answer_is_checked_once_per_language_while_remembered(
    samples: list[SamplePrompt],
    monkeypatch: pytest.MonkeyPatch,
    django_assert_num_queries: Any,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(short_memory.time, "monotonic", lambda: clock[0])
    sample = get_sample("sheep")
    assert sample is not None
    message = answered("sheep", sample.scripted_answer)
    first = answer_checks.check(message)
    assert first is not None and first["verdict"] == CORRECT
    first["note"] = "changed by a caller"

    with django_assert_num_queries(0):
        again = answer_checks.check(message)
    assert again is not None and again["note"] != "changed by a caller"
    with translation.override("zh-hans"):
        in_chinese = answer_checks.check(message)
    assert in_chinese is not None and in_chinese["note"] != again["note"]

    # An operator changes the expected answer: shown once the check is no longer remembered.
    SamplePrompt.objects.filter(slug="sheep").update(expected_answer="17")
    clock[0] += answer_checks.REMEMBER_CHECK_SECONDS - 0.1
    assert answer_checks.check(message)["expected"] != "17"  # type: ignore[index]
    clock[0] += 0.2
    assert answer_checks.check(message)["expected"] == "17"  # type: ignore[index]


def test_remembered_checks_stay_few(
    samples: list[SamplePrompt], monkeypatch: pytest.MonkeyPatch
) -> None:
    few = short_memory.ShortMemory(answer_checks.REMEMBER_CHECK_SECONDS, at_most=3)
    monkeypatch.setattr(answer_checks, "_remembered", few)
    sample = get_sample("sheep")
    assert sample is not None
    for _ in range(7):
        assert answer_checks.check(answered("sheep", sample.scripted_answer)) is not None
    assert 0 < len(answer_checks._remembered) <= 3


# --- accuracy for the dashboard ---------------------------------------------------------------


def rows(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["slug"]: row for row in summary["samples"]}


def test_accuracy_per_sample_over_the_last_hour_day_and_all_time(
    samples: list[SamplePrompt],
) -> None:
    right = get_sample("strawberry").scripted_answer  # type: ignore[union-attr]
    wrong = "<output>There are 2 r's.</output>"
    now = time.time()
    at = lambda seconds_ago: datetime.fromtimestamp(now - seconds_ago, UTC)  # noqa: E731
    answered("strawberry", right, finished=at(60))
    answered("strawberry", wrong, finished=at(120))
    answered("strawberry", right, finished=at(5 * 3600))
    answered("strawberry", wrong, finished=at(3 * 24 * 3600))
    answered("strawberry", right, status="cancelled", finished=at(30))
    answered("", right, finished=at(30))

    table = rows(accuracy.summary(now))
    strawberry = table["strawberry"]
    assert strawberry["title"] == "Count the r's in strawberry"
    assert strawberry["expected"] == "3"
    assert strawberry["last_hour"] == {"correct": 1, "total": 2, "rate": 0.5}
    assert strawberry["last_day"] == {"correct": 2, "total": 3, "rate": 0.667}
    assert strawberry["all_time"] == {"correct": 2, "total": 4, "rate": 0.5}
    assert table["sheep"]["all_time"] == {"correct": 0, "total": 0, "rate": None}

    # Whole hours are counted once and kept: a later refresh reads them from Redis.
    answered("strawberry", right, finished=at(7 * 3600))
    assert rows(accuracy.summary(now))["strawberry"]["all_time"]["total"] == 4
    # The current hour is recounted on every refresh.
    answered("strawberry", right, finished=at(10))
    assert rows(accuracy.summary(now))["strawberry"]["last_hour"]["total"] == 3


def test_accuracy_is_recounted_when_an_expected_answer_changes(
    samples: list[SamplePrompt],
) -> None:
    now = time.time()
    answered(
        "sheep",
        "<output>9 sheep are left.</output>",
        finished=datetime.fromtimestamp(now - 5 * 3600, UTC),
    )
    assert rows(accuracy.summary(now))["sheep"]["all_time"]["correct"] == 1
    SamplePrompt.objects.filter(slug="sheep").update(expected_answer="8")
    after = rows(accuracy.summary(now))["sheep"]
    assert (after["expected"], after["all_time"]["correct"]) == ("8", 0)


def test_accuracy_without_answers_lists_every_sample(samples: list[SamplePrompt]) -> None:
    table = rows(accuracy.summary())
    assert list(table) == [sample.slug for sample in samples]
    assert all(row["all_time"]["total"] == 0 for row in table.values())
