"""The floor: the same visitors streaming straight from the simulator through an ideal queue.

No web stack, no database, no broker, no channel layer: one process, an asyncio.Semaphore of
the stack's slot count as the line, and the project's own TGI client and tag parser, so the
floor differs from the stack only by what the stack adds between the backend and the visitor.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from bench import stats
from inference.client import BackendError, SamplingParams, TGIClient
from inference.parser import TagParser
from inference.prompt import build_prompt

# The stack asks for settings.MAX_NEW_TOKENS, 2048 by default; so must the floor (a profile
# that caps the answers caps both).
DEFAULT_MAX_NEW_TOKENS = 2048


@dataclass
class FloorVisit:
    index: int
    slug: str
    start_at: float = 0.0  # the common start (the rush) or this visitor's own (idle)
    acquired_at: float | None = None
    first_delta_at: float | None = None
    first_stamp: float | None = None
    done_at: float | None = None
    tokens: int = 0
    finish_reason: str | None = None
    error: str | None = None
    delays: list[float] = field(default_factory=list)

    @property
    def ttfd(self) -> float | None:
        return None if self.first_delta_at is None else self.first_delta_at - self.start_at

    def summary(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "slug": self.slug,
            "waited": None if self.acquired_at is None else self.acquired_at - self.start_at,
            "ttfd": self.ttfd,
            "done_after": None if self.done_at is None else self.done_at - self.start_at,
            "tokens": self.tokens,
            "finish_reason": self.finish_reason,
            "delay_p50": stats.median(self.delays),
            "error": self.error,
        }


async def stream_one(
    sim_url: str,
    prompt: str,
    visit: FloorVisit,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    stop_after_first_delta: bool = False,
) -> None:
    """Stream one answer, timing the first visible delta and every token's delivery delay."""
    parser = TagParser()
    try:
        async with (
            TGIClient(sim_url, read_timeout=120) as client,
            client.generate_stream(
                build_prompt(prompt), SamplingParams(max_new_tokens=max_new_tokens)
            ) as events,
        ):
            async for event in events:
                received = time.time()
                visit.tokens += 1
                stamps = stats.stamps_in(event.token.text)
                for stamp in stamps:
                    visit.delays.append(received - stamp)
                # "First delta" means what it means on the stack: the parser's first piece
                # of section text, not the opening tag that carries no text.
                if visit.first_delta_at is None and any(d.text for d in parser.feed(event.text)):
                    visit.first_delta_at = received
                    visit.first_stamp = stamps[0] if stamps else None
                    if stop_after_first_delta:
                        break
                if event.finish_reason is not None:
                    visit.finish_reason = event.finish_reason
        visit.done_at = time.time()
    except BackendError as exc:
        visit.error = f"{exc.code}: {exc}"


@dataclass
class FloorRun:
    start: float
    end: float | None
    visits: list[FloorVisit]

    @property
    def wall(self) -> float | None:
        return None if self.end is None else self.end - self.start


async def rush(
    sim_url: str,
    visitors: list[tuple[int, str, str]],
    slots: int,
    timeout: float,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> FloorRun:
    """`visitors` are (index, slug, prompt) in line order; all arrive at the same instant."""
    line = asyncio.Semaphore(slots)
    visits = [FloorVisit(index=index, slug=slug) for index, slug, _ in visitors]

    async def visitor(visit: FloorVisit, prompt: str) -> None:
        async with line:
            visit.acquired_at = time.time()
            await stream_one(sim_url, prompt, visit, max_new_tokens)

    start = time.time()
    for visit in visits:
        visit.start_at = start
    # Tasks start in creation order and the semaphore is FIFO, so the line order is kept.
    tasks = [
        asyncio.create_task(visitor(visit, prompt))
        for visit, (_, _, prompt) in zip(visits, visitors, strict=True)
    ]
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*tasks)
    except TimeoutError:
        for visit in visits:
            if visit.done_at is None and visit.error is None:
                visit.error = "timeout"
    ends = [visit.done_at for visit in visits if visit.done_at is not None]
    return FloorRun(start=start, end=max(ends) if ends else None, visits=visits)


async def idle(
    sim_url: str,
    slug: str,
    prompt: str,
    repeats: int,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> list[FloorVisit]:
    """One visitor at a time on the idle simulator, timed to the first delta only."""
    visits = []
    for index in range(repeats):
        visit = FloorVisit(index=index, slug=slug, start_at=time.time())
        visit.acquired_at = visit.start_at
        await stream_one(sim_url, prompt, visit, max_new_tokens, stop_after_first_delta=True)
        visits.append(visit)
        # Closing the stream early cancels it; give the simulator a moment to drop it.
        await asyncio.sleep(0.3)
    return visits
