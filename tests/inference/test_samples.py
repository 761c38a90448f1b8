"""The sample prompts: unique, well-formed Reflection answers whose output has the expected answer.

Parsing here uses plain regexes on purpose, so these tests do not depend on the streaming parser.
"""

from __future__ import annotations

import re

import pytest

from inference.samples import SAMPLES, Sample, find_sample_by_prompt, get_sample

_LAYOUT = re.compile(
    r"\A<thinking>\n(?P<thinking>.+)\n</thinking>\n\n<output>\n(?P<output>.+)\n</output>\Z",
    re.DOTALL,
)
_REFLECTION = re.compile(r"<reflection>\n(.+?)\n</reflection>", re.DOTALL)
_ANY_TAG = re.compile(r"</?(?:thinking|reflection|output)>")


def _sections(sample: Sample) -> tuple[str, list[str], str]:
    match = _LAYOUT.match(sample.scripted_answer)
    assert match is not None, f"{sample.slug}: answer is not <thinking>…</thinking>\\n\\n<output>…"
    return match["thinking"], _REFLECTION.findall(match["thinking"]), match["output"]


def test_slugs_titles_and_prompts_are_unique() -> None:
    assert len(SAMPLES) >= 7
    for attribute in ("slug", "title", "prompt"):
        values = [getattr(sample, attribute) for sample in SAMPLES]
        assert len(values) == len(set(values)), attribute
    for sample in SAMPLES:
        assert re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", sample.slug), sample.slug
        assert sample.title and sample.prompt and sample.expected


def test_required_samples_are_present() -> None:
    prompts = {sample.prompt: sample.expected for sample in SAMPLES}
    assert prompts['How many r\'s are in the word "strawberry"?'] == "3"
    assert prompts["Which is larger, 9.11 or 9.9?"] == "9.9"
    agatha = [sample for sample in SAMPLES if "Dreadbury Mansion" in sample.prompt]
    assert len(agatha) == 1
    assert agatha[0].prompt.startswith("Someone who lives in Dreadbury Mansion killed Aunt Agatha.")
    assert agatha[0].prompt.endswith("Agatha is not the butler. Who killed Aunt Agatha?")
    assert agatha[0].expected == "Agatha herself"
    weissensee = [sample for sample in SAMPLES if "Weißensee" in sample.prompt]
    assert len(weissensee) == 1
    assert "Weißer See" in weissensee[0].expected


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda sample: sample.slug)
def test_scripted_answer_has_thinking_reflection_and_output(sample: Sample) -> None:
    thinking, reflections, output = _sections(sample)
    assert reflections, f"{sample.slug}: no <reflection> inside <thinking>"
    without_reflections = _REFLECTION.sub("", thinking)
    assert len(without_reflections.split()) >= 20, "the thinking should work step by step"
    for reflection in reflections:
        assert len(reflection.split()) >= 15
        assert not _ANY_TAG.search(reflection)
    # The reflection corrects earlier reasoning, so thinking goes on after it.
    assert not thinking.rstrip().endswith("</reflection>")
    assert not _ANY_TAG.search(output)
    # Exactly the six tags, balanced: one thinking, one output, and reflections inside.
    tags = _ANY_TAG.findall(sample.scripted_answer)
    assert tags.count("<thinking>") == tags.count("</thinking>") == 1
    assert tags.count("<output>") == tags.count("</output>") == 1
    assert tags.count("<reflection>") == tags.count("</reflection>") == len(reflections)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda sample: sample.slug)
def test_expected_answer_appears_in_output(sample: Sample) -> None:
    _, _, output = _sections(sample)
    assert sample.expected.casefold() in output.casefold()


def test_weissensee_answer_names_real_local_places() -> None:
    sample = get_sample("weissensee")
    assert sample is not None
    _, reflections, output = _sections(sample)
    for place in (
        "Weißer See",
        "Strandbad Weißensee",
        "Jewish Cemetery Weißensee",
        "Brecht-Haus Weißensee",
        "Antonplatz",
        "Kino Toni",
        "Milchhäuschen",
    ):
        assert place in output, place
    # The place it wrongly put in Weißensee is corrected, and left out of the output.
    assert "Mauerpark" in reflections[0]
    assert "Mauerpark" not in output


def test_each_sample_is_found_by_its_slug_and_nothing_else() -> None:
    for sample in SAMPLES:
        assert get_sample(sample.slug) is sample
    assert get_sample("no-such-sample") is None
    assert get_sample("") is None


def test_find_sample_by_prompt_normalises_whitespace_only() -> None:
    strawberry = get_sample("strawberry")
    assert strawberry is not None
    assert find_sample_by_prompt(strawberry.prompt) is strawberry
    assert find_sample_by_prompt('  How many r\'s are in\nthe  word "strawberry"?\n') is strawberry
    assert find_sample_by_prompt("How many r's are in the word strawberry?") is None
    assert find_sample_by_prompt('how many r\'s are in the word "strawberry"?') is None
    assert find_sample_by_prompt("") is None
    for sample in SAMPLES:
        assert find_sample_by_prompt(" ".join(sample.prompt.split()) + " ") is sample
