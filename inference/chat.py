"""Chat-message prompts for OpenAI-compatible backends (vLLM, llama.cpp, SGLang, TGI chat).

Those servers apply the model's own chat template, so the playground sends them the conversation
as messages instead of a rendered Llama 3.1 string. `ChatPrompt` carries both: it *is* the
rendered Llama 3.1 prompt (a `str`, so code that passes prompts around, logs or measures them
needs no change) and it has `.messages` (system, earlier turns, the question) and `.model`
(the server's model id), which `OpenAIClient` sends instead.

History trimming is the same as for TGI (`inference.prompt.fit_history`): the Llama 3.1
rendering is a fair, pessimistic stand-in for the size of whatever template the server applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Self

from .client import SamplingParams
from .prompt import DEFAULT_SYSTEM_PROMPT, Turn, build_prompt, estimate_tokens, fit_history
from .sanitize import neutralize_special_tokens

ChatMessage = dict[str, str]
# When the server does not say how long its context is (llama.cpp, llama-cpp-python, TGI's
# Messages API), history is trimmed to this many prompt tokens: small enough for any server.
DEFAULT_MAX_INPUT_TOKENS = 2048


def chat_messages(
    prompt: str, history: Sequence[Turn] = (), system_prompt: str = DEFAULT_SYSTEM_PROMPT
) -> list[ChatMessage]:
    """System prompt (unless empty), earlier turns, then the question; contents trimmed.

    As in `build_prompt`, special-token strings in everything but the system prompt are
    neutralized: llama.cpp and vLLM, too, parse special tokens in the text their template renders.
    """
    messages: list[ChatMessage] = []
    if system_prompt.strip():
        messages.append({"role": "system", "content": system_prompt.strip()})
    for turn in history:
        messages.append(_visitor_message("user", turn.user))
        messages.append(_visitor_message("assistant", turn.assistant))
    messages.append(_visitor_message("user", prompt))
    return messages


def _visitor_message(role: str, content: str) -> ChatMessage:
    return {"role": role, "content": neutralize_special_tokens(content.strip())}


class ChatPrompt(str):
    """A Llama 3.1 prompt string that also carries its chat messages and the target model id."""

    messages: list[ChatMessage]
    model: str | None

    def __new__(
        cls,
        prompt: str,
        history: Sequence[Turn] = (),
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        *,
        model: str | None = None,
    ) -> Self:
        self = super().__new__(cls, build_prompt(prompt, history, system_prompt))
        self.messages = chat_messages(prompt, history, system_prompt)
        self.model = model or None
        return self


def fit_chat(
    prompt: str,
    history: Sequence[Turn],
    *,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    max_input_tokens: int | None,
    max_total_tokens: int | None = None,
    max_new_tokens: int,
    model: str | None = None,
) -> tuple[ChatPrompt, int]:
    """The chat prompt with as much history as fits, and how many old turns were left out.

    When the server reports its context length (`max_total_tokens`; vLLM's `max_model_len`),
    history is trimmed so that at least half of the window (or the whole `max_new_tokens`, if
    smaller) stays free for the answer. Without a known prompt limit (`max_input_tokens` None,
    e.g. the server's model list could not be read) the budget is `DEFAULT_MAX_INPUT_TOKENS`.
    """
    budget = max_input_tokens or DEFAULT_MAX_INPUT_TOKENS
    if max_total_tokens:
        reserve = min(max_new_tokens, max_total_tokens // 2)
        budget = max(1, min(budget, max_total_tokens - reserve))
    kept, dropped = fit_history(prompt, history, budget, system_prompt)
    return ChatPrompt(prompt, kept, system_prompt, model=model), dropped


def fit_answer(prompt: str, max_total_tokens: int | None, params: SamplingParams) -> SamplingParams:
    """`params` with `max_new_tokens` lowered to what the context window leaves after `prompt`.

    OpenAI-style servers reject a request whose prompt plus `max_tokens` exceeds the window
    (TGI would cap it instead). Without a known window, `params` are returned unchanged.
    """
    if not max_total_tokens:
        return params
    room = max(1, max_total_tokens - estimate_tokens(prompt))
    if room >= params.max_new_tokens:
        return params
    return replace(params, max_new_tokens=room)
