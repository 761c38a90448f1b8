"""The sample prompts: unique, well-formed Reflection answers whose output has the expected answer.

Parsing here uses plain regexes on purpose, so these tests do not depend on the streaming parser.
"""

from __future__ import annotations

import re

import pytest

from inference.samples import (
    SAMPLES,
    VERSIONS,
    Sample,
    find_sample_by_prompt,
    get_sample,
    sample_in,
)

CHINESE = [version for version in VERSIONS if version.language == "zh-hans"]
CHINESE_CHARACTER = re.compile(r"[\u4e00-\u9fff]")

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


# --- the Chinese versions ---------------------------------------------------------------------


def test_every_sample_has_a_chinese_version_with_its_own_words() -> None:
    assert [version.slug for version in CHINESE] == [sample.slug for sample in SAMPLES]
    for version in CHINESE:
        english = get_sample(version.slug)
        assert english is not None
        assert version.language == "zh-hans"
        assert sample_in("zh-hans", version.slug) is version
        assert sample_in("ZH-Hans", version.slug) is version, "language codes in any case"
        assert sample_in("en", version.slug) is english
        for attribute in ("title", "prompt", "scripted_answer"):
            text = getattr(version, attribute)
            assert text != getattr(english, attribute), (version.slug, attribute)
            assert CHINESE_CHARACTER.search(text), (version.slug, attribute)
    assert len({version.prompt for version in CHINESE}) == len(CHINESE)
    assert sample_in("fr", "strawberry") is None


@pytest.mark.parametrize("version", CHINESE, ids=lambda version: version.slug)
def test_a_chinese_scripted_answer_has_thinking_reflection_and_output(version: Sample) -> None:
    thinking, reflections, output = _sections(version)
    assert reflections, f"{version.slug}: no <reflection> inside <thinking>"
    # Chinese is not written with spaces between words: its length is counted in characters.
    assert len(_REFLECTION.sub("", thinking)) >= 60, "the thinking should work step by step"
    for reflection in reflections:
        assert len(reflection) >= 30
    assert not thinking.rstrip().endswith("</reflection>")
    tags = _ANY_TAG.findall(version.scripted_answer)
    assert tags.count("<thinking>") == tags.count("</thinking>") == 1
    assert tags.count("<output>") == tags.count("</output>") == 1
    assert version.expected.casefold() in output.casefold()


def test_the_chinese_odd_numbers_answer_keeps_the_table_the_formula_and_the_code() -> None:
    english = get_sample("odd-numbers")
    chinese = sample_in("zh-hans", "odd-numbers")
    assert english is not None and chinese is not None
    _, _, output = _sections(chinese)
    assert "|---|---|---|" in output
    assert "$100^2 = 10000$" in output
    assert "print(sum(range(1, 200, 2)))  # 10000" in output


def test_a_chinese_prompt_finds_its_version() -> None:
    for version in CHINESE:
        assert find_sample_by_prompt(f"  {version.prompt}\n") is version
