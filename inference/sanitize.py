"""Text on its way into and out of a model.

Into the model: a real tokenizer reads a special-token string inside prompt text as the control
token itself, so a visitor who writes `<|eot_id|><|start_header_id|>system<|end_header_id|>`
would forge turns of their own, and every follow-up would resend them in the history.
`neutralize_special_tokens` puts a ZERO WIDTH SPACE right after the `<` of each such string: the
text reads the same, but the exact string, and so the special token, no longer occurs.

Out of the model: a NUL (PostgreSQL rejects it in text) or a lone surrogate (JSON `"\\ud800"`,
which has no UTF-8 encoding) in a backend's token text would make the whole answer fail to be
stored. `storable_text` replaces them with U+FFFD.
"""

from __future__ import annotations

import re

from .tags import TAGS as REFLECTION_TAGS

ZERO_WIDTH_SPACE = "\u200b"

# A `<` that starts a special token:
# - `<|name|>`: Llama 3's control tokens (<|begin_of_text|>, <|eot_id|>, <|python_tag|>,
#   <|reserved_special_token_N|>, ...), ChatML's <|im_start|>, <|im_end|>, <|endoftext|>, and
#   the like in other chat templates;
# - `<｜name｜>` with fullwidth bars: DeepSeek's templates (R1 and its distills);
# - Reflection's six tags: special tokens of the model (they carry the answer's structure).
_SPECIAL_TOKEN_START = re.compile(
    r"<(?=\|[^\s|<>]+\|>|｜[^\s｜<>]+｜>|"
    + "|".join(re.escape(tag[1:]) for tag in sorted(REFLECTION_TAGS))
    + ")"
)

# NUL, and the surrogate code points: a str holding one of those cannot be encoded as UTF-8
# (every other code point can). JSON decoding joins a valid pair into one astral character, so
# only lone halves are left here.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def neutralize_special_tokens(text: str) -> str:
    """`text` with every special-token string broken up, so a tokenizer reads it as plain text."""
    return _SPECIAL_TOKEN_START.sub("<" + ZERO_WIDTH_SPACE, text)


def storable_text(text: str) -> str:
    """`text` with NUL and lone surrogates replaced by U+FFFD, so any database can store it."""
    return _UNSTORABLE.sub("\ufffd", text)
