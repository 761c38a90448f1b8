"""The picture a shared conversation's link preview shows (og:image): its first question and
how it was answered, drawn as a 1200×630 PNG, the size link previews crop the least.

Text is drawn with the first of the configured fonts (PREVIEW_FONTS) that has a glyph for every
character of it, else with the one that lacks the fewest, leaving out what it lacks (an emoji,
say), or leaving the text out when that is more than a tenth of it (Chinese with no Chinese
font): a preview never shows a box for a character no font can draw, nor a garbled sentence.
Pillow's own font (Latin) comes last.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 1200, 630
MARGIN = 80
BACKGROUND = "#f7f6f2"
INK = "#1d1d1f"
ACCENT = "#3b4cca"
# The verdict's pill: background and text colours by how the question was answered.
TONES = {
    "correct": ("#e3f4e8", "#1f6f38"),
    "incorrect": ("#fbe6e4", "#a8231b"),
    "live": ("#e8ebfb", ACCENT),
    "neutral": ("#ecebe6", "#4a4a48"),
}
QUESTION_LINES = 4
# A character every font maps to its "missing glyph" box: what a font draws for what it lacks.
MISSING = "\uffff"

Font = ImageFont.FreeTypeFont


@dataclass(frozen=True)
class PreviewCard:
    question: str
    verdict: str
    tone: str


@lru_cache(maxsize=32)
def load_font(path: str | None, size: int) -> Font:
    if path is None:
        return ImageFont.load_default(size=size)  # type: ignore[return-value]
    return ImageFont.truetype(path, size)


@lru_cache(maxsize=8192)
def _has_glyph(path: str | None, character: str) -> bool:
    if character.isspace():
        return True
    font = load_font(path, 32)
    drawn = font.getmask(character)
    missing = font.getmask(MISSING)
    return (drawn.size, bytes(drawn)) != (missing.size, bytes(missing))


def usable_fonts(paths: tuple[str, ...]) -> tuple[str | None, ...]:
    """The configured font files that exist, then Pillow's own font (None)."""
    return (*(path for path in paths if Path(path).is_file()), None)


def drawable(text: str, fonts: tuple[str | None, ...]) -> tuple[str | None, str]:
    """The font to draw `text` with, and `text` without the characters it has no glyph for;
    empty when that would leave out more than a tenth of it (what is left would mislead)."""
    best: tuple[str | None, set[str]] | None = None
    for path in fonts:
        lacking = {character for character in set(text) if not _has_glyph(path, character)}
        if not lacking:
            return path, text
        if best is None or len(lacking) < len(best[1]):
            best = (path, lacking)
    assert best is not None
    path, lacking = best
    kept = "".join(character for character in text if character not in lacking)
    if len(text) - len(kept) > len(text.strip()) / 10:
        return path, ""
    return path, " ".join(kept.split())


def wrap(text: str, font: Font, width: int, max_lines: int) -> list[str]:
    """`text` in lines no wider than `width`, words kept whole where they fit (text without
    spaces, as Chinese is written, breaks between any two characters); past `max_lines` the
    last line ends with an ellipsis."""
    pieces: list[str] = []
    for word in re.findall(r"\S+\s*", text):
        if font.getlength(word.rstrip()) <= width:
            pieces.append(word)
        else:
            pieces.extend(word)
    lines: list[str] = []
    line = ""
    for piece in pieces:
        if line and font.getlength((line + piece).rstrip()) > width:
            lines.append(line.rstrip())
            line = piece.lstrip()
        else:
            line += piece
    if line.strip():
        lines.append(line.rstrip())
    if len(lines) <= max_lines:
        return lines
    last = lines[max_lines - 1]
    while last and font.getlength(last + "…") > width:
        last = last[:-1]
    return [*lines[: max_lines - 1], last.rstrip() + "…"]


@lru_cache(maxsize=64)
def render(card: PreviewCard, fonts: tuple[str | None, ...]) -> bytes:
    """The PNG of `card` (kept: a link shared widely is fetched by many previewers)."""
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 15, HEIGHT), fill=ACCENT)

    brand = load_font(drawable("Reflection Playground", fonts)[0], 40)
    draw.text((MARGIN, 64), "Reflection", font=brand, fill=INK)
    draw.text((MARGIN + brand.getlength("Reflection "), 64), "Playground", font=brand, fill=ACCENT)

    path, question = drawable(card.question, fonts)
    size = 58 if len(question) <= 90 else 48
    font = load_font(path, size)
    top = 170
    for line in wrap(question, font, WIDTH - 2 * MARGIN, QUESTION_LINES):
        draw.text((MARGIN, top), line, font=font, fill=INK)
        top += round(size * 1.3)

    background, ink = TONES.get(card.tone, TONES["neutral"])
    path, verdict = drawable(card.verdict, fonts)
    font = load_font(path, 32)
    verdict = wrap(verdict, font, WIDTH - 2 * MARGIN - 56, 1)[0] if verdict else ""
    if verdict:
        pill_top = HEIGHT - 150
        pill_width = font.getlength(verdict) + 56
        draw.rounded_rectangle(
            (MARGIN, pill_top, MARGIN + pill_width, pill_top + 72), radius=36, fill=background
        )
        draw.text((MARGIN + 28, pill_top + 36), verdict, font=font, fill=ink, anchor="lm")

    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()
