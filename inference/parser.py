"""Streaming parser for Reflection-style tagged output.

A Reflection-style model answers with ``<thinking>…</thinking>`` (usually containing one or more
``<reflection>…</reflection>``) followed by ``<output>…</output>``. The model server streams that
answer token by token, and the tags may arrive whole, split over several tokens or several to a
token. :class:`TagParser` turns such a character stream, chunk by chunk, into deltas:
pieces of text labelled with the section they belong to, ready to be persisted and sent to browsers.

Rules (the same for every way the stream is cut into chunks, so a replayed or re-chunked stream
always rebuilds the same :class:`Sections`):

* The section is the innermost open element; with nothing open it is ``"text"``. Text inside a
  reflection belongs to that reflection only, never to the enclosing thinking. Each
  ``<reflection>`` gets the next index 0, 1, 2, … for the whole stream.
* Only the six exact, case-sensitive tags in :data:`TAGS` are markup. Anything else that looks
  like a tag (``<div>``, ``<Thinking>``, ``a < b``, ``<3``) is literal text of the current section.
* Opening a kind that is already open nests: ``<thinking>`` inside thinking pushes a second
  thinking element (the text still goes to ``"thinking"``).
* A closing tag closes the innermost open element of its name and everything opened above it
  (an unclosed reflection ends with its ``</thinking>``).
* A closing tag with no open element of its name is NOT markup: it is kept verbatim as literal
  text of the current section. Dropping it would silently lose model output; keeping it makes the
  mistake visible and keeps "section text + recognised tags == input" exact.
* Tag markup never appears in section text; everything else, whitespace included, is kept as is.
* Elements still open at the end of the stream are fine: :meth:`TagParser.close` only flushes the
  held-back partial tag, as literal text of the current section.

Only a trailing fragment that could still become a tag (a proper prefix of one of the six tags,
such as ``<`` or ``</refl``) is held back between chunks; all other text is emitted at once.

This module is plain stdlib Python (no Django) so that the worker, the simulator and the tests can
share it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .tags import CLOSING_TAGS, ELEMENTS, OPENING_TAGS, TAGS
from .tags import SECTIONS as SECTIONS  # re-exported: the parser's callers name sections by it

_MAX_TAG_LEN = max(len(tag) for tag in TAGS)
# Every tag contains exactly one "<" (its first character) and one ">" (its last), so a proper
# prefix is recognisable from the last "<" of a chunk onwards and never contains ">".
_PARTIAL_TAGS = frozenset(tag[:k] for tag in TAGS for k in range(1, len(tag)))


@dataclass(frozen=True, slots=True)
class Delta:
    """A non-empty piece of text of one section.

    ``index`` numbers the reflection a ``"reflection"`` delta belongs to (0-based, in order of
    appearance); it is ``None`` for every other section.
    """

    section: str
    text: str
    index: int | None = None


class TagParser:
    """Incremental parser for one stream: call :meth:`feed` per chunk, then :meth:`close` once."""

    __slots__ = ("_stack", "_open_counts", "_pending", "_next_reflection", "_section", "_index")

    def __init__(self) -> None:
        # Each open element with its reflection index (None for non-reflections).
        self._stack: list[tuple[str, int | None]] = []
        # How many elements of each name are open, so that deciding whether a closing tag matches
        # is O(1) even if a degenerate stream nests thousands of elements.
        self._open_counts = dict.fromkeys(ELEMENTS, 0)
        self._pending = ""
        self._next_reflection = 0
        self._section = "text"
        self._index: int | None = None

    @property
    def section(self) -> str:
        """The section that text arriving now would belong to."""
        return self._section

    def feed(self, text: str) -> list[Delta]:
        """Consume the next chunk; return its deltas, coalesced per (section, index) run."""
        if not text:
            return []
        if self._pending:
            text = self._pending + text
            self._pending = ""
        elif "<" not in text:
            # The common case by far: a plain token. Skip the scanning machinery.
            return [Delta(self._section, text, self._index)]

        out: list[Delta] = []
        end = len(text)
        start = 0  # first character not yet emitted
        pos = 0  # where to look for the next "<"
        while True:
            lt = text.find("<", pos)
            if lt < 0:
                break
            # A tag starting at lt must end at the first ">" after it, within the longest tag.
            gt = text.find(">", lt + 1, lt + _MAX_TAG_LEN)
            if gt >= 0:
                candidate = text[lt : gt + 1]
                name = OPENING_TAGS.get(candidate)
                if name is not None:
                    self._emit(out, text[start:lt])
                    self._open(name)
                    start = pos = gt + 1
                    continue
                name = CLOSING_TAGS.get(candidate)
                if name is not None and self._open_counts[name]:
                    self._emit(out, text[start:lt])
                    self._close(name)
                    start = pos = gt + 1
                    continue
            elif end - lt < _MAX_TAG_LEN and text[lt:] in _PARTIAL_TAGS:
                # The chunk ends in what may become a tag: wait for the next chunk to decide.
                self._pending = text[lt:]
                end = lt
                break
            # Not markup: this "<" stays in the text, which is emitted later in one piece.
            pos = lt + 1
        self._emit(out, text[start:end])
        return out

    def close(self) -> list[Delta]:
        """End of stream: return the held-back partial tag, if any, as literal text."""
        pending, self._pending = self._pending, ""
        return [Delta(self._section, pending, self._index)] if pending else []

    def _emit(self, out: list[Delta], text: str) -> None:
        if not text:
            return
        if out:
            last = out[-1]
            if last.section == self._section and last.index == self._index:
                out[-1] = Delta(last.section, last.text + text, last.index)
                return
        out.append(Delta(self._section, text, self._index))

    def _open(self, name: str) -> None:
        index = None
        if name == "reflection":
            index = self._next_reflection
            self._next_reflection += 1
        self._stack.append((name, index))
        self._open_counts[name] += 1
        self._section, self._index = name, index

    def _close(self, name: str) -> None:
        # The caller checked that an element of this name is open, so this loop terminates.
        while True:
            popped, _ = self._stack.pop()
            self._open_counts[popped] -= 1
            if popped == name:
                break
        if self._stack:
            self._section, self._index = self._stack[-1]
        else:
            self._section, self._index = "text", None


@dataclass
class Sections:
    """The accumulated text of every section of one answer."""

    thinking: str = ""
    reflections: list[str] = field(default_factory=list)
    output: str = ""
    text: str = ""

    def apply(self, delta: Delta) -> None:
        """Append a delta to its section (reflections grow as needed to reach its index)."""
        section = delta.section
        if section == "reflection":
            index = delta.index
            if index is None or index < 0:
                raise ValueError(f"reflection delta needs an index >= 0, got {index!r}")
            if len(self.reflections) <= index:
                self.reflections.extend([""] * (index + 1 - len(self.reflections)))
            self.reflections[index] += delta.text
        elif section == "thinking":
            self.thinking += delta.text
        elif section == "output":
            self.output += delta.text
        elif section == "text":
            self.text += delta.text
        else:
            raise ValueError(f"unknown section {section!r}")

    def as_dict(self) -> dict:
        """The JSON shape used by the API: ``{"thinking", "reflections", "output", "text"}``."""
        return {
            "thinking": self.thinking,
            "reflections": list(self.reflections),
            "output": self.output,
            "text": self.text,
        }


def parse(text: str) -> Sections:
    """Parse a complete answer at once."""
    parser = TagParser()
    sections = Sections()
    for delta in parser.feed(text) + parser.close():
        sections.apply(delta)
    return sections


def merge_deltas(deltas: Iterable[Delta]) -> list[Delta]:
    """Coalesce adjacent deltas of the same (section, index), keeping their order.

    Useful to batch the deltas of many chunks into one message. Empty deltas are dropped.
    """
    merged: list[Delta] = []
    run: list[str] = []
    key: tuple[str, int | None] | None = None
    for delta in deltas:
        if not delta.text:
            continue  # an empty delta carries nothing and must not become an empty merged one
        if (delta.section, delta.index) != key:
            if key is not None:
                merged.append(Delta(key[0], "".join(run), key[1]))
            key = (delta.section, delta.index)
            run = []
        run.append(delta.text)
    if key is not None:
        merged.append(Delta(key[0], "".join(run), key[1]))
    return merged
