"""How the dashboard writes a latency on the server, the same as static/ops/numbers.js writes
it in the page (tests/ops/test_units.py holds the two to each other): milliseconds below a
second, where queue waits and first tokens of a healthy site are, and above it as every other
measured time on the site."""

from __future__ import annotations

import math

from playground.durations import format_measured


def format_latency(seconds: float | None) -> str:
    if seconds is not None:
        # Half up, as the page's Math.round (Python's round() goes to even).
        milliseconds = math.floor(seconds * 1000 + 0.5)
        if milliseconds < 1000:
            return f"{milliseconds} ms"
    return format_measured(seconds)


def latency_texts(latency: dict[str, dict[str, float | int | None]]) -> dict[str, dict[str, str]]:
    """{kind: {"p50": text, "p95": text}} for the tiles of dashboard.snapshot's latencies."""
    return {
        kind: {name: format_latency(values.get(name)) for name in ("p50", "p95")}
        for kind, values in latency.items()
    }
