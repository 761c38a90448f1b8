"""One long-lived event loop per process for the worker's asynchronous work.

A Celery worker runs each generation in one of its threads. Giving every generation an event
loop of its own (`asyncio.run`) made each one open fresh connections to Redis and the channel
layer before its first token, and made a dozen loops in a dozen threads take
turns at the GIL for every token: a thread whose socket was ready waited for the others'
switch intervals. All generations of a process now share this one loop in one thread, with
warm connection pools, and the worker's threads just wait for their generation's result.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# Database writes at the end of a generation run in helper threads (Django's ORM is
# synchronous); every concurrent generation may need one at the same moment.
HELPER_THREADS = 64

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_owner_pid: int | None = None


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.set_default_executor(
        ThreadPoolExecutor(max_workers=HELPER_THREADS, thread_name_prefix="playground-aio-helper")
    )
    loop.call_soon(ready.set)
    loop.run_forever()


def background_loop() -> asyncio.AbstractEventLoop:
    """This process's shared loop, started on first use (and again in a forked child)."""
    global _loop, _owner_pid
    with _lock:
        if _loop is None or _owner_pid != os.getpid() or _loop.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            thread = threading.Thread(
                target=_serve, args=(loop, ready), name="playground-aio", daemon=True
            )
            thread.start()
            ready.wait()
            _loop, _owner_pid = loop, os.getpid()
        return _loop


def call_soon(callback: Callable[[], Any]) -> None:
    """Run `callback` on the shared loop soon, from any thread; nothing if it never started."""
    with _lock:
        loop = _loop if _owner_pid == os.getpid() else None
    if loop is not None and not loop.is_closed():
        loop.call_soon_threadsafe(callback)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the shared loop and wait for its result, from synchronous code."""
    loop = background_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coroutine.close()
        raise RuntimeError("aio.run() would wait for the loop it is called from")
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result()
