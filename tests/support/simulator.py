"""Run the TGI simulator in a background thread on a real loopback port, for tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from aiohttp import web

from devtools.processes import free_port
from inference.sim import SimConfig, create_app


@contextmanager
def serving(app: web.Application, name: str = "test-server") -> Iterator[str]:
    """Serve an aiohttp app from a background thread on a free loopback port; its base URL."""
    port = free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    runner = web.AppRunner(app, access_log=None)

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name=name, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError(f"{name} did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@contextmanager
def running_simulator(**overrides: Any) -> Iterator[str]:
    config = SimConfig(**{"tokens_per_second": 400.0, "seed": 7, **overrides})
    with serving(create_app(config), name="simulator") as url:
        yield url


def sim_stats(url: str) -> dict[str, int]:
    return httpx.get(f"{url}/sim/stats", timeout=5).json()
