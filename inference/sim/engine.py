"""The engine: TGI's continuous batching on one asyncio task, with the timing model described in
the package docstring. Each request's generations are jobs, which the engine admits to the batch
and steps."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from .answers import EOT_ID, SimToken
from .config import SimConfig

logger = logging.getLogger(__name__)

STAMP_FORMAT = "⟦{:.6f}⟧"
KEEP_ALIVE_SECONDS = 15.0

# The engine talks to the request handlers (in `tgi` and `openai`) only through each job's
# outbox, whose items are tuples that start with their kind: (TOKEN, token, text, finish_reason
# or None), (ERROR, tokens emitted), (DROP, tokens emitted), (SHUTDOWN,) and (KEEP_ALIVE,).
TOKEN = "token"
ERROR = "error"
DROP = "drop"
SHUTDOWN = "shutdown"
KEEP_ALIVE = "keep-alive"


@dataclass(eq=False)
class Job:
    """One sequence to generate: its tokens to come, its limits and faults, and its progress."""

    tokens: list[SimToken]
    max_new_tokens: int
    stop: list[str]
    input_length: int
    reserved_tokens: int
    seed: int
    stamp: bool
    error_after: int | None
    drop_after: int | None
    prefill_seconds: float
    outbox: asyncio.Queue[tuple[Any, ...]] = field(default_factory=asyncio.Queue)
    emitted: int = 0
    generated: list[str] = field(default_factory=list)  # non-special texts, for generated_text
    tail: str = ""  # the end of everything generated, for stop sequences
    done: bool = False  # out of the engine: finished, failed or cancelled
    settled: bool = False  # the handler has accounted for its outcome
    finish_reason: str | None = None
    timer: asyncio.TimerHandle | None = None
    queued_at: float = 0.0
    joined_at: float = 0.0
    last_item_at: float = 0.0  # when the engine last gave the handler something to send


def _report_engine_exit(task: asyncio.Task[None]) -> None:
    # Every stream would hang without the engine, so a crash must at least be loud.
    if not task.cancelled() and task.exception() is not None:
        logger.error("simulator engine stopped", exc_info=task.exception())


class Engine:
    """Runs decode steps for the batch; requests join it after their prefill."""

    def __init__(self, config: SimConfig) -> None:
        self._config = config
        self._waiting: set[Job] = set()  # validated, prefill timer running
        self._ready: list[Job] = []  # prefilled, join at the next step boundary
        self._active: dict[Job, None] = {}  # the running batch, in join order
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = False

    @property
    def queue_size(self) -> int:
        return len(self._waiting) + len(self._ready)

    @property
    def batch_size(self) -> int:
        return len(self._active)

    @property
    def batch_max_tokens(self) -> int:
        return sum(job.reserved_tokens for job in self._active)

    def step_seconds(self, batch: int) -> float:
        config = self._config
        return (1.0 / config.tokens_per_second) * (1.0 + config.batch_slowdown * (batch - 1))

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run(), name="sim-engine"),
            loop.create_task(self._keep_alive(), name="sim-keep-alive"),
        ]
        for task in self._tasks:
            task.add_done_callback(_report_engine_exit)

    async def close(self) -> None:
        """Stop stepping and end every job without a final event (as a dying server would)."""
        self.closed = True
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for job in [*self._waiting, *self._ready, *self._active]:
            self.cancel(job)
            job.outbox.put_nowait((SHUTDOWN,))

    def submit(self, job: Job, delay: float) -> None:
        loop = asyncio.get_running_loop()
        job.queued_at = job.last_item_at = loop.time()
        job.timer = loop.call_later(delay, self._prefilled, job)
        self._waiting.add(job)

    def cancel(self, job: Job) -> None:
        """Take a job out wherever it is; its slot in the batch is free from the next step."""
        job.done = True
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None
        self._waiting.discard(job)
        if job in self._ready:
            self._ready.remove(job)
        self._active.pop(job, None)

    def _prefilled(self, job: Job) -> None:
        job.timer = None
        self._waiting.discard(job)
        self._ready.append(job)
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            if not self._active:
                while not self._ready:
                    self._wake.clear()
                    await self._wake.wait()
                now = loop.time()
                deadline = now
                self._admit(now, time.time())
            else:
                # Sleeping even when late (sleep(0) just yields) lets the handlers send what
                # the last step produced; a late engine must not hog the loop to catch up.
                await asyncio.sleep(max(deadline - loop.time(), 0.0))
                now = loop.time()
                wall = time.time()
                for job in list(self._active):
                    self._advance(job, now, wall)
                self._admit(now, wall)
            if self._active:
                # Deadlines advance from the previous deadline, not from `now`, so sleep
                # overshoot does not accumulate; a loop that fell behind steps at once.
                deadline = max(deadline + self.step_seconds(len(self._active)), now)

    def _admit(self, now: float, wall: float) -> None:
        ready, self._ready = self._ready, []
        for job in ready:
            job.joined_at = now
            self._active[job] = None
            # The prefill forward pass yields the first token.
            self._advance(job, now, wall)

    async def _keep_alive(self) -> None:
        # One timer for all streams instead of a timeout around every token: axum sends a
        # comment after KEEP_ALIVE_SECONDS without events, e.g. during a long prefill.
        loop = asyncio.get_running_loop()
        while True:
            interval = KEEP_ALIVE_SECONDS
            await asyncio.sleep(min(1.0, interval / 4))
            now = loop.time()
            for job in (*self._waiting, *self._ready, *self._active):
                if now - job.last_item_at >= interval:
                    job.last_item_at = now
                    job.outbox.put_nowait((KEEP_ALIVE,))

    def _advance(self, job: Job, now: float, wall: float) -> None:
        job.last_item_at = now
        n = job.emitted
        if job.error_after is not None and n >= job.error_after:
            self.cancel(job)
            job.outbox.put_nowait((ERROR, n))
            return
        if job.drop_after is not None and n >= job.drop_after:
            self.cancel(job)
            job.outbox.put_nowait((DROP, n))
            return
        token = job.tokens[n]
        job.emitted = n + 1
        if not token.special:
            job.generated.append(token.text)
        # Like TGI's StoppingCriteria: length first, then EOS, then stop sequences, which match
        # only at the very end of the output so far (special token texts included).
        finish = None
        if job.emitted >= job.max_new_tokens:
            finish = "length"
        elif token.id == EOT_ID:
            finish = "eos_token"
        elif job.stop:
            keep = max(len(stop) for stop in job.stop)
            job.tail = (job.tail + token.text)[-keep:] if keep else ""
            if any(job.tail.endswith(stop) for stop in job.stop):
                finish = "stop_sequence"
        text = token.text
        if job.stamp and not token.special:
            text = STAMP_FORMAT.format(wall) + text
        if finish is not None:
            job.finish_reason = finish
            self.cancel(job)
        job.outbox.put_nowait((TOKEN, token, text, finish))
