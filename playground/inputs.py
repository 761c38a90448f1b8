"""What a visitor sends, read into typed values before it reaches services.

The API's bodies (a JSON object, or form fields) and the pages' forms go through these small
parsers: a field of the wrong type, or a request of the wrong shape, is refused here with the
API's error codes, and services take plain typed arguments. What the text itself must be
(not empty, not too long, text a database can store) is the rule of the thing asked for, and
services keep it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from django.utils.translation import gettext

from playground.services.errors import PlaygroundError

SAMPLE_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,64}")


@dataclass(frozen=True)
class Question:
    """A new question: a free prompt, or one of the sample prompts by its slug."""

    prompt: str | None = None
    sample: str | None = None


def question(data: Mapping[str, object]) -> Question:
    """A question from the API: a prompt or a sample, not both."""
    asked = Question(prompt=text(data, "prompt"), sample=sample(data))
    if asked.prompt and asked.sample:
        raise PlaygroundError(
            "invalid_params", gettext("Send either a prompt or a sample, not both.")
        )
    return asked


def form_question(data: Mapping[str, object]) -> Question:
    """A question from the home page's form: a sample's button wins over the text box, which
    the visitor may have typed into before choosing a sample instead."""
    chosen = sample(data)
    return Question(sample=chosen) if chosen else Question(prompt=text(data, "prompt"))


def sample(data: Mapping[str, object]) -> str | None:
    """A sample's slug; an ill-formed one names no sample."""
    slug = data.get("sample")
    if slug in (None, ""):
        return None
    if not isinstance(slug, str):
        raise PlaygroundError("invalid_params", gettext("The sample must be a slug string."))
    if not SAMPLE_SLUG.fullmatch(slug):
        raise PlaygroundError("unknown_sample", gettext("There is no such sample prompt."))
    return slug


def text(data: Mapping[str, object], name: str) -> str | None:
    """A text field: None when it is absent, refused when it is not text."""
    value = data.get(name)
    if value is None or isinstance(value, str):
        return value
    raise PlaygroundError("invalid_params", _not_a_string(name))


def message_id(data: Mapping[str, object], name: str) -> str | None:
    """A message's id, or None when the field is absent or empty (a form's hidden field)."""
    return text(data, name) or None


def _not_a_string(name: str) -> str:
    # Translators: %(field)s is a field's name as the API spells it ("prompt", "title").
    return gettext("The %(field)s must be a string.") % {"field": name}


def required_text(data: Mapping[str, object], name: str) -> str:
    """A text field that must be there."""
    value = text(data, name)
    if value is None:
        raise PlaygroundError("invalid_params", _not_a_string(name))
    return value
