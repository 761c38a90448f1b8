"""Llama 3.1 chat-format prompts for Reflection-style models.

TGI's `/v1/chat/completions` would apply the chat template for us, but its stream drops special
tokens, and Reflection's six tags are special tokens. So the playground talks to
`/generate_stream` and renders the Llama 3.1 instruct format itself (without the tool/date
header that the official template adds). Message contents are trimmed, as the template does.

Visitor text (the prompt and both sides of the history) has its special-token strings neutralized
(`inference.sanitize`), so that only the template's own tokens open and close turns. The system
prompt is the operator's and is sent as it is.

Context budgets use `estimate_tokens`, a deliberately pessimistic byte-based estimate: a real
tokenizer is a heavyweight dependency, and over-estimating only costs a little history, while
under-estimating makes TGI reject the request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .sanitize import neutralize_special_tokens

DEFAULT_SYSTEM_PROMPT = (
    "You are a world-class AI system, capable of complex reasoning and reflection. "
    "Reason through the query inside <thinking> tags, and then provide your final response "
    "inside <output> tags. If you detect that you made a mistake in your reasoning at any "
    "point, correct yourself inside <reflection> tags."
)

BEGIN_OF_TEXT = "<|begin_of_text|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
EOT = "<|eot_id|>"

# Llama-3's BPE averages roughly 4 bytes per token on English text; 3 bytes per token leaves
# head-room for code, numbers and non-Latin scripts.
_BYTES_PER_TOKEN = 3


@dataclass(frozen=True)
class Turn:
    """One earlier exchange of the conversation.

    `assistant` is the text to send back to the model; the caller decides what that is
    (usually only the `<output>` part of the earlier answer, to save context).
    """

    user: str
    assistant: str


def _message(role: str, content: str) -> str:
    return f"{START_HEADER}{role}{END_HEADER}\n\n{content.strip()}{EOT}"


def _visitor_message(role: str, content: str) -> str:
    return _message(role, neutralize_special_tokens(content))


def _head(system_prompt: str) -> str:
    system = system_prompt.strip()
    if not system:
        return BEGIN_OF_TEXT
    return BEGIN_OF_TEXT + _message("system", system)


def _turn(turn: Turn) -> str:
    # The model's earlier answers are neutralized too: they may quote the visitor's text.
    return _visitor_message("user", turn.user) + _visitor_message("assistant", turn.assistant)


def _tail(prompt: str) -> str:
    return _visitor_message("user", prompt) + f"{START_HEADER}assistant{END_HEADER}\n\n"


def build_prompt(
    prompt: str, history: Sequence[Turn] = (), system_prompt: str = DEFAULT_SYSTEM_PROMPT
) -> str:
    """Render a full Llama 3.1 prompt that ends with an open assistant header.

    An empty (or whitespace-only) system prompt omits the system block entirely.
    """
    parts = [_head(system_prompt)]
    parts.extend(_turn(turn) for turn in history)
    parts.append(_tail(prompt))
    return "".join(parts)


def _tokens_for_bytes(n_bytes: int) -> int:
    return -(-n_bytes // _BYTES_PER_TOKEN)


def estimate_tokens(text: str) -> int:
    """A cheap upper estimate of the number of Llama-3 tokens in `text`."""
    return _tokens_for_bytes(len(text.encode("utf-8")))


def fit_history(
    prompt: str,
    history: Sequence[Turn],
    max_input_tokens: int,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
) -> tuple[list[Turn], int]:
    """Drop the oldest turns until the rendered prompt fits `max_input_tokens`.

    Returns `(kept_turns, number_dropped)`. The current prompt is never dropped: if it does not
    fit even without history, all history is dropped and the caller must reject the prompt
    (compare `estimate_tokens(build_prompt(prompt, [], system_prompt))` with the budget).
    """
    # The prompt is a plain concatenation, so byte lengths add up and the estimate of any
    # suffix of the history can be computed without rendering it again.
    fixed = len(_head(system_prompt).encode("utf-8")) + len(_tail(prompt).encode("utf-8"))
    turn_sizes = [len(_turn(turn).encode("utf-8")) for turn in history]
    total = fixed + sum(turn_sizes)
    dropped = 0
    while dropped < len(turn_sizes) and _tokens_for_bytes(total) > max_input_tokens:
        total -= turn_sizes[dropped]
        dropped += 1
    return list(history[dropped:]), dropped
