"""The simulator as an aiohttp application: one shared `Simulator`, the routes of both protocols
on it, and the simulator's own extensions (`GET /sim/stats`, `GET /dcgm/metrics`)."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from .config import PAYLOAD_LIMIT, SimConfig
from .core import Simulator
from .metrics import render_dcgm
from .openai import OpenAIRoutes
from .tgi import TGIRoutes
from .wire import json_response

SIMULATOR_KEY = web.AppKey("simulator", Simulator)


class ExtensionRoutes:
    """Routes no real server has: for tests to watch the simulator, and for GPU dashboards."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    async def dcgm_metrics(self, request: web.Request) -> web.Response:
        """Simulated GPUs in dcgm-exporter's format, busy in step with the batch."""
        text = render_dcgm(self.sim.engine.batch_size)
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    async def sim_stats(self, request: web.Request) -> web.Response:
        payload = dataclasses.asdict(self.sim.stats)
        payload["queued"] = self.sim.engine.queue_size
        payload["batch"] = self.sim.engine.batch_size
        return json_response(payload)


def create_app(config: SimConfig | None = None) -> web.Application:
    """The simulator as an aiohttp application; the engine starts with the app."""
    sim = Simulator(config or SimConfig())
    tgi = TGIRoutes(sim)
    openai = OpenAIRoutes(sim)
    extensions = ExtensionRoutes(sim)
    app = web.Application(client_max_size=PAYLOAD_LIMIT)
    app[SIMULATOR_KEY] = sim
    app.on_startup.append(sim.on_startup)
    app.on_shutdown.append(sim.on_shutdown)
    app.router.add_post("/", tgi.compat_generate)
    app.router.add_post("/generate", tgi.generate)
    app.router.add_post("/generate_stream", tgi.generate_stream)
    app.router.add_get("/", tgi.health)
    app.router.add_get("/health", tgi.health)
    app.router.add_get("/ping", tgi.health)
    app.router.add_get("/info", tgi.info)
    app.router.add_get("/metrics", tgi.metrics_route)
    app.router.add_get("/v1/models", openai.models)
    app.router.add_post("/v1/chat/completions", openai.chat_completions)
    app.router.add_get("/sim/stats", extensions.sim_stats)
    app.router.add_get("/dcgm/metrics", extensions.dcgm_metrics)
    return app
