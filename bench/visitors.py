"""Visitors of the running stack: each a browser-like cookie jar over HTTP plus a WebSocket.

Every timestamp is `time.time()`, the same clock the simulator stamps into token text, so
`receipt − stamp` is the delay a token spent between the backend and the visitor.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import httpx

from bench import stats

FINALS = {"done", "error", "cancelled"}
MAX_RECONNECTS = 5


@dataclass
class StackVisit:
    """What one visitor saw, from submit to final event."""

    index: int
    slug: str
    # The page (GET /) before the question: under the launch profile, a thousand at once.
    page_seconds: float | None = None
    submit_at: float | None = None
    post_status: int | None = None
    post_seconds: float | None = None
    refusal: str | None = None  # the error code of a refused submission
    conversation_id: str | None = None
    message_id: str | None = None
    stream_url: str | None = None
    predicted_wait: float | None = None  # eta_seconds in the POST answer
    created_at: float | None = None  # the server's `created`, for the floor's line order
    positions: list[int | None] = field(default_factory=list)
    ws_opened_at: float | None = None
    started_at: float | None = None
    first_delta_at: float | None = None
    first_stamp: float | None = None  # when the backend emitted the first delta's first token
    final_at: float | None = None
    final_type: str | None = None
    final_code: str | None = None
    last_seq: int = 0
    attempt: int | None = None  # the attempt last_seq belongs to, where the page told it
    seq_errors: int = 0
    reconnects: int = 0
    delays: list[float] = field(default_factory=list)
    emitted: list[float] = field(default_factory=list)  # the stamp of each entry of `delays`
    live_delays: list[float] = field(default_factory=list)  # tokens emitted after the WS opened
    sections: dict[str, Any] = field(default_factory=stats.empty_sections)
    stored_status: str | None = None
    sections_ok: bool = False
    server_stats: dict[str, Any] | None = None
    problem: str | None = None

    @property
    def answer_started_at(self) -> float | None:
        """When the answer started for this visitor: `started` or first delta, whichever first."""
        candidates = [t for t in (self.started_at, self.first_delta_at) if t is not None]
        return min(candidates) if candidates else None

    @property
    def actual_wait(self) -> float | None:
        start = self.answer_started_at
        if start is None or self.submit_at is None:
            return None
        return start - self.submit_at

    @property
    def wait_after_told(self) -> float | None:
        """The wait from the moment the POST's answer told the estimate: what the estimate
        itself speaks of (actual_wait also counts the time the POST took)."""
        start = self.answer_started_at
        if start is None or self.submit_at is None or self.post_seconds is None:
            return None
        return start - (self.submit_at + self.post_seconds)

    @property
    def ttfd(self) -> float | None:
        if self.first_delta_at is None or self.submit_at is None:
            return None
        return self.first_delta_at - self.submit_at

    @property
    def ok(self) -> bool:
        """Answered in full: final `done`, stored as done, and every delta received exactly once."""
        return (
            self.final_type == "done"
            and self.stored_status == "done"
            and self.sections_ok
            and self.seq_errors == 0
            and self.problem is None
        )

    def summary(self) -> dict[str, Any]:
        """Everything but the per-token lists, for the JSON report."""
        return {
            "index": self.index,
            "slug": self.slug,
            "message_id": self.message_id,
            "submit_at": self.submit_at,
            "created_at": self.created_at,
            "post_status": self.post_status,
            "post_seconds": self.post_seconds,
            "page_seconds": self.page_seconds,
            "refusal": self.refusal,
            "predicted_wait": self.predicted_wait,
            "actual_wait": self.actual_wait,
            "eta_error": stats.eta_error(self.predicted_wait, self.actual_wait),
            "positions": self.positions,
            "position_rose": stats.position_rose(self.positions),
            "ttfd": self.ttfd,
            "ws_open_after": _since(self.ws_opened_at, self.submit_at),
            "started_after": _since(self.started_at, self.submit_at),
            "final_after": _since(self.final_at, self.submit_at),
            "final_type": self.final_type,
            "final_code": self.final_code,
            "deltas": self.last_seq,
            "tokens_stamped": len(self.delays),
            "delay_p50": stats.median(self.delays),
            "seq_errors": self.seq_errors,
            "reconnects": self.reconnects,
            "stored_status": self.stored_status,
            "sections_ok": self.sections_ok,
            "server_stats": self.server_stats,
            "problem": self.problem,
            "ok": self.ok,
        }


def _since(instant: float | None, origin: float | None) -> float | None:
    return None if instant is None or origin is None else instant - origin


def _json_object(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or {} for a body that is not one."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_code(body: dict[str, Any]) -> str | None:
    """The API's error code in a refusal's body (DESIGN 4.2: {"error": {"code": …}})."""
    error = body.get("error")
    return error.get("code") if isinstance(error, dict) else None


def _unix(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


# The stack is served over plain HTTP: one TLS context for every visitor's client, instead of
# one each (httpx loads the system's CA bundle for each new context, ~22 ms of this process's
# CPU per visitor, twenty seconds for a thousand before the rush could begin).
_PLAIN_HTTP = ssl.create_default_context()


class StackVisitor:
    """A browser-like visitor: its own cookie jar (session + csrftoken), one question."""

    def __init__(self, base_url: str, index: int, slug: str) -> None:
        self.base_url = base_url
        self.ws_base = base_url.replace("http://", "ws://", 1)
        self.visit = StackVisit(index=index, slug=slug)
        # A generous timeout: under the rush the web process answers submissions one by one.
        self.http = httpx.AsyncClient(base_url=base_url, timeout=120, verify=_PLAIN_HTTP)
        self._sockets: aiohttp.ClientSession | None = None

    @property
    def sockets(self) -> aiohttp.ClientSession:
        """The visitor's WebSocket client (the session cookie is sent explicitly)."""
        if self._sockets is None:
            self._sockets = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None, connect=60),
            )
        return self._sockets

    async def open(self) -> None:
        """GET / first, as a browser would: it sets the session and the CSRF cookie."""
        started = time.time()
        response = await self.http.get("/")
        self.visit.page_seconds = time.time() - started
        response.raise_for_status()
        self.http.headers["X-CSRFToken"] = self.http.cookies["csrftoken"]

    async def submit(self) -> None:
        visit = self.visit
        visit.submit_at = time.time()
        try:
            response = await self.http.post("/api/v1/conversations", json={"sample": visit.slug})
        except httpx.HTTPError as exc:
            visit.problem = f"submit failed: {type(exc).__name__}: {exc}"
            return
        visit.post_seconds = time.time() - visit.submit_at
        visit.post_status = response.status_code
        body = _json_object(response)
        if response.status_code != 201:
            visit.refusal = str(_error_code(body) or response.status_code)
            visit.problem = f"submission refused: {visit.refusal}"
            return
        message = body["message"]
        visit.conversation_id = body.get("id")
        visit.message_id = message["id"]
        visit.stream_url = message["stream_url"]
        visit.predicted_wait = message.get("eta_seconds")
        visit.created_at = _unix(message.get("created"))
        visit.positions.append(message.get("position"))

    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.http.cookies.items())

    async def stream(self, deadline: float) -> None:
        """Read the answer's events until the final one, reconnecting like a browser would."""
        visit = self.visit
        if visit.stream_url is None:
            return
        last_error = ""
        while visit.final_type is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                visit.problem = "stuck: no final event before the deadline"
                return
            url = self.ws_base + visit.stream_url
            if visit.last_seq:
                url += ("&" if "?" in url else "?") + f"after={visit.last_seq}"
                if visit.attempt is not None:
                    url += f"&attempt={visit.attempt}"
            try:
                async with asyncio.timeout(remaining):
                    await self._read(url)
            except TimeoutError:
                visit.problem = "stuck: no final event before the deadline"
                return
            except (OSError, aiohttp.ClientError) as exc:
                last_error = f"websocket: {type(exc).__name__}: {exc}"
            if visit.final_type is None:
                # A browser reconnects with ?after=<last seq>; so do we, and count it.
                visit.reconnects += 1
                if visit.reconnects > MAX_RECONNECTS:
                    visit.problem = last_error or "the stream kept closing without a final event"
                    return
                await asyncio.sleep(0.2)

    async def _read(self, url: str) -> None:
        # aiohttp's WebSocket client reads frames in C: the visitors' own cost per frame, paid
        # in this one process for every visitor at once, stays small next to the stack's.
        async with self.sockets.ws_connect(
            url,
            headers={"Cookie": self.cookie_header()},
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10),
            max_msg_size=0,
            autoping=True,
        ) as socket:
            opened_at = time.time()
            if self.visit.ws_opened_at is None:
                self.visit.ws_opened_at = opened_at
            async for frame in socket:
                # Timestamp before parsing: the parse is our cost, not the stack's.
                received = time.time()
                if frame.type is not aiohttp.WSMsgType.TEXT:
                    break
                self.on_event(json.loads(frame.data), received, opened_at)
                if self.visit.final_type is not None:
                    return

    def on_event(self, event: dict[str, Any], received: float, opened_at: float) -> None:
        visit = self.visit
        kind = event.get("type")
        if kind == "queued":
            visit.positions.append(event.get("position"))
        elif kind == "started":
            if visit.started_at is None:
                visit.started_at = received
        elif kind == "delta":
            seq = int(event.get("seq", -1))
            if seq != visit.last_seq + 1:
                visit.seq_errors += 1
                if seq <= visit.last_seq:
                    return  # a duplicate: applying it would corrupt the rebuilt answer
            visit.last_seq = seq
            stamps = stats.stamps_in(event.get("text", ""))
            if visit.first_delta_at is None:
                visit.first_delta_at = received
                visit.first_stamp = stamps[0] if stamps else None
            stats.apply_delta(visit.sections, event)
            for stamp in stamps:
                visit.delays.append(received - stamp)
                visit.emitted.append(stamp)
                if stamp >= opened_at:
                    visit.live_delays.append(received - stamp)
        elif kind in FINALS:
            visit.final_at = received
            visit.final_type = kind
            visit.final_code = event.get("code")

    async def verify(self) -> None:
        """Ask the API what it stored and compare it with what arrived over the socket."""
        visit = self.visit
        if visit.message_id is None:
            return
        try:
            response = await self.http.get(f"/api/v1/messages/{visit.message_id}")
            message = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            visit.problem = visit.problem or f"verify failed: {type(exc).__name__}"
            return
        visit.stored_status = message.get("status")
        visit.server_stats = message.get("stats")
        visit.sections_ok = stats.sections_match(visit.sections, message.get("sections"))
        if visit.created_at is None:
            visit.created_at = _unix(message.get("created"))

    async def run(self, deadline: float) -> None:
        await self.submit()
        await self.stream(deadline)

    async def refused(self) -> float | None:
        """POST broken JSON; the seconds until the API refused it as such, else None."""
        started = time.time()
        try:
            response = await self.http.post(
                "/api/v1/conversations",
                content=b"{",
                headers={"Content-Type": "application/json"},
            )
        except httpx.HTTPError:
            return None
        seconds = time.time() - started
        refused = _error_code(_json_object(response)) == "invalid_json"
        return seconds if response.status_code == 400 and refused else None

    async def aclose(self) -> None:
        await self.http.aclose()
        if self._sockets is not None:
            await self._sockets.close()


@dataclass
class StackRun:
    start: float
    end: float | None
    visits: list[StackVisit]

    @property
    def wall(self) -> float | None:
        """Until the last final event arrived (check `complete`: a stuck visitor never does)."""
        return None if self.end is None else self.end - self.start

    @property
    def complete(self) -> bool:
        return all(visit.final_at is not None for visit in self.visits)


async def run_visitors(base_url: str, slugs: list[str], timeout: float) -> StackRun:
    """All visitors submit at once (after each has loaded the page) and read to the end."""
    visitors = [StackVisitor(base_url, index, slug) for index, slug in enumerate(slugs)]
    try:
        await asyncio.gather(*(visitor.open() for visitor in visitors))
        start = time.time()
        deadline = time.monotonic() + timeout
        await asyncio.gather(*(visitor.run(deadline) for visitor in visitors))
        finals = [v.visit.final_at for v in visitors if v.visit.final_at is not None]
        end = max(finals) if finals else None
        await asyncio.gather(*(visitor.verify() for visitor in visitors))
    finally:
        await asyncio.gather(*(visitor.aclose() for visitor in visitors), return_exceptions=True)
    return StackRun(start=start, end=end, visits=[v.visit for v in visitors])


async def refused_at_once(base_url: str, count: int) -> list[float]:
    """`count` new visitors load the page, then all POST at once a body the API refuses at its
    first step (broken JSON): what answering that many POSTs costs the web server before any
    work, the floor of the rush's POST figures. The seconds of each refusal; a visitor answered
    otherwise counts as none."""
    visitors = [StackVisitor(base_url, index, "") for index in range(count)]
    try:
        await asyncio.gather(*(visitor.open() for visitor in visitors))
        answers = await asyncio.gather(*(visitor.refused() for visitor in visitors))
    finally:
        await asyncio.gather(*(visitor.aclose() for visitor in visitors), return_exceptions=True)
    return [seconds for seconds in answers if seconds is not None]


async def idle_visits(base_url: str, slug: str, repeats: int, timeout: float) -> list[StackVisit]:
    """One visitor at a time on an otherwise idle stack; each waits for its answer to end."""
    visits = []
    for index in range(repeats):
        run = await run_visitors(base_url, [slug], timeout)
        visits.append(run.visits[0])
        visits[-1].index = index
        # Let the worker finish persisting and releasing its slot before the next one.
        await asyncio.sleep(1.0)
    return visits


async def fetch_samples(base_url: str) -> list[dict[str, str]]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        response = await client.get("/api/v1/samples")
        response.raise_for_status()
        return list(response.json())
