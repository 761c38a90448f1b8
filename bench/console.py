"""What the benchmark says as it goes, each line marked as its own."""

from __future__ import annotations


def say(text: str) -> None:
    print(f"[bench] {text}", flush=True)
