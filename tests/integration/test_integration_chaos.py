"""Faults injected into real processes: Redis stopped and started empty mid-answer, workers
shut down and killed mid-answer, a share link turned off under its viewers, a backend that
counts a stream until its response ends. Each stack runs its own embedded redis-server, so
stopping it touches nothing else; pages are followed the way the page's script follows them
(static/js/stream/answer-stream.js)."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devtools.stack import Stack
from tests.integration.stack import (
    FINAL,
    Followed,
    Visitor,
    playground_stack,
    sections_from,
    wait_status,
)

pytestmark = pytest.mark.integration

SLOW = ["--tokens-per-second", "25", "--seed", "5"]


@pytest.fixture
def own_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stack starts an embedded redis-server of its own."""
    monkeypatch.delenv("REDIS_URL", raising=False)


def sim_stats(stack: Stack) -> dict[str, Any]:
    return httpx.get(f"{stack.env['TGI_URL']}/sim/stats", timeout=5).json()


def wait_for_deltas(visitor: Visitor, message_id: str, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if visitor.get(f"/api/v1/messages/{message_id}").json()["seq"] >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{message_id} never reached {count} deltas")


class Pages:
    """Visitors' pages following their answers in a thread of their own, while the test
    breaks things."""

    def __init__(self, visitors: list[Visitor], messages: list[dict[str, Any]]) -> None:
        self.results: list[Followed | BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(visitors, messages))
        self._thread.start()

    def _run(self, visitors: list[Visitor], messages: list[dict[str, Any]]) -> None:
        async def follow_all() -> list[Followed | BaseException]:
            return await asyncio.gather(
                *[
                    visitor.follow(message["stream_url"], timeout=150)
                    for visitor, message in zip(visitors, messages, strict=True)
                ],
                return_exceptions=True,
            )

        self.results = asyncio.run(follow_all())

    def wait(self) -> list[Followed]:
        self._thread.join(170)
        assert not self._thread.is_alive(), "a page never reached a final state"
        for result in self.results:
            assert isinstance(result, Followed), result
        return self.results  # type: ignore[return-value]


def ask(visitors: list[Visitor], sample: str) -> list[dict[str, Any]]:
    return [v.post("/api/v1/conversations", {"sample": sample}).json()["message"] for v in visitors]


def assert_page_matches_the_stored_answer(
    visitor: Visitor, page: Followed, message_id: str
) -> None:
    stored = visitor.get(f"/api/v1/messages/{message_id}").json()
    assert page.final is not None and page.final["type"] == stored["status"]
    assert page.gaps == 0
    assert page.deltas, "the page shows the answer"
    assert sections_from(page.deltas) == stored["sections"], "what was shown is what is kept"
    replay = visitor.events(stored["stream_url"], after=0)
    assert [d for d in replay if d["type"] == "delta"] == page.deltas, "replay = what was shown"


def test_answers_ride_out_redis_stopping_and_coming_back_empty(own_redis: None) -> None:
    with playground_stack(
        "chaos-redis", redis_db=0, sim_args=SLOW, GENERATION_CONCURRENCY="2"
    ) as stack:
        visitors = [Visitor(stack.base_url) for _ in range(4)]
        messages = ask(visitors, "agatha")
        assert [m["status"] for m in messages[2:]] == ["queued", "queued"]
        pages = Pages(visitors, messages)
        wait_for_deltas(visitors[0], messages[0]["id"], 5)
        wait_for_deltas(visitors[1], messages[1]["id"], 5)

        newcomer = Visitor(stack.base_url)
        assert stack.redis is not None
        stack.redis.stop(keep_directory=True)
        time.sleep(1)
        during = [
            newcomer.get("/api/v1/status"),
            newcomer.post("/api/v1/conversations", {"prompt": "Anyone there?"}),
            newcomer.get("/"),
        ]
        time.sleep(2)
        stack.redis.start()  # empty: it keeps nothing on disk

        finished = pages.wait()

        assert [response.status_code for response in during] == [503, 503, 503]
        assert during[0].json()["error"]["code"] == "unavailable"
        for visitor, page, message in zip(visitors, finished, messages, strict=True):
            assert page.final is not None and page.final["type"] == "done", page.final
            assert_page_matches_the_stored_answer(visitor, page, message["id"])
        # The slots of the answers being written were rebuilt from the database before anyone
        # else was given one: the backend never ran more than the configured two at once.
        assert sim_stats(stack)["peak_active"] <= 2
        for visitor in [*visitors, newcomer]:
            visitor.close()


def test_a_short_blip_keeps_replay_gap_free_mid_answer(own_redis: None) -> None:
    with playground_stack("chaos-blip", redis_db=0, sim_args=SLOW) as stack:
        visitor = Visitor(stack.base_url)
        message = ask([visitor], "agatha")[0]
        wait_for_deltas(visitor, message["id"], 8)

        assert stack.redis is not None
        stack.redis.stop(keep_directory=True)
        time.sleep(0.3)
        stack.redis.start()
        wait_for_deltas(visitor, message["id"], 20, timeout=60)

        # A page that had seq 5 before the blip reconnects: it gets 6, 7, 8… with no gap.
        resumed = visitor.events(message["stream_url"], after=5, limit=6)
        assert [d["seq"] for d in resumed if d["type"] == "delta"] == [6, 7, 8, 9, 10, 11]
        final = wait_status(visitor, message["id"], FINAL, 120)
        assert final["status"] == "done"
        replay = visitor.events(message["stream_url"], after=0)
        deltas = [d for d in replay if d["type"] == "delta"]
        assert [d["seq"] for d in deltas] == list(range(1, final["seq"] + 1))
        visitor.close()


def test_a_worker_shut_down_mid_answer_restarts_it_cleanly_as_the_next_attempt() -> None:
    with playground_stack("chaos-worker-stop", redis_db=12, sim_args=SLOW) as stack:
        watched, unwatched = Visitor(stack.base_url), Visitor(stack.base_url)
        messages = ask([watched, unwatched], "agatha")
        pages = Pages([watched], messages[:1])
        for visitor, message in zip((watched, unwatched), messages, strict=True):
            wait_for_deltas(visitor, message["id"], 5)

        for name in [name for name in stack.processes if name.startswith("worker")]:
            stack.kill(name, signal.SIGTERM)  # what Ctrl-C or a deploy does to a worker
        requeued = wait_status(watched, messages[0]["id"], ("queued",), 15)
        assert requeued["seq"] == 0, "nothing of the interrupted attempt is left to splice onto"
        stack.start_worker("worker")

        [page] = pages.wait()
        assert page.restarts == 1
        assert page.final is not None and page.final["type"] == "done"
        assert_page_matches_the_stored_answer(watched, page, messages[0]["id"])
        # The answer nobody watched is written too: it had its turn, it did not "leave".
        alone = wait_status(unwatched, messages[1]["id"], FINAL, 120)
        assert alone["status"] == "done", alone["error"]
        assert [d["seq"] for d in watched.events(messages[0]["stream_url"], after=0)[:-1]] == list(
            range(1, page.seq + 1)
        )
        watched.close()
        unwatched.close()


def test_workers_and_redis_lost_together_restart_the_answer_as_the_next_attempt(
    own_redis: None,
) -> None:
    with playground_stack(
        "chaos-full-restart", redis_db=0, sim_args=SLOW, SLOT_LEASE_SECONDS="3"
    ) as stack:
        visitor = Visitor(stack.base_url)
        message = ask([visitor], "agatha")[0]
        wait_for_deltas(visitor, message["id"], 5)
        seen = visitor.events(message["stream_url"], after=0, limit=5)

        for name in [name for name in stack.processes if name.startswith("worker")]:
            stack.kill(name, signal.SIGKILL)
        assert stack.redis is not None
        stack.redis.restart()  # empty
        stack.start_worker("worker")

        # The page comes back with the five deltas of attempt 1 it was showing.
        shown = [event for event in seen if event["type"] == "delta"]
        page = asyncio.run(visitor.follow(message["stream_url"], 150, shown, attempt=1))
        assert page.restarts == 1, "told to drop the old attempt's text, not handed a splice"
        assert page.final is not None and page.final["type"] == "done"
        assert_page_matches_the_stored_answer(visitor, page, message["id"])
        visitor.close()


def test_turning_a_share_link_off_closes_its_open_streams_within_a_second() -> None:
    with playground_stack("chaos-revoke", redis_db=13, sim_args=SLOW) as stack:
        owner = Visitor(stack.base_url)
        created = owner.post("/api/v1/conversations", {"sample": "agatha"}).json()
        message = created["message"]
        wait_for_deltas(owner, message["id"], 3)
        token = created["share_url"].rstrip("/").rsplit("/", 1)[1]
        stranger = Visitor(stack.base_url)
        shared_stream = f"{message['stream_url']}?share={token}"

        async def watch_then_revoke() -> tuple[list[dict[str, Any]], float]:
            reading = asyncio.create_task(stranger.aevents(shared_stream, anonymous=True))
            await asyncio.sleep(1)
            began = time.monotonic()
            await asyncio.to_thread(
                owner.http.delete, f"/api/v1/conversations/{created['id']}/share"
            )
            events = await reading
            return events, time.monotonic() - began

        events, took = asyncio.run(watch_then_revoke())

        assert events[-1]["type"] == "error" and events[-1]["code"] == "revoked"
        assert stranger.last_close_code == 4403
        assert took < 1.0
        assert owner.get(f"/api/v1/messages/{message['id']}").json()["status"] == "running"
        owner.close()
        stranger.close()


@pytest.fixture
def tail_holding_backend() -> Iterator[list[str]]:
    """A backend with two permits that it holds for 300 ms after each final event, as TGI holds
    its permit until the response has ended."""
    yield [
        "--tokens-per-second", "400", "--seed", "3",
        "--max-concurrent-requests", "2", "--stream-end-ms", "300",
    ]  # fmt: skip


def test_a_slot_is_handed_on_only_after_the_backend_let_go_of_it(
    tail_holding_backend: list[str],
) -> None:
    with playground_stack(
        "chaos-release", redis_db=14, sim_args=tail_holding_backend, GENERATION_CONCURRENCY="2"
    ) as stack:
        visitors = [Visitor(stack.base_url) for _ in range(8)]
        messages = ask(visitors, "strawberry")
        finals = [
            wait_status(v, m["id"], FINAL, 120) for v, m in zip(visitors, messages, strict=True)
        ]

        assert [final["status"] for final in finals] == ["done"] * 8
        stats = sim_stats(stack)
        assert stats["overloaded"] == 0, "a request arrived while the backend still counted one"
        assert stats["peak_active"] <= 2
        for visitor in visitors:
            visitor.close()
