"""Answer checks: does an answer to a sample prompt give the sample's expected answer?

Every built-in sample (inference/samples/) has a checker that reads the answer's *claim*, not
merely whether the expected text occurs somewhere: "so the word has 2 r's" claims 2, "9.11
should be the larger number" claims 9.11, "the butler must be the killer" claims the butler.
Each checker reads English and Simplified Chinese ("所以管家就是凶手" claims the butler too), so
an answer to a sample's Chinese version is checked like one to its English version; its expected
answer and what it found are shown in the version's language.
Numbers are matched as whole numbers ("13" is not "3", "3.5" is not "3", "9.90" is 9.9). When a
text makes several claims the most frequent one counts, ties going to the first. A text with no
claim a checker recognises is undecided; a finished answer whose output is undecided is judged
incorrect ("no clear answer").

A sample an operator added in the admin, or one whose expected answer they changed, is checked
by the generic fallback: the normalised expected answer must occur in the output (numbers as
whole numbers, text on word boundaries).

Did a reflection change the outcome? The heuristic: run the same checker on the thinking text
the model wrote *before its first reflection* and compare that reading with the verdict on the
final output. `reflection_changed` is True when the thinking before the reflection stated an
answer and its verdict differs from the final one (a wrong answer the reflection fixed, or a
right one it talked the model out of), False when both agree, and None when there was no
reflection or the thinking before it stated no answer the checker recognises.

The operators' dashboard counts these verdicts over time (playground/ops/accuracy.py).
"""

from __future__ import annotations

import re
from typing import Any

from django.utils.translation import get_language, gettext

from inference.samples import ENGLISH, find_sample_by_prompt, get_sample
from playground.claims import (
    CORRECT,
    INCORRECT,
    NUMBER,
    Checker,
    Reading,
    claims_in,
    compile_claims,
    decide,
    format_number,
    number_value,
    plain,
)
from playground.short_memory import ShortMemory

# Bump when a checker changes, so that the dashboard's stored counts are recounted.
CHECKERS_VERSION = 1


# --- the built-in samples ---------------------------------------------------------------------

_STRAWBERRY = compile_claims(
    # "3 r's", "3 Rs", "3 \"r\"s", "3 letter r's": a plural count, never "one r" (a part's count).
    r"{N}\s+(?:letter\s+)?[\"']?r[\"']?(?:'s|s)(?!\w)",
    r"\bappears\s+{N}\s+times",
    r"{N}\s+times\b",
    r"\b(?:answer|total|count)\s+(?:is|of|:)\s+{N}",
    # "有 3 个 r", "出现了 3 次"
    r"{Z}\s*个\s*[“\"'‘]?r[”\"'’]?(?![a-z])",
    r"出现了?\s*{Z}\s*次",
)
_ALICE = compile_claims(
    r"\bbrothers?\b[^.\n;]{0,30}?\b(?:has|have|gets)\s+{N}\s+sisters\b",
    r"\bbrothers?\b[^.\n;]{0,40}?\bsisters\b[^.\n;]{0,20}?:\s*{N}",
    r"\b(?:answer|total)\s+(?:is|:)\s+{N}",
    # "每个兄弟都有 3 个姐妹"
    r"兄弟[^。\n；;]{0,20}?有\s*{Z}\s*(?:个|位)\s*姐妹",
)
_SHEEP = compile_claims(
    r"{N}\s+(?:sheep\s+)?(?:are\s+|is\s+|were\s+)?(?:left|remain(?:ing|s)?)\b",
    r"\b(?:has|have|with)\s+{N}\s+(?:sheep\s+)?(?:left|remaining)\b",
    r"\b(?:left|remaining)\s+(?:is|are|:)\s+{N}",
    r"\banswer\s+(?:is|:)\s+{N}",
    # "还剩 9 只羊", "9 只羊留了下来"
    r"剩(?:下|余)?了?\s*{Z}\s*只",
    r"{Z}\s*只(?:羊)?[^。\n，,]{0,6}?(?:留了下来|留下|剩下)",
)

_ODD_NUMBERS = compile_claims(
    r"\bsum\b[^.\n]{0,60}?\bis\s+{N}",
    r"\badds?\s+up\s+to\s+{N}",
    r"\b(?:answer|total)\s+(?:is|:)\s+{N}",
    # "它们的和是 10000", "加起来等于 10000"
    r"和\s*(?:是|为|等于)\s*{Z}",
    r"加起来\s*(?:是|等于)\s*{Z}",
)


def counting(patterns: tuple[re.Pattern[str], ...], expected: float) -> Checker:
    def check(text: str) -> Reading:
        claims = claims_in(plain(text), patterns, number_value)
        return decide(claims, expected, format_number)

    return check


_DECIMAL = r"(?<![\d.])(?P<v>9\.90*|9\.110*)(?!\d)"
_LARGER = r"(?:larger|bigger|greater|higher)"
_DECIMAL_LARGER = tuple(
    re.compile(p, re.I)
    for p in (
        _DECIMAL + r"\s+(?:is|was|would be|should be|must be|seems)\s+(?:the\s+)?" + _LARGER,
        _LARGER + r"(?:\s+(?:number|one|value))?\s+(?:is|:)\s+" + _DECIMAL,
        r"\banswer\s+(?:is|:)\s+" + _DECIMAL,
        # "9.9 更大", "9.9 比 9.11 大", "更大的是 9.9", "答案是 9.9"
        _DECIMAL + r"\s*(?:更大|较大|比\s*9\.\d+\s*(?:更|还)?大)",
        r"(?:更大|较大)的(?:数|那个|一个)?\s*(?:是|为|：|:)\s*" + _DECIMAL,
        r"答案\s*(?:是|为|：|:)\s*" + _DECIMAL,
    )
)
_DECIMAL_SMALLER = tuple(
    re.compile(p, re.I)
    for p in (
        _DECIMAL + r"\s+(?:is|was|would be|should be|must be)\s+(?:the\s+)?(?:smaller|less|lower)",
        _DECIMAL + r"\s*(?:更小|较小|比\s*9\.\d+\s*(?:更|还)?小)",
    )
)


def _decimals(text: str) -> Reading:
    flat = plain(text)
    claims = claims_in(flat, _DECIMAL_LARGER, lambda v: float(v))
    # "9.11 is the smaller one" claims that the other one is larger.
    claims += [9.9 if v == 9.11 else 9.11 for v in claims_in(flat, _DECIMAL_SMALLER, float)]
    if not claims:
        mentioned = {float(m.group("v")) for m in re.finditer(_DECIMAL, flat)}
        if len(mentioned) == 1:
            claims = list(mentioned)
    return decide(claims, 9.9, format_number)


_WHO = r"(?P<v>(?:aunt\s+)?agatha(?:\s+herself)?|(?:the\s+)?butler|charles)"
_KILLER = r"(?:killer|murderer|culprit)"
_WHO_ZH = r"(?P<v>阿加莎(?:姑妈)?(?:本人|自己)?|管家|查尔斯)"
_IS_ZH = r"\s*(?:就是|才是|便是|必定是|一定是|肯定是|是)\s*"
_AGATHA = tuple(
    re.compile(p, re.I)
    for p in (
        _WHO + r"\s+(?:is|was|must be|must have been|would be)\s+(?:the\s+)?" + _KILLER,
        _WHO + r"\s+(?:killed|murdered)\s+(?:aunt\s+agatha|agatha|herself|her)\b",
        _KILLER + r"\s+(?:is|was|must be|must have been)\s+" + _WHO,
        # "管家就是凶手", "凶手是阿加莎本人" ("管家不可能是凶手" claims nobody)
        _WHO_ZH + _IS_ZH + r"(?:真正的)?(?:凶手|杀人者)",
        r"(?:凶手|杀人者)" + _IS_ZH + _WHO_ZH,
    )
)


def _suspect(name: str) -> str:
    name = name.lower()
    if "agatha" in name or "阿加莎" in name:
        return "Agatha"
    return "the butler" if "butler" in name or "管家" in name else "Charles"


def _agatha(text: str) -> Reading:
    flat = plain(text)
    claims = claims_in(flat, _AGATHA, _suspect)
    claims += ["Agatha" for _ in re.finditer(r"\bkilled herself\b|\bsuicide\b|自杀", flat, re.I)]
    return decide(claims, "Agatha", lambda who: f"{who} herself" if who == "Agatha" else who)


_LAKE = re.compile(r"\bweiss(?:er|en)\s+see\b|\blake\s+weissensee\b|\bweissensee\s+lake\b|白湖")
_NEGATION = re.compile(
    r"\b(?:not|no longer|outside|skip|drop|rather than|instead)\b|n't\b"
    r"|不在|不属于|不是|去掉|划掉|删掉|而不是|并不|不要|跳过"
)


def _weissensee(text: str) -> Reading:
    # casefold() turns ß into ss, so "Weißer See" and "Weisser See" read the same.
    flat = plain(text).casefold()
    for line in re.split(r"(?<=[.!?])\s|(?<=[。！？；])|\n", flat):
        if ("mauerpark" in line or "墙公园" in line) and not _NEGATION.search(line):
            return Reading(INCORRECT, "the Mauerpark (not in Weißensee)")
    if _LAKE.search(flat):
        return Reading(CORRECT, "the Weißer See")
    return Reading(None)


_AMOUNT = r"(?P<v>\$\s?\d+(?:\.\d+)?|\d+\s*(?:cents?|¢)|(?:five|ten)\s+cents)"
_AMOUNT_ZH = r"(?P<v>\$\s?\d+(?:\.\d+)?|\d+(?:\.\d+)?\s*(?:美元|美分|分钱))"
_BALL = tuple(
    re.compile(p, re.I)
    for p in (
        r"\bball\s+(?:costs?|is|was|would cost|is priced at)\s+(?:only\s+|just\s+)?" + _AMOUNT,
        r"\b(?:ball's price|price of the ball|ball price)\s+(?:is|was|:)\s+" + _AMOUNT,
        _AMOUNT + r"\s+for the ball\b",
        # "球的价格是 0.05 美元", "球是 5 美分" (not "球拍是 1.05 美元": the bat)
        r"球(?:的价格|的价钱|价格)?\s*(?:是|为|要|卖|值)\s*(?:只有|仅|只要)?\s*" + _AMOUNT_ZH,
    )
)


def _cents(amount: str) -> int | None:
    amount = amount.lower().replace(" ", "")
    if amount.startswith("five"):
        return 5
    if amount.startswith("ten"):
        return 10
    if amount.startswith("$"):
        return round(float(amount[1:]) * 100)
    if amount.endswith("美元"):
        return round(float(amount.removesuffix("美元")) * 100)
    digits = re.match(r"\d+", amount)
    return int(digits.group()) if digits else None


def _bat_and_ball(text: str) -> Reading:
    claims = claims_in(plain(text), _BALL, _cents)
    return decide(claims, 5, lambda cents: f"${cents / 100:.2f}")


_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY = r"(?P<v>" + "|".join(_DAYS) + r")"
# 星期三, 周三, 礼拜三 (日 and 天 are both Sunday).
_DAYS_ZH = dict(zip("一二三四五六日", _DAYS, strict=True)) | {"天": "sunday"}
_DAY_ZH = r"(?P<v>(?:星期|周|礼拜)[一二三四五六日天])"
_YESTERDAY = tuple(
    re.compile(p, re.I)
    for p in (
        r"\byesterday\s+(?:was|is|would be|would have been|must have been)\s+(?:a\s+)?" + _DAY,
        _DAY + r"\s+(?:was|is)\s+yesterday\b",
        r"\banswer\s+(?:is|:)\s+" + _DAY,
        # "昨天是星期三"
        r"昨天\s*(?:就是|应该是|是|为)\s*" + _DAY_ZH,
        _DAY_ZH + r"\s*是昨天",
    )
)


def _weekday(day: str) -> str:
    return _DAYS_ZH.get(day[-1], day).capitalize()


def _day_before(text: str) -> Reading:
    claims = claims_in(plain(text), _YESTERDAY, _weekday)
    return decide(claims, "Wednesday")


CHECKERS: dict[str, Checker] = {
    "strawberry": counting(_STRAWBERRY, 3),
    "decimal-compare": _decimals,
    "agatha": _agatha,
    "weissensee": _weissensee,
    "bat-and-ball": _bat_and_ball,
    "alice-siblings": counting(_ALICE, 3),
    "day-before": _day_before,
    "sheep": counting(_SHEEP, 9),
    "odd-numbers": counting(_ODD_NUMBERS, 10000),
}


def normalise(text: str) -> str:
    """Case, Markdown marks, punctuation at the ends and runs of spaces don't matter."""
    return plain(text).casefold().strip(" .!?:;,\"'()")


def generic(expected: str) -> Checker:
    """The expected answer, as a whole number or on word boundaries, somewhere in the text."""
    target = normalise(expected)
    value = number_value(target.removeprefix("$")) if target else None

    def check(text: str) -> Reading:
        flat = plain(text).casefold()
        if not target or not flat:
            return Reading(None)
        if value is not None:
            numbers = [number_value(m) for m in re.findall(NUMBER, flat.replace("$", " "))]
            if value in numbers:
                return Reading(CORRECT, expected)
            return Reading(INCORRECT, None)
        pattern = r"(?<!\w)" + re.escape(target) + r"(?!\w)"
        return Reading(CORRECT, expected) if re.search(pattern, flat) else Reading(INCORRECT)

    return check


def checker_for(slug: str, expected: str | None) -> tuple[Checker, str] | None:
    """The checker for a sample and the expected answer to show, or None if there is nothing
    to check against. An expected answer changed in the admin is checked generically."""
    builtin = get_sample(slug)
    unchanged = builtin is not None and (
        not expected or normalise(expected) == normalise(builtin.expected)
    )
    if builtin is not None and unchanged and slug in CHECKERS:
        return CHECKERS[slug], builtin.expected
    if expected:
        return generic(expected), expected
    return None


# --- judging a message ------------------------------------------------------------------------


def thinking_before_first_reflection(deltas: list[dict[str, Any]]) -> str | None:
    """The thinking written before the first reflection; None when there was no reflection."""
    before: list[str] = []
    for delta in deltas:
        if delta.get("section") == "reflection":
            return "".join(before)
        if delta.get("section") == "thinking":
            before.append(delta.get("text", ""))
    return None


def judge(
    checker: Checker,
    expected: str,
    *,
    output: str,
    thinking_before_reflection: str | None,
    cut_off: bool = False,
) -> dict[str, Any]:
    """The check of one finished answer (see the module docstring for the heuristic)."""
    final = checker(output) if output.strip() else Reading(None)
    verdict = final.verdict or INCORRECT
    changed: bool | None = None
    before = Reading(None)
    if thinking_before_reflection is not None:
        before = checker(thinking_before_reflection)
        if before.verdict is not None:
            changed = before.verdict != verdict
    # The note is written when the check is read (a page, the API), in its reader's language;
    # the answers it quotes are the sample's own words and stay as they are.
    if changed and verdict == CORRECT:
        note = gettext(
            "A reflection changed the outcome: before it, the thinking's answer was "
            "%(before)s; the final answer is right."
        ) % {"before": before.found}
    elif changed:
        note = gettext(
            "A reflection changed the outcome: before it, the thinking had the right answer "
            "(%(before)s); the final answer does not."
        ) % {"before": before.found}
    elif not output.strip():
        note = gettext("The answer has no output section.")
    elif final.verdict is None:
        note = gettext("No clear answer was found in the output.")
    elif verdict == CORRECT:
        note = gettext("The answer gives %(found)s.") % {"found": final.found}
    else:
        note = gettext("The answer gives %(found)s, not %(expected)s.") % {
            "found": final.found,
            "expected": expected,
        }
    if cut_off and verdict == INCORRECT:
        # Translators: %(note)s is one of the notes above; this sentence follows it.
        note = gettext("%(note)s It was cut off at the length limit.") % {"note": note}
    return {
        "verdict": verdict,
        "expected": expected,
        "found": final.found,
        "reflection_changed": changed,
        "note": note,
    }


def _expected_answer(slug: str) -> str | None:
    from playground.models import SamplePrompt

    row = SamplePrompt.objects.filter(slug=slug).values_list("expected_answer", flat=True).first()
    return row


# What the checkers found, as an answer in Chinese names it (numbers read the same).
_FOUND_IN_CHINESE = {
    "Agatha herself": "阿加莎本人",
    "the butler": "管家",
    "Charles": "查尔斯",
    "the Weißer See": "白湖（Weißer See）",
    "the Mauerpark (not in Weißensee)": "墙公园（Mauerpark，不在魏森湖区）",
} | {day.capitalize(): f"星期{number}" for number, day in _DAYS_ZH.items() if number != "天"}


def in_language(reading: Reading, language: str) -> Reading:
    """`reading` with what it found named in `language` (the answer's)."""
    if reading.found is None or language == ENGLISH:
        return reading
    if reading.found.startswith("$"):
        return Reading(reading.verdict, f"{reading.found[1:]} 美元")
    return Reading(reading.verdict, _FOUND_IN_CHINESE.get(reading.found, reading.found))


# Every viewer of a shared answer is shown its check (the page, the API, the stream's final
# event): a thousand strangers on one link asked for the same one a thousand times, and reading
# it took a query and the checker's patterns over the whole answer each time. A finished answer
# never changes, so its check is remembered per process and language, for this long: an
# operator's new expected answer shows within it.
REMEMBER_CHECK_SECONDS = 10.0
_remembered = ShortMemory(REMEMBER_CHECK_SECONDS, at_most=1024)
_NOT_REMEMBERED = object()


def check(message: Any, expected: str | None = None) -> dict[str, Any] | None:
    """The answer check of a message: None unless it is a finished ("done") answer to a sample.

    `expected` overrides the expected answer stored with the sample (saves a query in loops,
    and is not remembered: such a loop reads each answer once).
    """
    if getattr(message, "role", None) != "assistant" or message.status != "done":
        return None
    if not message.sample_slug:
        return None
    if expected is not None:
        return _checked(message, expected)
    key = (message.pk, message.finished_at, get_language())
    result = _remembered.recall(key, _NOT_REMEMBERED)
    if result is _NOT_REMEMBERED:
        result = _checked(message, _expected_answer(message.sample_slug))
        _remembered.keep(key, result)
    return _copy(result)


def _copy(result: dict[str, Any] | None) -> dict[str, Any] | None:
    # Each caller gets its own: one that added to it must not change what the next is shown.
    return dict(result) if result is not None else None


def _checked(message: Any, expected: str | None) -> dict[str, Any] | None:
    slug = message.sample_slug
    found = checker_for(slug, expected)
    if found is None:
        return None
    checker, shown = found
    # Asked in another language's version of the sample: its words for the answers.
    version = find_sample_by_prompt(message.prompt)
    builtin = get_sample(slug)
    if version is not None and version.slug == slug and version.language != ENGLISH:
        if builtin is not None and shown == builtin.expected:
            shown = version.expected
        english_checker, language = checker, version.language

        def checker(text: str) -> Reading:
            return in_language(english_checker(text), language)

    sections = message.sections or {}
    return judge(
        checker,
        shown,
        output=sections.get("output") or "",
        thinking_before_reflection=thinking_before_first_reflection(message.deltas or []),
        cut_off=message.finish_reason == "length",
    )
