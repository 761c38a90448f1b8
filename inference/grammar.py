"""GBNF grammars that hold a model to the answer format, for servers that take one per request.

llama.cpp's `llama-server` and llama-cpp-python's server read a `grammar` field on
`/v1/chat/completions` and sample only tokens that keep the output inside it. A small model that
ignores the tag format (SmolLM2-135M, which `make run-local-model` serves) then still writes its
thinking, a reflection and its answer into their own sections. An `openai+` backend asks for one
with an option in its URL (`openai+http://host:port?grammar=tags`, see `inference.openai_client`).

`GRAMMARS` maps the option's values to grammar text. The tags come from `inference.tags`, so the
grammar and the parser that reads the answer agree on them.
"""

from __future__ import annotations

from string import Template

from .tags import CLOSING_TAGS, OPENING_TAGS

# Each stretch of prose is bounded in characters, so that even a model that never writes the
# closing tag of its own accord is led to `</output>` and its end within a few hundred tokens
# (`make run-local-model` allows 512). A stretch cannot contain `<`: the only `<` the model may
# write is the start of the next tag. It starts with a visible character after at most two
# blanks, so no section is only whitespace.
_TAGS_TEMPLATE = Template(
    r"""
root       ::= thinking "\n"? output
thinking   ::= "$open_thinking" thought reflection? "$close_thinking"
reflection ::= "$open_reflection" doubt "$close_reflection" thought?
output     ::= "$open_output" answer "$close_output"
thought    ::= lead [^<]{0,400}
doubt      ::= lead [^<]{0,200}
answer     ::= lead [^<]{0,400}
lead       ::= [ \t\r\n]{0,2} [^< \t\r\n]
"""
)


def _tags_grammar() -> str:
    tags = {f"open_{name}": tag for tag, name in OPENING_TAGS.items()}
    tags |= {f"close_{name}": tag for tag, name in CLOSING_TAGS.items()}
    return _TAGS_TEMPLATE.substitute(tags).strip() + "\n"


# `<thinking>` (an optional `<reflection>` inside it, after some thought), then `<output>`.
TAGS_GRAMMAR = _tags_grammar()

GRAMMARS = {"tags": TAGS_GRAMMAR}
