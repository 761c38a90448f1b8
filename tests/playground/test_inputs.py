"""The parsers that read what a visitor sends into typed values (playground/inputs.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from playground import inputs
from playground.services import PlaygroundError


def refusal(call: Callable[..., object], *args: object) -> str:
    with pytest.raises(PlaygroundError) as raised:
        call(*args)
    return raised.value.code


def test_a_question_with_a_prompt_reads_as_that_prompt() -> None:
    assert inputs.question({"prompt": "How many r's?"}) == inputs.Question(prompt="How many r's?")


def test_a_question_with_a_sample_reads_as_that_sample() -> None:
    assert inputs.question({"sample": "strawberry"}) == inputs.Question(sample="strawberry")


def test_a_question_with_both_a_prompt_and_a_sample_is_refused() -> None:
    assert refusal(inputs.question, {"prompt": "x", "sample": "strawberry"}) == "invalid_params"


def test_an_empty_sample_beside_a_prompt_counts_as_no_sample() -> None:
    assert inputs.question({"prompt": "x", "sample": ""}) == inputs.Question(prompt="x")


@pytest.mark.parametrize("value", [3, 2.5, True, ["x"], {"a": 1}])
def test_a_prompt_that_is_not_text_is_refused(value: object) -> None:
    assert refusal(inputs.question, {"prompt": value}) == "invalid_params"


@pytest.mark.parametrize("value", [3, ["strawberry"], {"slug": "strawberry"}])
def test_a_sample_that_is_not_a_string_is_refused(value: object) -> None:
    assert refusal(inputs.question, {"sample": value}) == "invalid_params"


@pytest.mark.parametrize("slug", ["../etc", "a b", "x" * 65, "<script>"])
def test_an_ill_formed_sample_slug_names_no_sample(slug: str) -> None:
    assert refusal(inputs.question, {"sample": slug}) == "unknown_sample"


def test_the_home_forms_sample_button_wins_over_typed_text() -> None:
    asked = inputs.form_question({"prompt": "typed first", "sample": "strawberry"})

    assert asked == inputs.Question(sample="strawberry")


def test_the_home_form_without_a_sample_asks_the_typed_text() -> None:
    assert inputs.form_question({"prompt": "typed", "sample": ""}) == inputs.Question(
        prompt="typed"
    )


def test_an_absent_text_field_reads_as_none_and_a_required_one_is_refused() -> None:
    assert inputs.text({}, "title") is None
    assert refusal(inputs.required_text, {}, "prompt") == "invalid_params"


def test_a_required_text_field_is_returned_as_sent() -> None:
    assert inputs.required_text({"prompt": "  spaced  "}, "prompt") == "  spaced  "
