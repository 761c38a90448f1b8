"""The streaming engine of one generation: read the backend, parse the tags, coalesce,
persist and publish, watch for Stop and renew the slot lease; what the generation ended with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from inference.backends import open_client
from inference.client import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    OverloadedError,
    SamplingParams,
)
from inference.parser import Delta, TagParser, merge_deltas
from playground import rotation, slots
from playground.models import Message
from playground.realtime import cancel_flags, crowds, delta_log, redis_clients
from playground.services.errors import (
    ERROR_MESSAGES,
    in_english,
    quietly,
)

log = logging.getLogger(__name__)

OVERLOAD_RETRIES = 6
OVERLOAD_BACKOFF_SECONDS = 0.5
CANCEL_POLL_SECONDS = 0.1
# A lease renewal that failed (Redis away) is tried again this soon.
LEASE_RETRY_SECONDS = 1.0


# The phase a section's text belongs to; loose text outside the tags changes nothing.
SECTION_PHASES = {"thinking": "thinking", "reflection": "reflecting", "output": "answering"}


@dataclass
class Outcome:
    """What a generation ended with, written to the row by generation.py."""

    status: str = Message.Status.DONE
    error_code: str = ""
    error_message: str = ""
    finish_reason: str = ""
    tokens: int = 0
    generated_tokens: int | None = None
    first_token_at: datetime | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    sections: dict[str, Any] = field(default_factory=dict)
    # Seconds per phase (thinking, reflecting, answering), as the text arrived.
    phase_seconds: dict[str, float] = field(default_factory=dict)
    requeue: bool = False
    interrupted: bool = False  # the worker is shutting down: back in line, to start afresh
    handed_on: bool = False  # the slot was released and the line dispatched already


class AnswerStream:
    """One generation's stream, on the worker's shared event loop: three tasks that end
    together. The reader reads the backend and parses the tags; the flusher publishes what
    arrives within STREAM_FLUSH_INTERVAL of a publish as one delta (longer for an answer
    watched by a crowd, see realtime.crowds); the watcher stops the
    reader on a Stop (or the worker shutting down) and renews the slot lease."""

    def __init__(
        self,
        publisher: delta_log.StreamPublisher,
        outcome: Outcome,
        backend: str,
        prompt: str,
        params: SamplingParams,
    ) -> None:
        self.publisher = publisher
        self.outcome = outcome
        self.backend = backend
        self.prompt = prompt
        self.params = params
        self.loop = asyncio.get_running_loop()
        self.parser = TagParser()
        self.pending: list[Delta] = []
        self.wake = asyncio.Event()
        self.reading_done = False
        self.publishing = asyncio.Lock()
        self.next_flush_at = self.loop.time()
        # The watcher is stopped by this flag and event, never by cancelling it: redis-py can
        # swallow a cancellation that lands during a command, and a watcher that lived on in
        # the worker's shared loop would renew the lease of a finished answer, holding its
        # GPU slot.
        self.stop_watching = False
        self.wake_watcher = asyncio.Event()
        self.cancels = cancel_flags.cancel_watch(CANCEL_POLL_SECONDS)
        self.crowd = crowds.crowd_watch()
        self.reader: asyncio.Task[None] | None = None
        self.phase: str | None = None
        self.phase_since = 0.0

    async def run(self) -> None:
        """Stream the answer to its end; the outcome says how it ended."""
        message_id, outcome = self.publisher.message_id, self.outcome
        flusher = asyncio.create_task(self._flush_forever())
        reader = self.reader = asyncio.create_task(self._read())
        self.cancels.watch(message_id, self.wake_watcher)
        self.crowd.watch(message_id)
        watcher = asyncio.create_task(self._watch())
        try:
            await reader
        except asyncio.CancelledError:
            if not reader.cancelled():
                raise
            if not outcome.interrupted:
                outcome.status = Message.Status.CANCELLED
        except BackendError as exc:
            _record_backend_error(outcome, self.backend, exc)
        finally:
            self.cancels.unwatch(message_id)
            self.crowd.unwatch(message_id)
            self.stop_watching = True
            self.wake_watcher.set()
            closing = self.parser.close()
            self._time_phases(closing, ended=True)
            self.pending.extend(closing)
            self.reading_done = True
            self.wake.set()
            await flusher
            try:
                await watcher
            except Exception:
                # Its last lease renewal or cancel check failed; the answer is unaffected.
                log.warning("the watcher of %s failed", message_id, exc_info=True)
        if outcome.status == Message.Status.DONE and not outcome.finish_reason:
            outcome.status = Message.Status.ERROR
            outcome.error_code = "incomplete_stream"
            outcome.error_message = in_english(ERROR_MESSAGES["incomplete_stream"])

    async def _flush(self) -> None:
        # Everything pending goes out as one publish, in order: one publish at a time.
        async with self.publishing:
            batch = merge_deltas(self.pending)
            self.pending.clear()
            if batch:
                await self.publisher.publish_deltas(batch)
                watchers = self.crowd.size(self.publisher.message_id)
                self.next_flush_at = self.loop.time() + crowds.flush_interval(watchers)

    async def _flush_forever(self) -> None:
        # Publishes what arrived within the interval after a publish, merged into one delta.
        while True:
            await self.wake.wait()
            delay = self.next_flush_at - self.loop.time()
            if delay > 0 and not self.reading_done:
                await asyncio.sleep(delay)
            self.wake.clear()
            await self._flush()
            if self.reading_done and not self.pending:
                return

    async def _read(self) -> None:
        # TGI's /generate_stream, or an OpenAI-compatible chat route for `openai+` backends:
        # both clients yield the same events and raise the same BackendErrors.
        outcome = self.outcome
        async with open_client(
            self.backend,
            connect_timeout=settings.TGI_CONNECT_TIMEOUT,
            read_timeout=settings.TGI_READ_TIMEOUT,
            api_key=settings.TGI_API_KEY,
        ) as client:
            for attempt in range(OVERLOAD_RETRIES + 1):
                try:
                    async with client.generate_stream(self.prompt, self.params) as events:
                        async for event in events:
                            if outcome.first_token_at is None:
                                outcome.first_token_at = timezone.now()
                            outcome.tokens += 1
                            if event.text:
                                await self._take(event.text)
                            if event.finish_reason is not None:
                                outcome.finish_reason = event.finish_reason
                                outcome.generated_tokens = event.generated_tokens
                    return
                except OverloadedError:
                    # TGI refuses at once when its own semaphore is full (another client may
                    # share it). Nothing was written yet, so waiting and retrying loses nothing.
                    if outcome.tokens or attempt == OVERLOAD_RETRIES:
                        raise
                    await asyncio.sleep(OVERLOAD_BACKOFF_SECONDS * 2**attempt)

    def _time_phases(self, deltas: list[Delta], *, ended: bool = False) -> None:
        """Adds the time since the last change of section to the phase it belonged to."""
        now = self.loop.time()
        for delta in deltas:
            phase = SECTION_PHASES.get(delta.section)
            if phase is None or phase == self.phase:
                continue
            self._close_phase(now)
            self.phase, self.phase_since = phase, now
        if ended:
            self._close_phase(now)
            self.phase = None

    def _close_phase(self, now: float) -> None:
        if self.phase is not None:
            spent = self.outcome.phase_seconds.get(self.phase, 0.0) + now - self.phase_since
            self.outcome.phase_seconds[self.phase] = round(spent, 3)

    async def _take(self, text: str) -> None:
        deltas = self.parser.feed(text)
        self._time_phases(deltas)
        self.pending.extend(deltas)
        if not self.pending:
            return
        if self.loop.time() >= self.next_flush_at and not self.publishing.locked():
            # A token after a quiet spell goes out from the reader itself: a hop to the
            # flusher task would wait for every other stream the loop serves.
            await self._flush()
        else:
            self.wake.set()

    async def _watch(self) -> None:
        # Cooperative stop (the loop's cancel watch wakes it) and lease renewal.
        message_id, loop = self.publisher.message_id, self.loop
        renew_every = slots.lease_seconds() / 3
        renewed = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.wake_watcher.wait(), renewed + renew_every - loop.time()
                )
            if self.stop_watching:
                return
            if self.cancels.cancelled(message_id):
                # A Stop, or this worker shutting down: then the answer goes back in line.
                interrupted = self.cancels.interrupted(message_id)
                self.outcome.interrupted = self.outcome.requeue = interrupted
                assert self.reader is not None
                self.reader.cancel()
                return
            if loop.time() - renewed >= renew_every:
                try:
                    await slots.arenew_slot(self.backend, message_id)
                    renewed = loop.time()
                except redis_clients.REDIS_DOWN as exc:
                    # Again in a second: the lease must be back soon after Redis is.
                    log.warning("could not renew the lease of %s: %r", message_id, exc)
                    renewed = loop.time() - renew_every + LEASE_RETRY_SECONDS


def _record_backend_error(outcome: Outcome, backend: str, exc: BackendError) -> None:
    # What the backend said is for operators (the log); visitors get a sentence of ours. A
    # backend's error body can hold anything: internal addresses, stack traces, model paths.
    log.warning("backend %s failed an answer (%s): %s", backend, exc.code, exc)
    if isinstance(exc, BackendUnavailableError | BackendTimeoutError):
        quietly(lambda: rotation.mark_down(backend, str(exc)), "take a backend out of rotation")
        if outcome.tokens == 0:
            # The answer never started: put it back in line (same place) for another backend
            # or for this one when it comes back, instead of failing the visitor at once.
            outcome.requeue = True
    outcome.status = Message.Status.ERROR
    outcome.error_code = exc.code
    outcome.error_message = in_english(
        ERROR_MESSAGES.get(exc.code, ERROR_MESSAGES["backend_error"])
    )
