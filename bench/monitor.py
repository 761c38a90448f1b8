"""Opt-in diagnosis (`--redis-monitor`): a Redis MONITOR trace of the stack rush.

Every PUBLISH of a delta carries the simulator's emission stamps, and MONITOR timestamps each
command with the same machine clock, so the trace splits the delivery delay in two: emission →
PUBLISH (simulator, worker: parse, coalesce, persist) and PUBLISH → visitor (channel layer,
uvicorn, WebSocket). It also shows contention on the dispatch lock. MONITOR itself slows Redis
down, so figures from a monitored run are for diagnosis, not for the report.
"""

from __future__ import annotations

import base64
import contextlib
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import stats
from devtools.processes import redis_server_binary

# redis-cli prints non-printable bytes as \xNN; the stamp brackets ⟦ ⟧ are U+27E6 and U+27E7.
_STAMP = re.compile(rb"\\xe2\\x9f\\xa6([0-9]+\.[0-9]+)\\xe2\\x9f\\xa7")
_LINE = re.compile(rb'^(\d+\.\d+) \[\d+ ([^\]]+)\] "([^"]*)"(?: "((?:[^"\\]|\\.)*)")?')
LOCK_KEY = b"pg:dispatch-lock"
GROUP_PREFIX = b"asgi__group__msg."
_CELERY_BODY = re.compile(rb'\\"body\\": \\"([A-Za-z0-9+/=]+)\\"')


class RedisMonitor:
    """`redis-cli monitor` in its own process, writing the raw trace to a file."""

    def __init__(self, redis_url: str, path: Path) -> None:
        self.redis_url = redis_url
        self.path = path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisMonitor:
        cli = Path(redis_server_binary()).with_name("redis-cli")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "wb") as out:
            self.process = subprocess.Popen(
                [str(cli), "-u", self.redis_url, "monitor"],
                stdout=out,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        if self.process.poll() is None:
            self.process.kill()


def analyze(path: Path, start: float, end: float) -> dict[str, Any]:
    """Summaries of the trace between `start` and `end` (unix times)."""
    publish_delays: list[float] = []
    first_publish_delays: list[float] = []
    publishes = status_publishes = commands = lock_attempts = task_pushes = 0
    lock_holds: list[float] = []
    lock_failures = 0
    held_since: float | None = None
    for line, instant, _client, command, key in _commands(path):
        if start <= instant <= end:
            commands += 1
            if command == b"publish":
                if not key.startswith(GROUP_PREFIX):
                    continue  # Celery's own events, not the playground's
                publishes += 1
                found = [float(s) for s in _STAMP.findall(line)]
                if not found:
                    status_publishes += 1
                publish_delays.extend(instant - stamp for stamp in found)
                if found:
                    first_publish_delays.append(instant - found[0])
            elif command == b"set" and key == LOCK_KEY:
                lock_attempts += 1
                # SET NX succeeds only on a free lock; every other attempt is a failed poll
                # after which redis-py sleeps its `sleep` interval (0.1 s by default).
                if held_since is None:
                    held_since = instant
                else:
                    lock_failures += 1
            elif command == b"del" and key == LOCK_KEY and held_since is not None:
                lock_holds.append(instant - held_since)
                held_since = None
            elif command == b"lpush":
                task_pushes += 1
    span = max(end - start, 1e-9)
    return {
        "commands_per_second": commands / span,
        "publishes": publishes,
        "status_publishes": status_publishes,
        "emission_to_publish_ms": _ms_summary(publish_delays),
        "emission_to_publish_first_token_of_delta_ms": _ms_summary(first_publish_delays),
        "dispatch_lock": {
            "acquisitions": len(lock_holds),
            "failed_attempts": lock_failures,
            "attempts": lock_attempts,
            "hold_ms": _ms_summary(lock_holds),
            "held_fraction": sum(lock_holds) / span,
        },
        "list_pushes": task_pushes,
    }


def timelines(path: Path, message_ids: list[str]) -> dict[str, dict[str, float]]:
    """For each message, when each step of its start showed up in Redis (unix times).

    - `slot_acquired`: the dispatcher's Lua script leased a slot (ZADD of the id);
    - `task_enqueued`: the Celery task for it was pushed onto the broker list;
    - `worker_first_command`: the next backend-info read after that, from another
      connection: the worker has claimed the message and begun `run_generation`;
    - `publisher_reset`: the generation's event loop runs (DEL of its delta log);
    - `started_published`, `first_delta_published`: PUBLISHes on its group;
    - `first_delta_emitted`: the simulator's stamp of that first delta's first token.
    """
    wanted = {mid.encode(): mid for mid in message_ids}
    found: dict[str, dict[str, float]] = {mid: {} for mid in message_ids}
    enqueued_by: dict[str, bytes] = {}
    waiting_worker: list[tuple[str, bytes]] = []
    for line, instant, client, command, key in _commands(path):
        if command == b"get" and key.startswith(b"pg:backend:info:"):
            for mid, enqueuer in list(waiting_worker):
                if client != enqueuer:
                    found[mid].setdefault("worker_first_command", instant)
                    waiting_worker.remove((mid, enqueuer))
            continue
        if command == b"lpush":
            body = _CELERY_BODY.search(line)
            if body is None:
                continue
            try:
                decoded = base64.b64decode(body.group(1))
            except ValueError:
                continue
            for raw, mid in wanted.items():
                if raw in decoded and "task_enqueued" not in found[mid]:
                    found[mid]["task_enqueued"] = instant
                    enqueued_by[mid] = client
                    waiting_worker.append((mid, client))
            continue
        for raw, mid in wanted.items():
            if raw not in line:
                continue
            steps = found[mid]
            if command == b"zadd" and key.startswith(b"pg:slots:"):
                steps.setdefault("slot_acquired", instant)
            elif command == b"del" and key.startswith(b"pg:deltas:"):
                steps.setdefault("publisher_reset", instant)
            elif command == b"publish" and key.startswith(GROUP_PREFIX):
                stamps = _STAMP.findall(line)
                if stamps and "first_delta_published" not in steps:
                    steps["first_delta_published"] = instant
                    steps["first_delta_emitted"] = float(stamps[0])
                elif b"started" in line:
                    steps.setdefault("started_published", instant)
    return found


def _ms_summary(values: list[float]) -> dict[str, float | int | None]:
    return stats.in_ms(stats.summarize(values))


def _commands(path: Path) -> Iterator[tuple[bytes, float, bytes, bytes, bytes]]:
    """Each command of a MONITOR trace: (its line, unix time, client, command, first key)."""
    with open(path, "rb") as trace:
        for line in trace:
            match = _LINE.match(line)
            if match is not None:
                yield (
                    line,
                    float(match.group(1)),
                    match.group(2),
                    match.group(3).lower(),
                    (match.group(4) or b""),
                )
