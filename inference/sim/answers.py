"""The simulator's "model" (described in the package docstring): which answer a prompt gets,
and how that answer is cut into tokens."""

from __future__ import annotations

import functools
import math
import random
import re
import zlib
from dataclasses import dataclass
from decimal import Decimal

from ..samples import find_sample_by_prompt
from ..tags import TAGS as REFLECTION_TAGS

# Ids from the Llama 3.1 reserved special-token range, where Reflection's tags were added.
TAG_TOKEN_IDS = {tag: 128011 + offset for offset, tag in enumerate(REFLECTION_TAGS)}
EOT_TEXT = "<|eot_id|>"
EOT_ID = 128009
_ORDINARY_VOCAB = 128000

_TAG_SPLIT = re.compile("(" + "|".join(re.escape(tag) for tag in REFLECTION_TAGS) + ")")
# A rough imitation of a BPE pre-tokenizer: contractions, words with their leading space,
# numbers in groups of up to three digits, single punctuation marks, runs of newlines, and
# whatever is left one character at a time (so the pieces always add up to the input).
_PIECE = re.compile(
    r"'(?:s|t|re|ve|m|ll|d)\b"
    r"| ?[^\W\d_]+"
    r"|\d{1,3}"
    r"| ?[^\w\s]"
    r"| ?_"
    r"|\n+"
    r"| +"
    r"|[\s\S]"
)
_MAX_PIECE_CHARS = 6
_LAST_USER_TURN = re.compile(
    r"<\|start_header_id\|>user<\|end_header_id\|>\n\n(.*?)(?:<\|eot_id\|>|\Z)", re.DOTALL
)
_QUOTE_CHARS = 160


@dataclass(frozen=True, slots=True)
class SimToken:
    id: int
    text: str
    special: bool
    logprob: float


def extract_last_user_message(inputs: str) -> str:
    """The last user turn of a Llama 3.1 chat prompt, or the whole text if it has no such turn."""
    turns = _LAST_USER_TURN.findall(inputs)
    return turns[-1] if turns else inputs


def _quote(question: str) -> str:
    # The quote is echoed inside the answer, so a tag in the question must not end a section.
    text = " ".join(_TAG_SPLIT.sub("", question).split())
    if len(text) > _QUOTE_CHARS:
        text = text[: _QUOTE_CHARS - 1].rstrip() + "…"
    return text or "(an empty message)"


_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")
_ASKS_FOR_CODE = re.compile(
    r"\b(?:code|program|function|script|python|javascript|typescript|rust|sql|regex|bash)\b",
    re.IGNORECASE,
)
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_MAX_NUMBERS = 6


def _what_was_received(question: str) -> list[tuple[str, str]]:
    """Facts about the message itself: the one thing the simulator can answer truthfully."""
    text = " ".join(question.split())
    facts = [("words", str(len(text.split()))), ("characters", str(len(text)))]
    facts.append(("a question?", 'yes, it ends with "?"' if text.endswith(("?", "？")) else "no"))
    numbers = _NUMBER.findall(text)[:_MAX_NUMBERS]
    if numbers:
        facts.append(("numbers", ", ".join(numbers)))
    if _CJK.search(text):
        facts.append(("script", "includes Chinese characters"))
    return facts


def _arithmetic(question: str) -> str:
    numbers = _NUMBER.findall(" ".join(question.split()))[:_MAX_NUMBERS]
    if len(numbers) < 2:
        return ""
    total = sum(Decimal(number) for number in numbers)
    terms = " + ".join(numbers).replace("+ -", "- ")
    return (
        f"The numbers in it add up to ${terms} = {total}$: arithmetic the simulator can do, "
        "unlike reasoning.\n\n"
    )


def _code_example(quote: str) -> str:
    if not _ASKS_FOR_CODE.search(quote):
        return ""
    # Backticks could end the fence early; the rest is a Python string literal as repr makes it.
    literal = repr(quote.replace("`", "'")[:60])
    return (
        "A real model would answer with code here. The simulator can only show how code looks:\n\n"
        "```python\n"
        f"message = {literal}\n"
        'print(len(message.split()), "words")\n'
        "```\n\n"
    )


def generic_answer(question: str) -> str:
    """The honest answer for a prompt that is not one of the samples. It cannot answer, but it
    differs with the message: what it received (as a table), the sum of any numbers in it (as
    a formula) and, when code is asked for, a code block, so a free prompt shows the same
    formatting a real answer would."""
    quote = _quote(question)
    facts = _what_was_received(question)
    words = facts[0][1]
    asks = facts[2][1] != "no"
    table = "\n".join(f"| {name} | {value} |" for name, value in facts)
    return (
        "<thinking>\n"
        f'The question is: "{quote}"\n\n'
        f"It has {words} word{'' if words == '1' else 's'}"
        f"{' and asks something' if asks else ''}. To answer it, I would work through it step "
        "by step and check each step before giving a final answer.\n\n"
        "<reflection>\n"
        "I cannot actually do that here. This reply comes from the playground's simulator, "
        "which streams prepared text and has no language model behind it. Any reasoning I "
        "wrote about this question would be made up, so the honest thing is to say so "
        "instead of pretending to answer.\n"
        "</reflection>\n\n"
        "The right answer is to explain where this reply comes from, say what I can about the "
        "message itself, and what would give a real answer.\n"
        "</thinking>\n\n"
        "<output>\n"
        "This answer comes from the playground's **simulator**, not from a real model, so it "
        "cannot actually answer your question:\n\n"
        f"> {quote}\n\n"
        "What it can tell you truthfully is what it received:\n\n"
        "| what | in your message |\n"
        "|---|---|\n"
        f"{table}\n\n"
        f"{_arithmetic(question)}"
        f"{_code_example(quote)}"
        "The sample prompts have prepared answers that show the full reasoning format. For "
        "real answers, connect the playground to a text-generation-inference server.\n"
        "</output>"
    )


def choose_answer(inputs: str) -> str:
    """The scripted answer for a sample prompt, else the generic simulator answer."""
    question = extract_last_user_message(inputs)
    sample = find_sample_by_prompt(question)
    return sample.scripted_answer if sample is not None else generic_answer(question)


@functools.lru_cache(maxsize=65536)
def _token_id(text: str) -> int:
    # The same text always gets the same id, as it would in a real vocabulary.
    return zlib.crc32(text.encode("utf-8")) % _ORDINARY_VOCAB


def _logprob(draw: float, scale: float) -> float:
    # Cubing skews the draws towards 0, as a confident model's logprobs are.
    return -round(draw**3 * scale, 4)


def _ordinary_token(text: str, rng: random.Random) -> SimToken:
    return SimToken(_token_id(text), text, False, _logprob(rng.random(), 2.5))


@functools.lru_cache(maxsize=64)
def _segments(answer: str) -> tuple[tuple[bool, tuple[str, ...]], ...]:
    """The part of tokenizing that needs no randomness: (is_tag, pieces) per segment."""
    segments = []
    for segment in _TAG_SPLIT.split(answer):
        if segment in TAG_TOKEN_IDS:
            segments.append((True, (segment,)))
        elif segment:
            segments.append((False, tuple(m[0] for m in _PIECE.finditer(segment))))
    return tuple(segments)


def _split_tag(tag: str, rng: random.Random) -> list[str]:
    # Ordinary text pieces for a tag, cut at random points so parsers see tags split anywhere.
    cuts = sorted(rng.sample(range(1, len(tag)), k=rng.randint(1, 3)))
    bounds = [0, *cuts, len(tag)]
    return [tag[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def tokenize_answer(answer: str, rng: random.Random, *, split_tags: bool = False) -> list[SimToken]:
    """Cut `answer` into tokens the way a BPE tokenizer roughly would, ending with `<|eot_id|>`.

    The six Reflection tags are single special tokens, unless `split_tags`, which turns each into
    a few ordinary pieces. Non-special token texts plus tag texts concatenate back to `answer`.
    Words longer than six characters are cut into pieces of three to six at random.
    """
    tokens: list[SimToken] = []
    for is_tag, pieces in _segments(answer):
        if is_tag:
            tag = pieces[0]
            if split_tags:
                tokens.extend(_ordinary_token(part, rng) for part in _split_tag(tag, rng))
            else:
                tokens.append(SimToken(TAG_TOKEN_IDS[tag], tag, True, _logprob(rng.random(), 0.1)))
            continue
        for piece in pieces:
            while len(piece) > _MAX_PIECE_CHARS:
                cut = rng.randint(3, _MAX_PIECE_CHARS)
                tokens.append(_ordinary_token(piece[:cut], rng))
                piece = piece[cut:]
            tokens.append(_ordinary_token(piece, rng))
    tokens.append(SimToken(EOT_ID, EOT_TEXT, True, _logprob(rng.random(), 0.1)))
    return tokens


def estimate_prompt_tokens(text: str) -> int:
    """About four bytes of UTF-8 per token, like Llama 3's tokenizer on English text."""
    return math.ceil(len(text.encode("utf-8")) / 4)
