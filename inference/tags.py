"""The tag vocabulary of Reflection-style answers, for every module that reads or writes them.

An answer is made of three elements, each opened and closed by a tag: ``<thinking>…</thinking>``,
``<reflection>…</reflection>`` and ``<output>…</output>``. Its text falls into four sections:
one per element, and ``"text"`` for whatever lies outside every element.

The order of :data:`TAGS` is part of the vocabulary: the simulator numbers its tag tokens by it.
"""

from __future__ import annotations

ELEMENTS = ("thinking", "reflection", "output")
SECTIONS = (*ELEMENTS, "text")

OPENING_TAGS = {f"<{name}>": name for name in ELEMENTS}
CLOSING_TAGS = {f"</{name}>": name for name in ELEMENTS}
TAGS = tuple(tag for pair in zip(OPENING_TAGS, CLOSING_TAGS, strict=True) for tag in pair)
