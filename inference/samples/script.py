"""What a sample is, in any of its languages, and the layout of its scripted answer."""

from __future__ import annotations

from dataclasses import dataclass

ENGLISH = "en"


@dataclass(frozen=True)
class Sample:
    """One sample prompt in one language: its versions in other languages share the slug, and
    the same checker reads their answers."""

    slug: str
    title: str
    prompt: str
    expected: str
    scripted_answer: str
    # A language code as Django writes it ("en", "zh-hans").
    language: str = ENGLISH


# The odd-numbers sample's code block, the same in every language.
ODD_NUMBERS_CODE = """
```python
print(sum(range(1, 200, 2)))  # 10000
```
"""


def scripted(thinking: str, output: str) -> str:
    # Keeps the tag layout identical across samples, so the stream looks like one model's habit.
    return f"<thinking>\n{thinking.strip()}\n</thinking>\n\n<output>\n{output.strip()}\n</output>"
