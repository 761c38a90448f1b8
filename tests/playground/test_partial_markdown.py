"""The Markdown of an answer still being written (static/js/stream/partial-markdown.js): open
bold and code spans are closed for rendering, a mark with nothing after it yet is held back, and
code blocks and finished text are left alone. Run in Node (the module has no DOM)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="needs node (Debian: apt-get install nodejs)")

CASES = [
    # As the model writes it, then as it is rendered meanwhile.
    ("The answer is **", "The answer is "),
    ("The answer is **3", "The answer is **3**"),
    ("The answer is **3 r's", "The answer is **3 r's**"),
    ("The answer is **3 ", "The answer is **3** "),
    ("So **3** r's.", "So **3** r's."),
    ("Use `len", "Use `len`"),
    ("Use `", "Use "),
    ("Use `a**b` and **c", "Use `a**b` and **c**"),
    ("**bold `code", "**bold `code`**"),
    ("First **a**\n\nthen **b", "First **a**\n\nthen **b**"),
    ("```python\nx = 2 ** ", "```python\nx = 2 ** "),
    ("```\ncode\n```\n\n**done", "```\ncode\n```\n\n**done**"),
    ("", ""),
]


def completed(texts: list[str]) -> list[str]:
    script = (
        "import { completePartialMarkdown } from './static/js/stream/partial-markdown.js';\n"
        "const texts = JSON.parse(process.argv[1]);\n"
        "console.log(JSON.stringify(texts.map(completePartialMarkdown)));\n"
    )
    result = subprocess.run(
        [NODE or "node", "--input-type=module", "-e", script, json.dumps(texts)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(result.stdout)


def test_open_marks_are_closed_or_held_back_while_an_answer_is_written() -> None:
    texts = [text for text, _ in CASES]

    assert completed(texts) == [rendered for _, rendered in CASES]
