"""Reading the claim an answer makes: its text without Markdown, numbers in words, digits or
Chinese numerals, every claim some patterns find in reading order, and the verdict of the most
frequent one. The answer checks (answer_checks.py) build each sample's checker from these.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

CORRECT = "correct"
INCORRECT = "incorrect"


@dataclass(frozen=True)
class Reading:
    """What a checker read in one text: its verdict (None: no answer stated) and the answer."""

    verdict: str | None
    found: str | None = None


Checker = Callable[[str], Reading]

_NUMBER_WORDS = {
    word: value
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen "  # noqa: SIM905
        "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
# A whole number or decimal on its own: not part of a longer number ("13", "3.5", "1,300"), a
# word ("3rd") or a version. A sentence's closing full stop is fine ("3.").
NUMBER = r"(?<![\w.,])(\d+(?:\.\d+)?|" + "|".join(_NUMBER_WORDS) + r")(?![\w])(?![.,]\d)"
# The same in Chinese text, where a number touches the characters around it ("有3个"), or is
# written in Chinese numerals ("三", "十七", "一万").
_CHINESE_DIGITS = dict(zip("零一二三四五六七八九", range(10), strict=True)) | {"两": 2}
_CHINESE_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10000}
CHINESE_NUMBER = r"(?<![\d.,])(\d+(?:\.\d+)?|[零一二两三四五六七八九十百千万]+)(?!\d)(?![.,]\d)"
_MARKUP = re.compile(r"[*_`~]+")
_SPACES = re.compile(r"\s+")
_QUOTES = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "\u00a0": " "})


def plain(text: str) -> str:
    """Text without Markdown emphasis and code marks, quotes straightened, spaces collapsed."""
    return _SPACES.sub(" ", _MARKUP.sub("", text.translate(_QUOTES))).strip()


def number_value(token: str) -> float | None:
    token = token.lower()
    if token in _NUMBER_WORDS:
        return float(_NUMBER_WORDS[token])
    if token and all(ch in _CHINESE_DIGITS or ch in _CHINESE_UNITS for ch in token):
        return float(_chinese_numeral(token))
    try:
        return float(token)
    except ValueError:
        return None


def _chinese_numeral(token: str) -> int:
    """ "十七" is 17, "二十" 20, "一万" 10000 (a bare unit counts one of it)."""
    total = section = digit = 0
    for ch in token:
        if ch in _CHINESE_DIGITS:
            digit = _CHINESE_DIGITS[ch]
        elif _CHINESE_UNITS[ch] == 10000:
            total += (section + digit) * 10000
            section = digit = 0
        else:
            section += (digit or 1) * _CHINESE_UNITS[ch]
            digit = 0
    return total + section + digit


def format_number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def decide(claims: list[Any], expected: Any, show: Callable[[Any], str] = str) -> Reading:
    """The most frequent claim (ties: the first) against the expected answer."""
    if not claims:
        return Reading(None)
    counts: dict[Any, int] = {}
    for claim in claims:
        counts[claim] = counts.get(claim, 0) + 1
    best = max(counts.values())
    winner = next(claim for claim in claims if counts[claim] == best)
    return Reading(CORRECT if winner == expected else INCORRECT, show(winner))


def claims_in(
    text: str, patterns: Iterable[re.Pattern[str]], convert: Callable[[str], Any]
) -> list[Any]:
    """Every claim the patterns find, in reading order."""
    found: list[tuple[int, Any]] = []
    for pattern in patterns:
        for match in pattern.finditer(text):
            value = convert(match.group("v"))
            if value is not None:
                found.append((match.start("v"), value))
    return [value for _, value in sorted(found, key=lambda item: item[0])]


def compile_claims(*patterns: str) -> tuple[re.Pattern[str], ...]:
    """Patterns with {N} standing for a number (and {Z} for one in Chinese text), captured as
    the group "v"."""
    return tuple(
        re.compile(
            p.replace("{N}", f"(?P<v>{NUMBER})").replace("{Z}", f"(?P<v>{CHINESE_NUMBER})"), re.I
        )
        for p in patterns
    )
