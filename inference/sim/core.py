"""What every route shares: the server's state (config, engine, metrics, stats), the permits of
`max_concurrent_requests`, starting a request's engine jobs, waiting for a job that is not
streamed, ending a stream, and accounting for how each request ended."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from aiohttp import web

from .answers import SimToken, choose_answer, tokenize_answer
from .config import SimConfig
from .engine import DROP, ERROR, KEEP_ALIVE, TOKEN, Engine, Job
from .errors import ClientGone, InferError, SimulatedDrop, generation_error, overloaded_error
from .generate_request import GenerateRequest, validate_request
from .metrics import Metrics
from .wire import abort


@dataclass
class Stats:
    """What `GET /sim/stats` reports, besides the engine's queue and batch sizes."""

    requests: int = 0
    active: int = 0
    peak_active: int = 0
    completed: int = 0
    dropped: int = 0
    overloaded: int = 0
    validation_errors: int = 0
    generation_errors: int = 0
    faults: int = 0


class Simulator:
    """The server state, and the machinery the routes of both protocols share."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.metrics = Metrics(config)
        self.stats = Stats()
        self.engine = Engine(config)
        self._rng = random.Random(config.seed)
        self._permits = 0

    # ---- lifecycle

    async def on_startup(self, app: web.Application) -> None:
        self.engine.start()

    async def on_shutdown(self, app: web.Application) -> None:
        await self.engine.close()

    # ---- the shared machinery

    @contextlib.contextmanager
    def permit(self, n: int) -> Iterator[None]:
        # TGI's permits come from a semaphore it never waits on: no slot, no queueing.
        if self._permits + n > self.config.max_concurrent_requests:
            raise overloaded_error()
        self._permits += n
        self.stats.active = self._permits
        self.stats.peak_active = max(self.stats.peak_active, self._permits)
        try:
            yield
        finally:
            self._permits -= n
            self.stats.active = self._permits

    def record_failure(self, error: InferError) -> None:
        if error.metric is not None:
            self.metrics.failure(error.metric)
        if error.error_type == "overloaded":
            self.stats.overloaded += 1
        elif error.error_type == "validation":
            self.stats.validation_errors += 1
        elif error.error_type == "generation":
            self.stats.generation_errors += 1

    def record_drop(self) -> None:
        self.metrics.failure("dropped")
        self.stats.dropped += 1

    @contextlib.contextmanager
    def request_jobs(self) -> Iterator[list[Job]]:
        """The engine jobs of one request (the handler adds them): they leave the engine however
        the handler ends, and a handler cancelled because its client left (handler_cancellation)
        counts as a dropped request unless every job had already settled."""
        jobs: list[Job] = []
        try:
            yield jobs
        except asyncio.CancelledError:
            if jobs and not all(job.settled for job in jobs):
                self.record_drop()
            raise
        finally:
            for job in jobs:
                self.engine.cancel(job)

    @contextlib.contextmanager
    def streaming_jobs(self) -> Iterator[list[Job]]:
        """`request_jobs` for a streamed response: a write that finds the connection closed
        (the client left, or never stayed) ends the handler and counts as a dropped request
        unless its job had already settled."""
        with self.request_jobs() as jobs:
            try:
                yield jobs
            except ConnectionError:
                if jobs and not jobs[0].settled:
                    self.record_drop()

    @staticmethod
    def event_stream(headers: dict[str, str] | None = None) -> web.StreamResponse:
        """A 200 event-stream response, with `headers` besides the event-stream ones."""
        return web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                **(headers or {}),
                "X-Accel-Buffering": "no",
            },
        )

    def count_request(self) -> None:
        self.metrics.inc("tgi_request_count")
        self.stats.requests += 1

    async def start_jobs(self, req: GenerateRequest, n: int) -> list[Job]:
        """Validate as TGI does once the permits are taken, then queue `n` jobs for prefill."""
        config = self.config
        if self.engine.closed:
            raise generation_error("Server error: the simulator is shutting down")
        if config.validation_ms > 0:
            await asyncio.sleep(config.validation_ms / 1000)
        validated = validate_request(req, config)
        self.metrics.observe("tgi_request_input_length", validated.input_length)
        self.metrics.observe("tgi_request_max_new_tokens", validated.chunk)
        faulty = self._rng.random() < config.fault_rate
        answer = choose_answer(req.inputs)
        jobs = []
        for _ in range(n):
            seed = req.seed if req.seed is not None else self._rng.getrandbits(64)
            # Splitting depends only on (seed, answer), so a fixed seed replays the same tokens.
            rng = random.Random(f"{seed}\x00{answer}")
            job = Job(
                tokens=tokenize_answer(answer, rng, split_tags=config.split_tags),
                max_new_tokens=validated.max_new_tokens,
                stop=list(req.stop),
                input_length=validated.input_length,
                reserved_tokens=validated.input_length + validated.chunk,
                seed=seed,
                stamp=config.stamp_emission_times,
                error_after=config.fault_error_after_tokens if faulty else None,
                drop_after=config.fault_drop_after_tokens if faulty else None,
                prefill_seconds=validated.input_length / config.prefill_tokens_per_second,
            )
            slow = config.fault_slow_start_seconds if faulty else 0.0
            self.engine.submit(job, job.prefill_seconds + slow)
            jobs.append(job)
        return jobs

    def record_success(self, job: Job, started: float) -> None:
        now = asyncio.get_running_loop().time()
        metrics = self.metrics
        timing = request_timing(job, started, now)
        metrics.inc("tgi_request_success")
        metrics.observe("tgi_request_duration", timing.total)
        metrics.observe("tgi_request_validation_duration", timing.validation)
        metrics.observe("tgi_request_queue_duration", timing.queue)
        metrics.observe("tgi_request_inference_duration", timing.inference)
        metrics.observe("tgi_request_mean_time_per_token_duration", timing.per_token)
        metrics.observe("tgi_request_generated_tokens", job.emitted)
        self.stats.completed += 1
        job.settled = True

    def fault_error(self, job: Job, emitted: int) -> InferError:
        self.stats.faults += 1
        job.settled = True
        return generation_error(
            f"Server error: simulated fault injected by the simulator after {emitted} tokens"
        )

    async def end_stream(self, response: web.StreamResponse, last: bytes) -> None:
        """Write the last bytes of a finished stream and end the response, `stream_end_ms` later.

        Called while the request holds its permit, which it keeps until the response has ended
        (as TGI does), through the delay even if the client leaves and the handler is cancelled.
        """
        with contextlib.suppress(ConnectionError):
            await response.write(last)
        if self.config.stream_end_ms > 0:
            await _sleep_through_cancellation(self.config.stream_end_ms / 1000)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()

    async def streamed_tokens(
        self, request: web.Request, response: web.StreamResponse, job: Job
    ) -> AsyncIterator[tuple[SimToken, str, str | None]]:
        """A streamed job's tokens as they come, each with its text and (on the last one) the
        finish reason; keep-alives are written meanwhile, which is also how a client that left
        during a long wait is noticed. A fault raises its error; a simulated drop cuts the
        connection; shutting down just ends the stream (no final event)."""
        while True:
            item = await job.outbox.get()
            kind = item[0]
            if kind == KEEP_ALIVE:
                await response.write(b":\n\n")
                continue
            if kind == TOKEN:
                _, token, text, finish = item
                yield token, text, finish
                if finish is not None:
                    return
                continue
            job.settled = True
            if kind == ERROR:
                raise self.fault_error(job, item[1])
            if kind == DROP:
                self.stats.faults += 1
                abort(request)
            return

    async def collect(self, request: web.Request, job: Job) -> list[tuple[SimToken, str]]:
        """Wait for a job that is not streamed; its tokens with their emitted texts."""
        tokens: list[tuple[SimToken, str]] = []
        while True:
            item = await job.outbox.get()
            kind = item[0]
            if kind == TOKEN:
                _, token, text, finish = item
                tokens.append((token, text))
                # Nothing is written until the end, so look at the connection to notice a
                # client that left (aiohttp does not cancel handlers unless asked to).
                if request.transport is None or request.transport.is_closing():
                    raise ClientGone
                if finish is not None:
                    return tokens
            elif kind == KEEP_ALIVE:
                continue
            elif kind == ERROR:
                raise self.fault_error(job, item[1])
            elif kind == DROP:
                job.settled = True
                raise SimulatedDrop
            else:
                job.settled = True
                raise generation_error("Server error: the simulator is shutting down")


@dataclass(frozen=True)
class Timing:
    """TGI's timings of one request, in seconds: for its metrics and its `x-*-time` headers."""

    total: float
    validation: float
    queue: float
    inference: float
    per_token: float


def request_timing(job: Job, started: float, now: float) -> Timing:
    # TGI's "start" is when the request entered a batch, i.e. before its prefill ran.
    inference_start = job.joined_at - job.prefill_seconds
    inference = now - inference_start
    return Timing(
        total=now - started,
        validation=job.queued_at - started,
        queue=max(inference_start - job.queued_at, 0.0),
        inference=inference,
        per_token=inference / max(job.emitted, 1),
    )


async def _sleep_through_cancellation(seconds: float) -> None:
    """Sleep for `seconds` even if cancelled meanwhile; the cancellation is raised after that."""
    sleeper = asyncio.ensure_future(asyncio.sleep(seconds))
    try:
        await asyncio.shield(sleeper)
    except asyncio.CancelledError:
        await sleeper
        raise
