"""A few values kept for a little while (playground/short_memory.py)."""

from __future__ import annotations

import pytest

from playground import short_memory
from playground.short_memory import ShortMemory


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [100.0]
    monkeypatch.setattr(short_memory.time, "monotonic", lambda: now[0])
    return now


def test_a_value_is_recalled_until_its_time_is_up(clock: list[float]) -> None:
    memory = ShortMemory(seconds=10.0, at_most=4)
    memory.keep("a", None)
    missing = object()
    assert memory.recall("a", missing) is None, "a kept None is told from one never kept"
    assert memory.recall("b", missing) is missing
    clock[0] += 9.9
    assert memory.recall("a", missing) is None
    clock[0] += 0.1
    assert memory.recall("a", missing) is missing


def test_a_full_memory_lets_the_expired_go_first(clock: list[float]) -> None:
    memory = ShortMemory(seconds=10.0, at_most=3)
    memory.keep("old", 1)
    clock[0] += 5
    memory.keep("newer", 2)
    memory.keep("newest", 3)
    clock[0] += 6  # "old" has expired, the others not
    memory.keep("next", 4)
    assert len(memory) == 3
    assert [memory.recall(k) for k in ("newer", "newest", "next")] == [2, 3, 4]


def test_a_full_memory_with_nothing_expired_starts_over(clock: list[float]) -> None:
    memory = ShortMemory(seconds=10.0, at_most=2)
    memory.keep("a", 1)
    memory.keep("b", 2)
    memory.keep("c", 3)
    assert len(memory) == 1
    assert (memory.recall("a"), memory.recall("c")) == (None, 3)
