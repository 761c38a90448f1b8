"""The per-address sliding-window submission budget."""

from __future__ import annotations

from playground import limits
from playground.env import Rate
from playground.realtime import redis_clients


def take(ip: str, rate: Rate) -> int:
    """One submission's spend of `ip`'s budget, sent on its own: the seconds to wait, or 0."""
    pipe = redis_clients.redis_client().pipeline(transaction=False)
    limits.spend_in(pipe, ip, rate)
    (reply,) = pipe.execute()
    return limits.seconds_to_wait(reply)


def test_submissions_within_the_budget_pass_and_the_next_says_how_long_to_wait() -> None:
    rate = Rate(count=3, seconds=60)

    results = [take("192.0.2.1", rate) for _ in range(4)]

    assert results[:3] == [0, 0, 0]
    assert 55 <= results[3] <= 60


def test_each_address_has_its_own_budget() -> None:
    rate = Rate(count=1, seconds=60)

    assert take("192.0.2.1", rate) == 0
    assert take("192.0.2.2", rate) == 0
    assert take("192.0.2.1", rate) > 0


def test_the_budget_comes_back_as_the_window_slides() -> None:
    rate = Rate(count=1, seconds=1)
    assert take("192.0.2.9", rate) == 0

    import time

    time.sleep(1.1)

    assert take("192.0.2.9", rate) == 0


def test_a_spend_given_back_leaves_the_budget_as_it_was() -> None:
    rate = Rate(count=1, seconds=3600)
    pipe = redis_clients.redis_client().pipeline(transaction=False)
    spend = limits.spend_in(pipe, "192.0.2.20", rate)
    (reply,) = pipe.execute()
    assert limits.seconds_to_wait(reply) == 0

    limits.give_back(spend)

    assert take("192.0.2.20", rate) == 0
    assert take("192.0.2.20", rate) > 0


def test_giving_back_a_spend_the_budget_refused_takes_nothing_else_back() -> None:
    rate = Rate(count=1, seconds=3600)
    assert take("192.0.2.21", rate) == 0
    pipe = redis_clients.redis_client().pipeline(transaction=False)
    refused = limits.spend_in(pipe, "192.0.2.21", rate)
    (reply,) = pipe.execute()
    assert limits.seconds_to_wait(reply) > 0

    limits.give_back(refused)

    assert take("192.0.2.21", rate) > 0, "the first spend still counts"
