"""The paced ASGI handler: a burst of requests goes through the views a few at a time, in
arrival order, a request waiting for its turn holds no thread, and a client slow to send its
body holds no turn. The lifespan: the channel
layer listens from startup, and startup never waits long for Redis."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from playground import handlers
from playground.handlers import PacedASGIHandler
from playground.realtime import channel_groups

inside = 0
most_inside = 0
entered: list[str] = []
view_threads: set[threading.Thread] = set()
counting = threading.Lock()


def slow_view(request: HttpRequest, name: str) -> HttpResponse:
    global inside, most_inside
    with counting:
        inside += 1
        most_inside = max(most_inside, inside)
        entered.append(name)
        view_threads.add(threading.current_thread())
    time.sleep(0.05)
    with counting:
        inside -= 1
    return HttpResponse(name)


@csrf_exempt
def echo_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.body)


urlpatterns = [path("slow/<str:name>", slow_view), path("echo", echo_view)]


@pytest.fixture(autouse=True)
def these_views(settings: Any) -> None:
    global inside, most_inside
    settings.ROOT_URLCONF = __name__
    inside = most_inside = 0
    entered.clear()
    view_threads.clear()


def scope(method: str, url: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": url,
        "raw_path": url.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


async def request(
    app: PacedASGIHandler,
    method: str,
    url: str,
    body_parts: list[bytes],
    pause: float = 0.0,
    arrives_after: float = 0.0,
) -> tuple[int, bytes]:
    """One request whose body arrives in parts, `pause` seconds apart."""
    await asyncio.sleep(arrives_after)
    parts = list(body_parts)
    sent: list[dict[str, Any]] = []
    finished = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if parts:
            if pause and len(parts) < len(body_parts):
                await asyncio.sleep(pause)
            part = parts.pop(0)
            return {"type": "http.request", "body": part, "more_body": bool(parts)}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope(method, url), receive, send)
    finished.set()
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


def test_a_burst_goes_through_the_views_a_few_at_a_time_in_arrival_order() -> None:
    app = PacedASGIHandler(views_at_once=2)
    names = [f"visitor-{index}" for index in range(8)]

    async def burst() -> list[tuple[int, bytes]]:
        # 10 ms apart, while each takes 50 ms in the view: a line forms.
        return await asyncio.gather(
            *(
                request(app, "GET", f"/slow/{name}", [b""], arrives_after=index * 0.01)
                for index, name in enumerate(names)
            )
        )

    answers = asyncio.run(burst())

    assert answers == [(200, name.encode()) for name in names]
    assert most_inside == 2
    # The turns go in arrival order; two visitors let in at the same moment (the two before
    # them finished together, on a busy machine) start their threads in either order. So
    # each visitor is in the views before anyone who arrived two or more places later.
    place = {name: entered.index(name) for name in names}
    for early, name in enumerate(names):
        for later in names[early + 2 :]:
            assert place[name] < place[later], entered


def test_without_pacing_the_same_burst_is_all_inside_at_once() -> None:
    # The measurement above can fail: the same burst, allowed eight at once, is all inside.
    app = PacedASGIHandler(views_at_once=8)
    names = [f"visitor-{index}" for index in range(8)]

    async def burst() -> None:
        await asyncio.gather(*(request(app, "GET", f"/slow/{n}", [b""]) for n in names))

    asyncio.run(burst())

    assert most_inside > 2


def test_a_client_slow_to_send_its_body_holds_no_turn() -> None:
    app = PacedASGIHandler(views_at_once=1)

    async def both() -> tuple[float, float]:
        started = time.monotonic()
        slow = asyncio.create_task(request(app, "POST", "/echo", [b"a", b"b", b"c"], pause=0.5))
        await asyncio.sleep(0.05)
        quick = await request(app, "GET", "/slow/quick", [b""])
        quick_done = time.monotonic() - started
        assert quick == (200, b"quick")
        assert await slow == (200, b"abc")
        return quick_done, time.monotonic() - started

    quick_done, slow_done = asyncio.run(both())

    assert quick_done < 0.5 < slow_done


def test_a_request_waiting_for_its_turn_holds_no_thread() -> None:
    app = PacedASGIHandler(views_at_once=1)
    most_threads = 0

    async def burst() -> None:
        nonlocal most_threads
        watching = True

        async def watch() -> None:
            nonlocal most_threads
            while watching:
                most_threads = max(most_threads, threading.active_count())
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        await asyncio.gather(*(request(app, "GET", f"/slow/{n}", [b""]) for n in range(12)))
        watching = False
        await watcher

    before = threading.active_count()
    asyncio.run(burst())

    assert entered == [str(n) for n in range(12)]
    # One request inside at a time, on the turn's thread: never a thread for each of the
    # twelve waiting, nor one started per request.
    assert most_threads - before <= 1
    assert len(view_threads) == 1


def test_every_request_runs_on_one_of_the_turns_threads() -> None:
    app = PacedASGIHandler(views_at_once=2)

    async def two_bursts() -> None:
        for burst in range(2):
            await asyncio.gather(
                *(request(app, "GET", f"/slow/{burst}-{n}", [b""]) for n in range(6))
            )

    asyncio.run(two_bursts())

    assert len(entered) == 12
    # Django alone would start a thread for each of the twelve.
    assert len(view_threads) == 2
    assert sorted(thread.name for thread in view_threads) == ["view-turn-0_0", "view-turn-1_0"]


def test_a_large_body_is_read_ahead_only_up_to_the_limit_and_arrives_whole() -> None:
    parts = [b"x" * 1000 for _ in range(5)]

    async def read() -> tuple[int, bytes]:
        messages = [
            {"type": "http.request", "body": part, "more_body": index < 4}
            for index, part in enumerate(parts)
        ]
        given: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            message = messages.pop(0)
            given.append(message)
            return message

        early, replay = await handlers.read_ahead(receive, 2000)
        body = b""
        while True:
            message = await replay()
            body += message["body"]
            if not message["more_body"]:
                break
        return len(early), body

    read_early, body = asyncio.run(read())

    assert read_early == 3, "past 2,000 bytes the rest is read when Django asks"
    assert body == b"".join(parts)


def test_a_client_gone_while_sending_its_body_gets_no_turn() -> None:
    app = PacedASGIHandler(views_at_once=1)
    sent: list[dict[str, Any]] = []
    messages = [
        {"type": "http.request", "body": b"a", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope("POST", "/echo"), receive, send))

    assert sent == []


async def run_lifespan(app: Any) -> tuple[list[str], str | None]:
    """Startup then shutdown, as uvicorn drives them; what the app sent, and the standing
    channel it subscribed meanwhile."""
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[str] = []
    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])
        started.set()

    await incoming.put({"type": "lifespan.startup"})
    running = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, incoming.get, send)
    )
    await asyncio.wait_for(started.wait(), 10)
    standing = channel_groups.standing_channel()
    await incoming.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(running, 10)
    return sent, standing


def test_the_application_subscribes_its_standing_channel_at_startup() -> None:
    from playground.asgi import application

    sent, standing = asyncio.run(run_lifespan(application))

    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert standing is not None and standing.startswith("asgistanding.")


def test_startup_completes_when_redis_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refused() -> None:
        raise ConnectionRefusedError("no Redis here")

    monkeypatch.setattr(channel_groups, "keep_listening", refused)

    sent, standing = asyncio.run(run_lifespan(handlers.lifespan))

    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert standing is None


def test_startup_waits_for_an_unanswering_redis_only_so_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def unanswered() -> None:
        await asyncio.sleep(60)

    monkeypatch.setattr(channel_groups, "keep_listening", unanswered)
    monkeypatch.setattr(handlers, "LISTEN_AT_STARTUP_SECONDS", 0.1)

    started = time.monotonic()
    sent, _ = asyncio.run(run_lifespan(handlers.lifespan))

    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert time.monotonic() - started < 5
