"""The link-preview picture: fonts chosen by the glyphs they have, text wrapped inside the
margins, nothing drawn that no font can draw."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from playground.preview_image import (
    HEIGHT,
    MARGIN,
    WIDTH,
    PreviewCard,
    drawable,
    load_font,
    render,
    usable_fonts,
    wrap,
)

DEJAVU = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
CHINESE_FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"
needs_chinese_font = pytest.mark.skipif(
    not Path(CHINESE_FONT).is_file(),
    reason=f"no Chinese font at {CHINESE_FONT} (Debian: apt-get install fonts-wqy-microhei)",
)


def picture(card: PreviewCard, fonts: tuple[str | None, ...] = (None,)) -> Image.Image:
    return Image.open(io.BytesIO(render(card, fonts))).convert("L")


def test_missing_font_files_are_skipped_and_pillows_own_comes_last() -> None:
    assert usable_fonts(("/no/such/font.ttf",)) == (None,)


def test_latin_text_is_drawn_with_the_first_font() -> None:
    assert drawable("Who killed Aunt Agatha?", (None,)) == (None, "Who killed Aunt Agatha?")


def test_a_character_no_font_has_is_left_out_of_longer_text() -> None:
    font, text = drawable("Which is larger, 9.11 or 9.9? \U0001f914", (None,))
    assert (font, text) == (None, "Which is larger, 9.11 or 9.9?")


def test_text_mostly_undrawable_is_left_out_rather_than_garbled() -> None:
    assert drawable("一个农夫有 17 只羊。还剩几只？", (None,)) == (None, "")


@needs_chinese_font
def test_chinese_is_drawn_with_the_font_that_has_it() -> None:
    fonts = usable_fonts((DEJAVU, CHINESE_FONT))
    question = "一个农夫有 17 只羊。还剩几只？"

    assert drawable(question, fonts) == (CHINESE_FONT, question)
    assert drawable("Who killed Aunt Agatha?", fonts)[0] == fonts[0], "Latin: the first font"
    drawn = picture(PreviewCard(question, "正确：9", "correct"), fonts)
    assert drawn.crop((MARGIN, 170, WIDTH - MARGIN, 240)).getextrema()[0] < 80


def test_long_text_wraps_inside_the_width_and_ends_with_an_ellipsis() -> None:
    font = load_font(None, 48)
    text = "Someone who lives in Dreadbury Mansion killed Aunt Agatha. " * 6

    lines = wrap(text, font, 600, 4)

    assert len(lines) == 4
    assert all(font.getlength(line) <= 600 for line in lines)
    assert lines[-1].endswith("…")
    assert " ".join(lines).startswith("Someone who lives in Dreadbury Mansion killed")


def test_text_without_spaces_breaks_between_characters() -> None:
    font = load_font(None, 48)
    lines = wrap("x" * 80, font, 400, 10)
    assert len(lines) > 1 and "".join(lines) == "x" * 80
    assert all(font.getlength(line) <= 400 for line in lines)


def test_the_picture_keeps_its_margins_and_draws_the_question() -> None:
    card = PreviewCard("Why? " * 200, "Being answered live", "live")

    drawn = picture(card)

    assert drawn.size == (WIDTH, HEIGHT)
    right_margin = drawn.crop((WIDTH - MARGIN + 8, 0, WIDTH, HEIGHT))
    assert right_margin.getextrema()[0] > 200, "nothing drawn in the right margin"
    assert drawn.crop((MARGIN, 170, WIDTH - MARGIN, 240)).getextrema()[0] < 80


def test_each_tone_colours_the_verdict() -> None:
    colours = {
        tone: Image.open(io.BytesIO(render(PreviewCard("Q", "Verdict", tone), (None,))))
        .convert("RGB")
        .getpixel((MARGIN + 10, HEIGHT - 114))
        for tone in ("correct", "incorrect", "live", "neutral")
    }
    assert len(set(colours.values())) == 4
