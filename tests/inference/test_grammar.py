"""The tags grammar and the backend URL option that sends it (`openai+http://…?grammar=tags`).

The option is checked against httpx.MockTransport: the grammar goes in the request body only
when the URL asks for it, and never into the URL requests go to. The grammar itself is checked
by llama.cpp, the code that samples within it on the server, through llama-cpp-python's bindings
and the vocabulary of the GGUF the `local-model` extra ships; without them those tests skip.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import math
import re
from typing import Any

import httpx
import pytest

from inference.backends import check_health, http_client, http_url, open_client, protocol_of
from inference.grammar import GRAMMARS, TAGS_GRAMMAR
from inference.openai_client import ChatOptions, OpenAIClient, chat_options
from inference.parser import parse
from tests.inference.test_client import RecordedStream
from tests.inference.test_openai_client import DONE, chunk, sse

GRAMMAR_URL = "openai+http://llama.test:8080?grammar=tags"


def sent_body(url: str) -> tuple[httpx.URL, dict[str, Any]]:
    """The URL and JSON body of the one chat request a client for `url` makes."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return sse(RecordedStream([chunk("ok", "stop") + DONE]))

    client = OpenAIClient(url, transport=httpx.MockTransport(handler))

    async def go() -> None:
        async with client, client.generate_stream("Hi") as events:
            async for _ in events:
                pass

    asyncio.run(go())
    return seen[0].url, json.loads(seen[0].content)


# --------------------------------------------------------------------------- the URL option


def test_a_backend_url_asking_for_the_tags_grammar_sends_it_with_each_request() -> None:
    url, body = sent_body(GRAMMAR_URL)
    assert body["grammar"] == TAGS_GRAMMAR
    assert str(url) == "http://llama.test:8080/v1/chat/completions", "the option is not sent on"


def test_a_backend_url_without_options_sends_no_grammar_field() -> None:
    url, body = sent_body("openai+http://vllm.test:8000")
    assert "grammar" not in body
    assert str(url) == "http://vllm.test:8000/v1/chat/completions"


def test_options_stay_in_the_backend_name_but_out_of_the_requests_to_it() -> None:
    assert protocol_of(GRAMMAR_URL) == "openai"
    assert http_url(GRAMMAR_URL) == "http://llama.test:8080"
    assert http_url("openai+http://llama.test:8080/?grammar=tags") == "http://llama.test:8080"
    assert open_client(GRAMMAR_URL).base_url == "http://llama.test:8080"
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(200)

    with http_client(timeout=5, transport=httpx.MockTransport(handler)) as client:
        assert check_health(GRAMMAR_URL, client).ok
    assert asked == ["http://llama.test:8080/health"]


def test_a_backend_url_without_a_query_has_no_options() -> None:
    assert chat_options("openai+http://vllm:8000") == ChatOptions()
    assert chat_options("http://tgi:80") == ChatOptions()
    assert chat_options(GRAMMAR_URL) == ChatOptions(grammar=GRAMMARS["tags"])


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("openai+http://llama:8080?grammar=json", "unknown grammar 'json' (known: tags)"),
        ("openai+http://llama:8080?grammar=", "unknown grammar ''"),
        ("openai+http://llama:8080?grammar=Tags", "unknown grammar 'Tags'"),
        ("openai+http://llama:8080?gramar=tags", "unknown option 'gramar' (known: grammar)"),
        ("openai+http://llama:8080?grammar=tags&grammar=tags", "an option is given twice"),
        ("openai+http://llama:8080?grammar", "name=value"),
        ("http://tgi:80?grammar=tags", "only openai+ backends take options"),
    ],
)
def test_an_option_the_client_cannot_take_is_refused_saying_why(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        chat_options(url)
    if url.startswith("openai+"):
        with pytest.raises(ValueError, match=re.escape(reason)):
            OpenAIClient(url)


# --------------------------------------------------------------------------- llama.cpp's reading

# A Reflection-style answer as the grammar allows it: a reflection inside the thinking, blank
# lines around the text, a newline between the elements.
ANSWER = (
    "<thinking>\nParis is the capital of France.\n"
    "<reflection>Is it? Yes: the seat of government is Paris.</reflection>\nSo, Paris."
    "</thinking>\n<output>\nParis.\n</output>"
)


class Vocabulary:
    """llama.cpp's vocabulary of the local model's GGUF, with a grammar sampler over it."""

    def __init__(self, llama_cpp: Any, path: str) -> None:
        self.lib = llama_cpp
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True  # the tokenizer alone: no weights, no context
        self.model = llama_cpp.llama_model_load_from_file(path.encode(), params)
        if not self.model:
            pytest.fail(f"llama.cpp could not load {path}")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.eos = llama_cpp.llama_vocab_eos(self.vocab)

    def close(self) -> None:
        self.lib.llama_model_free(self.model)

    def sampler(self, grammar: str) -> Any:
        """A grammar sampler, or None where llama.cpp cannot parse the grammar."""
        return self.lib.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root") or None

    def tokens(self, text: str) -> list[int]:
        raw = text.encode()
        buffer = (self.lib.llama_token * (len(raw) + 8))()
        count = self.lib.llama_tokenize(
            self.vocab, raw, len(raw), buffer, len(buffer), False, False
        )
        assert count >= 0
        return list(buffer[:count])

    def allows(self, sampler: Any, token: int) -> bool:
        """Whether the grammar, where the sampler stands, lets the model write `token` next."""
        data = (self.lib.llama_token_data * 1)(self.lib.llama_token_data(token, 0.0, 0.0))
        candidates = self.lib.llama_token_data_array(data, 1, -1, False)
        self.lib.llama_sampler_apply(sampler, ctypes.byref(candidates))
        return not math.isinf(data[0].logit)

    def follow(self, sampler: Any, text: str) -> str:
        """Write `text` token by token while the grammar allows; what it allowed of it."""
        return self.follow_until_refused(sampler, text)[0]

    def follow_until_refused(self, sampler: Any, text: str) -> tuple[str, str]:
        """What the grammar allowed of `text`, and the piece of the first token it refused
        ("" when it allowed all)."""
        written = ""
        for token in self.tokens(text):
            if not self.allows(sampler, token):
                return written, self.piece(token)
            self.lib.llama_sampler_accept(sampler, token)
            written += self.piece(token)
        return written, ""

    def piece(self, token: int) -> str:
        buffer = ctypes.create_string_buffer(64)
        size = self.lib.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, False)
        return buffer.raw[:size].decode()


@pytest.fixture(scope="module")
def vocabulary() -> Any:
    llama_cpp = pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is not installed: run `make install-local-model`"
    )
    from devtools.stack import local_model_path

    path = local_model_path()
    if not path.is_file():
        pytest.skip(f"no GGUF at {path}: run `make install-local-model`")
    vocabulary = Vocabulary(llama_cpp, str(path))
    yield vocabulary
    vocabulary.close()


def test_llama_cpp_parses_the_tags_grammar(vocabulary: Vocabulary) -> None:
    assert vocabulary.sampler(TAGS_GRAMMAR) is not None
    assert vocabulary.sampler('root ::= "<thinking>" (') is None, "a broken one is refused"


def test_the_grammar_lets_a_reflection_style_answer_through_and_then_only_the_end(
    vocabulary: Vocabulary,
) -> None:
    sampler = vocabulary.sampler(TAGS_GRAMMAR)
    assert vocabulary.follow(sampler, ANSWER) == ANSWER
    assert vocabulary.allows(sampler, vocabulary.eos)
    assert not any(vocabulary.allows(sampler, token) for token in vocabulary.tokens(" More"))
    sections = parse(ANSWER)
    assert sections.thinking.strip() and sections.output.strip()
    assert [r.strip() for r in sections.reflections] == [
        "Is it? Yes: the seat of government is Paris."
    ]


# Each text strays from the format at one character (its index beside it). A token may hold
# several characters, so the grammar refuses the token that holds that one: never an earlier
# token, never a later one. (A lone `<` is allowed wherever a tag may start.)
@pytest.mark.parametrize(
    ("text", "stray_at"),
    [
        ("Paris is the capital.", 0),  # text before the thinking
        ("<output>Paris.</output>", 1),  # an answer without thinking
        ("<thinking></thinking>", 10),  # an empty thought
        ("<thinking>\n\n\n\nx", 12),  # a thought that starts with more than two blanks
        ("<thinking>a < b</thinking>", 13),  # `<` that starts no tag
        ("<thinking>Yes.</thinking><thinking>", 26),  # a second thinking instead of the output
    ],
)
def test_the_grammar_stops_a_model_where_it_strays_from_the_format(
    vocabulary: Vocabulary, text: str, stray_at: int
) -> None:
    written, refused = vocabulary.follow_until_refused(vocabulary.sampler(TAGS_GRAMMAR), text)
    assert refused, "the grammar let the whole text through"
    assert text.startswith(written + refused)
    assert len(written) <= stray_at < len(written) + len(refused), (written, refused)


def test_a_thought_that_runs_on_must_close_within_its_bound(vocabulary: Vocabulary) -> None:
    sampler = vocabulary.sampler(TAGS_GRAMMAR)
    written = vocabulary.follow(sampler, "<thinking>" + "word " * 200)
    assert 300 < len(written) - len("<thinking>") <= 401
    assert vocabulary.follow(sampler, "</thinking>") == "</thinking>"
