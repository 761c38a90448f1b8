"""A whole playground for integration tests: real Redis, Celery worker, uvicorn and simulator.

The stack gets its own Redis database number and its own database (a separate SQLite file, or
a separate PostgreSQL database when DATABASE_URL points at PostgreSQL), so it never touches what
the unit tests use. Tests talk to it only over HTTP and WebSockets, like a browser would.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import redis
import websockets

from devtools.processes import free_port
from devtools.stack import Stack

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def _database_url(name: str) -> str:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        import psycopg

        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{name}"')
        return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    path = Path(tempfile.mkdtemp(prefix="playground-it-")) / f"{name}.sqlite3"
    return f"sqlite:///{path}"


@contextmanager
def playground_stack(
    name: str, redis_db: int, sim_args: list[str] | None = None, **env: str
) -> Iterator[Stack]:
    stack_env = dict(os.environ)
    stack_env.update(
        {
            "DATABASE_URL": _database_url(f"playground_{name}"),
            "VAR_DIR": tempfile.mkdtemp(prefix="playground-var-"),
            "SECRET_KEY": "integration-tests-only",
            "IP_MAX_ACTIVE": "1000",
            "IP_RATE_LIMIT": "100000/m",
            "IP_MAX_WEBSOCKETS": "100000",
            **env,
        }
    )
    stack_env.pop("TGI_URL", None)
    if os.environ.get("REDIS_URL"):
        # A database number of its own on the shared Redis; without REDIS_URL the stack
        # starts an embedded redis-server of its own.
        stack_env["REDIS_URL"] = _redis_db(os.environ["REDIS_URL"], redis_db)
        redis.Redis.from_url(stack_env["REDIS_URL"]).flushdb()
    stack = Stack(
        port=free_port(),
        env=stack_env,
        sim_args=sim_args or ["--tokens-per-second", "150", "--seed", "3"],
        log_dir=ARTIFACTS / "logs" / name,
    )
    try:
        stack.start()
        stack.wait_for_worker()
        yield stack
    finally:
        stack.stop()


class Visitor:
    """A browser-like visitor: a cookie jar with a session and a CSRF token."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.http.get("/")
        self.http.headers["X-CSRFToken"] = self.http.cookies["csrftoken"]
        self.last_close_code: int | None = None

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.post(path, json=body)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def ws_url(self, stream_url: str, after: int | None = None) -> str:
        url = self.base_url.replace("http://", "ws://") + stream_url
        if after is not None:
            url += ("&" if "?" in url else "?") + f"after={after}"
        return url

    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.http.cookies.items())

    def events(
        self,
        stream_url: str,
        after: int | None = None,
        limit: int | None = None,
        timeout: float = 60,
        anonymous: bool = False,
    ) -> list[dict[str, Any]]:
        """Read events until the server closes (after a final event) or `limit` deltas."""
        return asyncio.run(self.aevents(stream_url, after, limit, timeout, anonymous))

    async def aevents(
        self,
        stream_url: str,
        after: int | None = None,
        limit: int | None = None,
        timeout: float = 60,
        anonymous: bool = False,
    ) -> list[dict[str, Any]]:
        headers = {} if anonymous else {"Cookie": self.cookie_header()}
        received: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            async with websockets.connect(
                self.ws_url(stream_url, after), additional_headers=headers
            ) as socket:
                try:
                    async for raw in socket:
                        event = json.loads(raw)
                        received.append(event)
                        deltas = sum(1 for e in received if e["type"] == "delta")
                        if limit is not None and deltas >= limit:
                            break
                except websockets.ConnectionClosedError:
                    pass  # a refusal closes with an application code (4404); the events tell why
                self.last_close_code = socket.close_code
        return received

    async def follow(
        self,
        stream_url: str,
        timeout: float = 120,
        shown: list[dict[str, Any]] | None = None,
        attempt: int = 0,
    ) -> Followed:
        """Watch an answer to its end as a page does: reconnect from the last seq (and attempt)
        after any drop or refusal, start over on `restarted`, stop at a final event. `shown`
        and `attempt`: the deltas a page already shows, and the attempt they belong to."""
        followed = Followed(deltas=list(shown or []))
        headers = {"Cookie": self.cookie_header()}
        async with asyncio.timeout(timeout):
            while True:
                url = self.ws_url(stream_url, after=followed.seq) + f"&attempt={attempt}"
                try:
                    async with websockets.connect(url, additional_headers=headers) as socket:
                        async for raw in socket:
                            event = json.loads(raw)
                            kind = event["type"]
                            if kind == "restarted":
                                followed.restarts += 1
                                attempt = event["attempt"]
                                followed.deltas.clear()
                            elif kind == "started":
                                attempt = event.get("attempt") or attempt
                            elif kind == "delta":
                                followed.take(event)
                            elif kind in FINAL:
                                followed.final = event
                                return followed
                except (OSError, websockets.InvalidStatus, websockets.ConnectionClosed):
                    pass
                followed.reconnects += 1
                await asyncio.sleep(0.25)

    def close(self) -> None:
        self.http.close()


@dataclass
class Followed:
    """What a page following an answer ended up with."""

    deltas: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] | None = None
    restarts: int = 0
    reconnects: int = 0
    duplicates: int = 0
    gaps: int = 0

    @property
    def seq(self) -> int:
        return self.deltas[-1]["seq"] if self.deltas else 0

    def take(self, event: dict[str, Any]) -> None:
        if event["seq"] <= self.seq:
            self.duplicates += 1
        elif event["seq"] != self.seq + 1:
            self.gaps += 1
        else:
            self.deltas.append(event)


def deltas_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == "delta"]


def sections_from(deltas: list[dict[str, Any]]) -> dict[str, Any]:
    sections: dict[str, Any] = {"thinking": "", "reflections": [], "output": "", "text": ""}
    for delta in deltas:
        if delta["section"] == "reflection":
            while len(sections["reflections"]) <= delta["index"]:
                sections["reflections"].append("")
            sections["reflections"][delta["index"]] += delta["text"]
        else:
            sections[delta["section"]] += delta["text"]
    return sections


FINAL = ("done", "error", "cancelled")


def wait_status(visitor: Visitor, message_id: str, wanted: tuple[str, ...], timeout: float) -> dict:
    """Poll the message until its status is one of `wanted`; its payload then."""
    deadline = time.monotonic() + timeout
    message: dict = {}
    while time.monotonic() < deadline:
        message = visitor.get(f"/api/v1/messages/{message_id}").json()
        if message["status"] in wanted:
            return message
        time.sleep(0.1)
    raise AssertionError(f"{message_id} stayed {message.get('status')}, wanted {wanted}")


def wait_final(visitor: Visitor, message_id: str, timeout: float = 60) -> dict:
    return wait_status(visitor, message_id, FINAL, timeout)
