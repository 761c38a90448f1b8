"""How the playground writes a length of time, in both of its forms (static/js/stream/format.js
writes the same on the page, and tests/playground/test_durations.py holds the two to each other)."""

from __future__ import annotations


def format_measured(seconds: float | None) -> str:
    """A measured time, as precise as it is short: 0.31 s, 4.2 s, 12 s, 1 min 05 s."""
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{round(seconds)} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def format_wait(seconds: float) -> str:
    """An estimated or announced wait, in whole seconds: 45 s, 2 min 05 s, 1 h 5 min."""
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, rest = divmod(whole, 60)
    return (
        f"{minutes} min {rest:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"
    )
