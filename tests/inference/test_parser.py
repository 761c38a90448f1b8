"""Tests for the streaming Reflection tag parser (inference.parser).

The property tests compare the fast, chunked parser with a deliberately naive character-by-character
reference implementation written here, so that a bug in the clever scanning code cannot hide
behind an equally clever test.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.parser import (
    SECTIONS,
    TAGS,
    Delta,
    Sections,
    TagParser,
    merge_deltas,
    parse,
)

REALISTIC_ANSWER = (
    "<thinking>\n"
    'The user asks how many r\'s are in "strawberry".\n'
    "Spelling it out: s-t-r-a-w-b-e-r-r-y. I count 2 r's.\n"
    "<reflection>\n"
    "Wait, I missed one: letters 3, 8 and 9 are all r, so that is 3.\n"
    "</reflection>\n"
    "So the answer is 3.\n"
    "</thinking>\n"
    "<output>\n"
    'There are 3 r\'s in "strawberry".\n'
    "</output>"
)

PARTIAL_TAGS = frozenset(tag[:k] for tag in TAGS for k in range(1, len(tag)))


def run_chunks(chunks: list[str]) -> list[Delta]:
    parser = TagParser()
    deltas: list[Delta] = []
    for chunk in chunks:
        deltas.extend(parser.feed(chunk))
    deltas.extend(parser.close())
    return deltas


def build(deltas: list[Delta]) -> Sections:
    sections = Sections()
    for delta in deltas:
        sections.apply(delta)
    return sections


def parse_chunks(chunks: list[str]) -> Sections:
    return build(run_chunks(chunks))


def split_at(text: str, points: list[int]) -> list[str]:
    cuts = [0, *sorted(points), len(text)]
    return [text[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]


def reference_parse(text: str) -> tuple[list[Delta], list[str]]:
    """Naive oracle: the coalesced deltas and the recognised tags, one character at a time."""
    stack: list[tuple[str, int | None]] = []
    next_reflection = 0
    pieces: list[Delta] = []
    recognised: list[str] = []
    i = 0
    while i < len(text):
        tag = next((t for t in TAGS if text.startswith(t, i)), None)
        if tag is not None and not tag.startswith("</"):
            name = tag[1:-1]
            index = None
            if name == "reflection":
                index = next_reflection
                next_reflection += 1
            stack.append((name, index))
            recognised.append(tag)
            i += len(tag)
            continue
        if tag is not None and any(open_name == tag[2:-1] for open_name, _ in stack):
            while stack.pop()[0] != tag[2:-1]:
                pass
            recognised.append(tag)
            i += len(tag)
            continue
        section, index = stack[-1] if stack else ("text", None)
        pieces.append(Delta(section, text[i], index))
        i += 1
    return merge_deltas(pieces), recognised


def assert_well_formed(deltas: list[Delta]) -> None:
    for delta in deltas:
        assert delta.text
        assert delta.section in SECTIONS
        if delta.section == "reflection":
            assert isinstance(delta.index, int)
            assert delta.index >= 0
        else:
            assert delta.index is None


# --- whole answers ------------------------------------------------------------------------------


def test_a_realistic_reflection_answer_parses_into_exact_sections() -> None:
    sections = parse(REALISTIC_ANSWER)

    assert sections.thinking == (
        "\n"
        'The user asks how many r\'s are in "strawberry".\n'
        "Spelling it out: s-t-r-a-w-b-e-r-r-y. I count 2 r's.\n"
        "\n"
        "So the answer is 3.\n"
    )
    assert sections.reflections == [
        "\nWait, I missed one: letters 3, 8 and 9 are all r, so that is 3.\n"
    ]
    assert sections.output == '\nThere are 3 r\'s in "strawberry".\n'
    assert sections.text == "\n"


def test_the_realistic_answer_is_emitted_in_order_with_its_reflection_index() -> None:
    deltas = run_chunks([REALISTIC_ANSWER])

    assert [(d.section, d.index) for d in deltas] == [
        ("thinking", None),
        ("reflection", 0),
        ("thinking", None),
        ("text", None),
        ("output", None),
    ]


def test_feeding_one_character_at_a_time_gives_the_same_sections() -> None:
    assert parse_chunks(list(REALISTIC_ANSWER)) == parse(REALISTIC_ANSWER)


def test_text_outside_all_tags_goes_into_text() -> None:
    sections = parse("Hello <thinking>hm</thinking> between <output>42</output> after")

    assert sections.text == "Hello  between  after"
    assert sections.thinking == "hm"
    assert sections.output == "42"


def test_a_stream_without_tags_is_all_text() -> None:
    assert parse("just an answer\n").as_dict() == {
        "thinking": "",
        "reflections": [],
        "output": "",
        "text": "just an answer\n",
    }


def test_an_empty_stream_gives_empty_sections() -> None:
    assert parse("") == Sections()
    assert run_chunks([]) == []


# --- tags across chunks -------------------------------------------------------------------------


@pytest.mark.parametrize("tag", sorted(TAGS))
def test_a_tag_split_in_two_at_every_position_is_recognised(tag: str) -> None:
    # Open every element first so that closing tags match and are markup too.
    prefix = "<thinking><reflection><output>x"
    whole = prefix + tag + "y"
    for cut in range(len(prefix), len(whole)):
        chunks = [whole[:cut], whole[cut:]]
        assert parse_chunks(chunks) == parse(whole), chunks


@pytest.mark.parametrize("tag", sorted(TAGS))
def test_a_tag_split_in_three_at_every_pair_of_positions_is_recognised(tag: str) -> None:
    whole = "<thinking><reflection><output>x" + tag + "y"
    start = whole.index(tag, len("<thinking><reflection><output>"))
    for first in range(start, start + len(tag) + 1):
        for second in range(first, start + len(tag) + 1):
            chunks = [whole[:first], whole[first:second], whole[second:]]
            assert parse_chunks(chunks) == parse(whole), chunks


def test_a_tag_split_into_single_characters_is_recognised() -> None:
    chunks = ["a", *"<thinking>", "b", *"</thinking>", "c"]

    assert parse_chunks(chunks).as_dict() == {
        "thinking": "b",
        "reflections": [],
        "output": "",
        "text": "ac",
    }


def test_tags_that_arrive_as_single_chunks_are_recognised() -> None:
    # How TGI delivers them: each tag is one special token.
    chunks = ["<thinking>", "\n", "Let", " me", "<reflection>", " hmm", "</reflection>"]
    chunks += ["</thinking>", "<output>", "Yes", "</output>"]
    parser = TagParser()

    results = [parser.feed(chunk) for chunk in chunks]

    assert results == [
        [],
        [Delta("thinking", "\n")],
        [Delta("thinking", "Let")],
        [Delta("thinking", " me")],
        [],
        [Delta("reflection", " hmm", 0)],
        [],
        [],
        [],
        [Delta("output", "Yes")],
        [],
    ]
    assert parser.close() == []


def test_several_tags_in_one_chunk_are_recognised() -> None:
    parser = TagParser()

    deltas = parser.feed("a<thinking>b<reflection>c</reflection></thinking><output>d")

    assert deltas == [
        Delta("text", "a"),
        Delta("thinking", "b"),
        Delta("reflection", "c", 0),
        Delta("output", "d"),
    ]


def test_text_before_a_partial_tag_is_emitted_at_once_and_only_the_partial_tag_held_back() -> None:
    parser = TagParser()

    assert parser.feed("Let me think <thin") == [Delta("text", "Let me think ")]
    assert parser.feed("king>") == []
    assert parser.section == "thinking"
    assert parser.feed("ok") == [Delta("thinking", "ok")]


def test_a_held_back_less_than_sign_is_released_when_it_turns_out_not_to_be_a_tag() -> None:
    parser = TagParser()

    assert parser.feed("x <") == [Delta("text", "x ")]
    assert parser.feed("3 you") == [Delta("text", "<3 you")]


def test_a_held_back_fragment_is_released_when_a_longer_one_no_longer_matches() -> None:
    parser = TagParser()

    assert parser.feed("</refl") == []
    assert parser.feed("ex") == [Delta("text", "</reflex")]


# --- nesting and indexes ------------------------------------------------------------------------


def test_a_nested_reflection_is_kept_out_of_the_thinking() -> None:
    sections = parse("<thinking>before <reflection>fix</reflection> after</thinking>")

    assert sections.thinking == "before  after"
    assert sections.reflections == ["fix"]


def test_two_reflections_are_numbered_0_and_1() -> None:
    deltas = run_chunks(
        ["<thinking>a<reflection>r0</reflection>b<reflection>r1</reflection>c</thinking>"]
    )

    assert [d for d in deltas if d.section == "reflection"] == [
        Delta("reflection", "r0", 0),
        Delta("reflection", "r1", 1),
    ]
    assert build(deltas).reflections == ["r0", "r1"]


def test_a_reflection_outside_the_thinking_is_numbered_too() -> None:
    sections = parse("<reflection>solo</reflection><output>o</output>")

    assert sections.reflections == ["solo"]
    assert sections.output == "o"


def test_an_unclosed_reflection_closes_with_the_enclosing_thinking() -> None:
    sections = parse("<thinking>a<reflection>b</thinking>c<output>d</output>")

    assert sections.thinking == "a"
    assert sections.reflections == ["b"]
    assert sections.text == "c"
    assert sections.output == "d"


def test_a_reopened_kind_nests_and_needs_two_closing_tags() -> None:
    sections = parse("<thinking>a<thinking>b</thinking>c</thinking>d")

    assert sections.thinking == "abc"
    assert sections.text == "d"


def test_a_reflection_nested_in_a_reflection_gets_its_own_index() -> None:
    deltas = run_chunks(["<reflection>a<reflection>b</reflection>c</reflection>"])

    assert deltas == [
        Delta("reflection", "a", 0),
        Delta("reflection", "b", 1),
        Delta("reflection", "c", 0),
    ]


def test_text_stays_in_its_section_when_tags_are_left_open_at_end_of_stream() -> None:
    parser = TagParser()

    assert parser.feed("<thinking>a<reflection>b") == [
        Delta("thinking", "a"),
        Delta("reflection", "b", 0),
    ]
    assert parser.close() == []


def test_a_partial_tag_at_end_of_stream_is_flushed_as_text_of_the_current_section() -> None:
    parser = TagParser()

    assert parser.feed("<thinking>abc<thin") == [Delta("thinking", "abc")]
    assert parser.close() == [Delta("thinking", "<thin")]
    assert parse("<thinking>abc<thin").thinking == "abc<thin"


def test_a_lone_trailing_less_than_sign_is_flushed_at_end_of_stream() -> None:
    parser = TagParser()

    assert parser.feed("x<") == [Delta("text", "x")]
    assert parser.close() == [Delta("text", "<")]


# --- unmatched closing tags ---------------------------------------------------------------------


def test_an_unmatched_closing_tag_outside_all_tags_stays_literal_text() -> None:
    assert parse("a</output>b").as_dict()["text"] == "a</output>b"


def test_an_unmatched_closing_tag_stays_literal_text_of_the_current_section() -> None:
    sections = parse("<thinking>a</reflection>b</thinking>c")

    assert sections.thinking == "a</reflection>b"
    assert sections.reflections == []
    assert sections.text == "c"


def test_a_second_closing_tag_stays_literal_text() -> None:
    sections = parse("<output>x</output></output>")

    assert sections.output == "x"
    assert sections.text == "</output>"


# --- things that are not tags -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["a < b", "x<y", "<3", "<", "a <", "<>", "< thinking>", "a > b", "</", "<//output>"],
)
def test_a_less_than_sign_in_text_is_kept(text: str) -> None:
    assert parse(text).text == text
    assert parse_chunks(list(text)).text == text


@pytest.mark.parametrize(
    "tag",
    ["<div>", "<Thinking>", "<THINKING>", "<thinking >", "<think>", "<outputs>", "<b>", "</div>"],
)
def test_unknown_tags_stay_text_of_the_current_section(tag: str) -> None:
    sections = parse(f"<thinking>a{tag}b</thinking>")

    assert sections.thinking == f"a{tag}b"


def test_an_extra_less_than_sign_before_a_tag_stays_text() -> None:
    sections = parse("<<thinking>x</thinking>")

    assert sections.text == "<"
    assert sections.thinking == "x"
    assert parse_chunks(["<", "<", "thinking>", "x"]) == parse("<<thinking>x")


def test_a_tag_split_by_another_less_than_sign_stays_text() -> None:
    assert parse("<thin<king>").text == "<thin<king>"


def test_non_ascii_text_is_kept_verbatim() -> None:
    sections = parse("<thinking>Straße 🍓</thinking><output>ß</output>")

    assert sections.thinking == "Straße 🍓"
    assert sections.output == "ß"


# --- delta shape --------------------------------------------------------------------------------


def test_empty_chunks_give_no_deltas() -> None:
    parser = TagParser()

    assert parser.feed("") == []
    assert parser.feed("<thi") == []
    assert parser.feed("") == []
    assert parser.feed("nking>a") == [Delta("thinking", "a")]


def test_one_feed_returns_coalesced_deltas() -> None:
    parser = TagParser()

    deltas = parser.feed("<thinking>a<thinking>b<div>c</output>d</thinking>e<reflection>")

    assert deltas == [Delta("thinking", "ab<div>c</output>de")]


def test_a_plain_token_goes_to_the_current_section() -> None:
    parser = TagParser()
    parser.feed("<output>")

    assert parser.feed(" plain") == [Delta("output", " plain")]


def test_a_delta_cannot_be_changed_once_made() -> None:
    delta = Delta("text", "a")

    with pytest.raises(dataclasses.FrozenInstanceError):
        delta.text = "b"  # type: ignore[misc]


# --- merge_deltas and Sections ------------------------------------------------------------------


def test_merge_deltas_coalesces_adjacent_deltas_of_the_same_section_and_index() -> None:
    deltas = [
        Delta("thinking", "a"),
        Delta("thinking", "b"),
        Delta("reflection", "c", 0),
        Delta("reflection", "d", 0),
        Delta("reflection", "e", 1),
        Delta("thinking", "f"),
        Delta("output", "g"),
        Delta("output", "h"),
    ]

    assert merge_deltas(deltas) == [
        Delta("thinking", "ab"),
        Delta("reflection", "cd", 0),
        Delta("reflection", "e", 1),
        Delta("thinking", "f"),
        Delta("output", "gh"),
    ]


def test_merge_deltas_accepts_any_iterable_and_empty_input() -> None:
    assert merge_deltas([]) == []
    assert merge_deltas(iter([Delta("text", "a"), Delta("text", "b")])) == [Delta("text", "ab")]


def test_merge_deltas_drops_empty_deltas() -> None:
    assert merge_deltas([Delta("text", ""), Delta("output", "")]) == []
    assert merge_deltas([Delta("text", "a"), Delta("output", ""), Delta("text", "b")]) == [
        Delta("text", "ab")
    ]


def test_sections_as_dict_has_the_api_shape() -> None:
    assert parse(REALISTIC_ANSWER).as_dict() == {
        "thinking": parse(REALISTIC_ANSWER).thinking,
        "reflections": ["\nWait, I missed one: letters 3, 8 and 9 are all r, so that is 3.\n"],
        "output": '\nThere are 3 r\'s in "strawberry".\n',
        "text": "\n",
    }
    assert Sections().as_dict() == {"thinking": "", "reflections": [], "output": "", "text": ""}


def test_sections_as_dict_returns_a_copy_of_the_reflections() -> None:
    sections = parse("<reflection>r</reflection>")

    sections.as_dict()["reflections"].append("x")

    assert sections.reflections == ["r"]


def test_sections_apply_grows_the_reflections_to_reach_the_index() -> None:
    sections = Sections()

    sections.apply(Delta("reflection", "late", 2))
    sections.apply(Delta("reflection", "first", 0))
    sections.apply(Delta("reflection", "!", 2))

    assert sections.reflections == ["first", "", "late!"]


@pytest.mark.parametrize(
    "delta", [Delta("reflection", "x"), Delta("reflection", "x", -1), Delta("answer", "x")]
)
def test_sections_apply_rejects_invalid_deltas(delta: Delta) -> None:
    with pytest.raises(ValueError):
        Sections().apply(delta)


# --- properties ---------------------------------------------------------------------------------

ALPHABET = [
    *sorted(TAGS),
    "<",
    ">",
    "/",
    "</",
    "<thin",
    "king>",
    "<refl",
    "ection>",
    "</out",
    "put>",
    "</thinking",
    "reflection>",
    "<Thinking>",
    "<div>",
    "<<",
    "<3",
    "a",
    "b",
    "xyz",
    " ",
    "\n",
    "ß",
    "🍓",
]

streams = st.lists(st.sampled_from(ALPHABET), max_size=40).map("".join)


@st.composite
def chunked_streams(draw: st.DrawFn) -> tuple[str, list[str]]:
    text = draw(streams)
    points = draw(st.lists(st.integers(0, len(text)), max_size=max(1, len(text))))
    return text, split_at(text, points)


@settings(max_examples=300, deadline=None)
@given(chunked_streams())
def test_property_chunked_parsing_equals_whole_parsing(case: tuple[str, list[str]]) -> None:
    text, chunks = case

    assert parse_chunks(chunks) == parse(text)


@settings(max_examples=300, deadline=None)
@given(chunked_streams())
def test_property_deltas_match_the_naive_reference_and_account_for_every_character(
    case: tuple[str, list[str]],
) -> None:
    text, chunks = case
    expected, recognised = reference_parse(text)

    deltas = run_chunks(chunks)

    assert merge_deltas(deltas) == expected
    assert sum(len(d.text) for d in deltas) + sum(len(t) for t in recognised) == len(text)


@settings(max_examples=300, deadline=None)
@given(chunked_streams())
def test_property_deltas_are_never_empty_valid_and_coalesced_per_feed(
    case: tuple[str, list[str]],
) -> None:
    _, chunks = case
    parser = TagParser()

    for chunk in [*chunks, ""]:
        deltas = parser.feed(chunk)
        assert_well_formed(deltas)
        assert merge_deltas(deltas) == deltas
    assert_well_formed(parser.close())


@settings(max_examples=300, deadline=None)
@given(chunked_streams())
def test_property_it_holds_back_nothing_but_a_trailing_partial_tag(
    case: tuple[str, list[str]],
) -> None:
    _, chunks = case
    parser = TagParser()
    emitted: list[Delta] = []
    seen = ""

    for chunk in chunks:
        emitted.extend(parser.feed(chunk))
        seen += chunk
        last_lt = seen.rfind("<")
        held = seen[last_lt:] if last_lt >= 0 and seen[last_lt:] in PARTIAL_TAGS else ""
        # What came out so far is exactly the parse of everything but the possible tag start.
        expected, _ = reference_parse(seen[: len(seen) - len(held)])
        assert merge_deltas(emitted) == expected
