"""The database is the source of truth: a killed worker and a restarted Redis leave nothing
queued or running forever. Real processes, killed for real."""

from __future__ import annotations

import signal
import time

import pytest

from tests.integration.stack import FINAL, Visitor, playground_stack, wait_status

pytestmark = pytest.mark.integration

SLOW = ["--tokens-per-second", "25", "--seed", "5"]


def wait_for_text(visitor: Visitor, message_id: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = visitor.get(f"/api/v1/messages/{message_id}").json()
        if message["seq"] > 3:
            return
        time.sleep(0.05)
    raise AssertionError("the answer never started")


def test_a_killed_worker_frees_its_slot_and_the_line_moves_on() -> None:
    with playground_stack(
        "worker-kill",
        redis_db=8,
        sim_args=SLOW,
        GENERATION_CONCURRENCY="1",
        SLOT_LEASE_SECONDS="3",
    ) as stack:
        first, second = Visitor(stack.base_url), Visitor(stack.base_url)
        running = first.post("/api/v1/conversations", {"sample": "agatha"}).json()["message"]
        wait_for_text(first, running["id"])
        waiting = second.post("/api/v1/conversations", {"sample": "strawberry"}).json()
        assert waiting["message"]["status"] == "queued"
        assert waiting["message"]["position"] == 1

        for name in [name for name in stack.processes if name.startswith("worker")]:
            stack.kill(name, signal.SIGKILL)
        time.sleep(1)
        assert first.get(f"/api/v1/messages/{running['id']}").json()["status"] == "running"
        stack.start_worker("replacement")

        lost = wait_status(first, running["id"], FINAL, timeout=40)
        assert lost["status"] == "error"
        assert lost["error"]["code"] == "worker_lost"
        assert lost["sections"]["thinking"], f"the text written before the crash is kept: {lost}"
        served = wait_status(second, waiting["message"]["id"], FINAL, timeout=60)
        assert served["status"] == "done"
        first.close()
        second.close()


def test_a_redis_restart_loses_no_message(monkeypatch: pytest.MonkeyPatch) -> None:
    # This stack runs its own embedded Redis, so restarting it touches nothing else.
    monkeypatch.delenv("REDIS_URL")
    with playground_stack(
        "redis-restart",
        redis_db=0,
        sim_args=SLOW,
        GENERATION_CONCURRENCY="1",
        SLOT_LEASE_SECONDS="3",
    ) as stack:
        visitors = [Visitor(stack.base_url) for _ in range(3)]
        messages = [
            v.post("/api/v1/conversations", {"sample": "decimal-compare"}).json()["message"]
            for v in visitors
        ]
        assert [m["status"] for m in messages[1:]] == ["queued", "queued"]
        wait_for_text(visitors[0], messages[0]["id"])

        assert stack.redis is not None
        stack.redis.restart()

        finals = [
            wait_status(v, m["id"], FINAL, 90) for v, m in zip(visitors, messages, strict=True)
        ]
        assert finals[0]["status"] in ("done", "error")
        assert [f["status"] for f in finals[1:]] == ["done", "done"]
        for visitor in visitors:
            visitor.close()
