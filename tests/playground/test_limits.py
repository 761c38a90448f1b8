"""The per-address sliding-window submission budget."""

from __future__ import annotations

from playground import limits
from playground.env import Rate


def test_submissions_within_the_budget_pass_and_the_next_says_how_long_to_wait() -> None:
    rate = Rate(count=3, seconds=60)

    results = [limits.take("192.0.2.1", rate) for _ in range(4)]

    assert results[:3] == [0, 0, 0]
    assert 55 <= results[3] <= 60


def test_each_address_has_its_own_budget() -> None:
    rate = Rate(count=1, seconds=60)

    assert limits.take("192.0.2.1", rate) == 0
    assert limits.take("192.0.2.2", rate) == 0
    assert limits.take("192.0.2.1", rate) > 0


def test_the_budget_comes_back_as_the_window_slides() -> None:
    rate = Rate(count=1, seconds=1)
    assert limits.take("192.0.2.9", rate) == 0

    import time

    time.sleep(1.1)

    assert limits.take("192.0.2.9", rate) == 0
