"""Pure statistics helpers of the benchmark (no I/O, no clocks); see
tests/deployment/test_bench.py."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

# The simulator's --stamp-emission-times prefix: `⟦<unix time with 6 decimals>⟧`.
STAMP = re.compile(r"⟦(\d+(?:\.\d+)?)⟧")


def stamps_in(text: str) -> list[float]:
    """Every emission time stamped into `text` (one per non-special token), in order."""
    return [float(match) for match in STAMP.findall(text)]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between closest ranks.

    None for no values, so that an empty measurement shows as missing rather than as zero.
    """
    if not 0 <= q <= 100:
        raise ValueError("q must be between 0 and 100")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 50)


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """Count, mean and the percentiles the report quotes."""
    return {
        "n": len(values),
        "mean": sum(values) / len(values) if values else None,
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
    }


def ratio(value: float | None, floor: float | None) -> float | None:
    if value is None or floor is None or floor <= 0:
        return None
    return value / floor


def difference(value: float | None, floor: float | None) -> float | None:
    if value is None or floor is None:
        return None
    return value - floor


def position_rose(positions: Sequence[int | None]) -> bool:
    """Whether a visitor's place in line ever went up (None means 'no place': skipped)."""
    seen = [p for p in positions if p is not None]
    return any(later > earlier for earlier, later in zip(seen, seen[1:], strict=False))


def eta_error(predicted: float | None, actual: float | None, min_wait: float = 1.0) -> float | None:
    """|predicted − actual| / actual for a visitor who really waited, else None.

    Visitors who neither were told to wait nor waited more than `min_wait` seconds carry no
    information about the estimate, and their tiny `actual` would blow the ratio up.
    """
    if predicted is None or actual is None:
        return None
    if max(predicted, actual) <= min_wait or actual <= 0:
        return None
    return abs(predicted - actual) / actual


def signed_eta_error(
    predicted: float | None, actual: float | None, min_wait: float = 1.0
) -> float | None:
    """(predicted − actual) / actual under the same filter as `eta_error`: > 0 over-estimates."""
    if eta_error(predicted, actual, min_wait) is None:
        return None
    assert predicted is not None and actual is not None
    return (predicted - actual) / actual


def peak_concurrent(intervals: Iterable[tuple[float, float | None]]) -> int:
    """Most intervals open at once; an interval (start, None) never closes.

    An interval that closes at the very instant another opens does not overlap it.
    """
    events: list[tuple[float, int]] = []
    for start, end in intervals:
        events.append((start, 1))
        if end is not None:
            events.append((end, -1))
    # Closings sort before openings at the same instant.
    events.sort(key=lambda item: (item[0], item[1]))
    peak = current = 0
    for _, change in events:
        current += change
        peak = max(peak, current)
    return peak


def open_at(intervals: Iterable[tuple[float, float | None]], instant: float) -> int:
    """How many intervals contain `instant` (start inclusive, end exclusive)."""
    return sum(1 for start, end in intervals if start <= instant and (end is None or instant < end))


def empty_sections() -> dict[str, Any]:
    return {"thinking": "", "reflections": [], "output": "", "text": ""}


def sections_from(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of the API's `Message.sections`, to go on adding deltas to."""
    sections = empty_sections()
    for key in ("thinking", "output", "text"):
        sections[key] = (payload or {}).get(key) or ""
    sections["reflections"] = list((payload or {}).get("reflections") or [])
    return sections


def apply_delta(sections: dict[str, Any], delta: Mapping[str, Any]) -> None:
    """Add one WebSocket delta event to sections shaped like the API's `Message.sections`."""
    section = delta["section"]
    if section == "reflection":
        index = int(delta.get("index") or 0)
        reflections: list[str] = sections["reflections"]
        while len(reflections) <= index:
            reflections.append("")
        reflections[index] += delta["text"]
    else:
        sections[section] += delta["text"]


def sections_match(built: Mapping[str, Any], stored: Mapping[str, Any] | None) -> bool:
    """Whether what a visitor received adds up to exactly what the server stored."""
    if not stored:
        return False
    keys = ("thinking", "output", "text")
    return all(built.get(k, "") == stored.get(k, "") for k in keys) and list(
        built.get("reflections", [])
    ) == list(stored.get("reflections", []))


def within(value: float | None, limit: float) -> bool | None:
    """value ≤ limit, or None when there is nothing to judge."""
    if value is None:
        return None
    return value <= limit


T = TypeVar("T")


def ms(seconds: float | None) -> float | None:
    """Seconds as milliseconds, None staying None."""
    return None if seconds is None else seconds * 1000


def in_ms(summary: dict[str, float | int | None]) -> dict[str, float | int | None]:
    """A summary of seconds (see `summarize`) in milliseconds; its count stays a count."""
    return {
        key: value if key == "n" or value is None else value * 1000
        for key, value in summary.items()
    }


def present(items: Iterable[T | None]) -> list[T]:
    """The values that are there (a missing figure is None)."""
    return [item for item in items if item is not None]


def count(items: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts
