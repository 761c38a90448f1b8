"""TGI's own routes: `POST /generate_stream`, `/generate` and the compat route `POST /` (streamed
or not), `GET /info`, the health routes, and `GET /metrics`."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from aiohttp import web

from .answers import SimToken
from .config import (
    MAX_BEST_OF,
    MAX_CLIENT_BATCH_SIZE,
    MAX_STOP_SEQUENCES,
    ROUTER_NAME,
    TGI_VERSION,
    VALIDATION_WORKERS,
)
from .core import Simulator, request_timing
from .engine import Job
from .errors import ClientGone, InferError, Rejection, SimulatedDrop, validation_error
from .generate_request import GenerateRequest, parse_generate_request
from .wire import abort, json_response, read_json, sse


class TGIRoutes:
    """The handlers of TGI's routes, on the shared simulator state."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    # ---- small routes

    async def info(self, request: web.Request) -> web.Response:
        config = self.sim.config
        return json_response(
            {
                "model_id": config.model_id,
                "model_sha": None,
                "model_pipeline_tag": "text-generation",
                "max_concurrent_requests": config.max_concurrent_requests,
                "max_best_of": MAX_BEST_OF,
                "max_stop_sequences": MAX_STOP_SEQUENCES,
                "max_input_tokens": config.max_input_tokens,
                "max_total_tokens": config.max_total_tokens,
                "validation_workers": VALIDATION_WORKERS,
                "max_client_batch_size": MAX_CLIENT_BATCH_SIZE,
                "router": ROUTER_NAME,
                "version": TGI_VERSION,
                "sha": None,
                "docker_label": None,
            }
        )

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def metrics_route(self, request: web.Request) -> web.Response:
        engine = self.sim.engine
        text = self.sim.metrics.render(
            {
                "tgi_queue_size": engine.queue_size,
                "tgi_batch_current_size": engine.batch_size,
                "tgi_batch_current_max_tokens": engine.batch_max_tokens,
            }
        )
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    # ---- generation routes

    async def generate(self, request: web.Request) -> web.StreamResponse:
        try:
            req = parse_generate_request(await read_json(request), compat=False)
        except Rejection as rejection:
            return rejection.response()
        return await self._generate(request, req)

    async def generate_stream(self, request: web.Request) -> web.StreamResponse:
        try:
            req = parse_generate_request(await read_json(request), compat=False)
        except Rejection as rejection:
            return rejection.response()
        return await self._generate_stream(request, req)

    async def compat_generate(self, request: web.Request) -> web.StreamResponse:
        try:
            req = parse_generate_request(await read_json(request), compat=True)
        except Rejection as rejection:
            return rejection.response()
        if req.return_full_text is None:
            # TGI's default for `/` follows the Hub pipeline tag, which is text-generation here.
            req.return_full_text = True
        if req.stream:
            return await self._generate_stream(request, req)
        return await self._generate(request, req, as_list=True)

    async def _generate_stream(
        self, request: web.Request, req: GenerateRequest
    ) -> web.StreamResponse:
        started = asyncio.get_running_loop().time()
        self.sim.count_request()
        response = self.sim.event_stream(
            {"x-compute-type": _compute_type(), "x-compute-characters": str(len(req.inputs))}
        )
        with self.sim.streaming_jobs() as jobs:
            try:
                # Axum sends the headers before the stream yields anything, errors included.
                await response.prepare(request)
                if (req.best_of if req.best_of is not None else 1) != 1:
                    raise validation_error("`best_of` != 1 is not supported when streaming tokens")
                if req.decoder_input_details:
                    raise validation_error(
                        "`decoder_input_details` == true is not supported when streaming tokens"
                    )
                with self.sim.permit(1):
                    jobs.extend(await self.sim.start_jobs(req, 1))
                    await self._stream_job(request, response, req, jobs[0], started)
            except InferError as error:
                self.sim.record_failure(error)
                with contextlib.suppress(ConnectionError):
                    await response.write(sse(error.body()))
        return response

    async def _stream_job(
        self,
        request: web.Request,
        response: web.StreamResponse,
        req: GenerateRequest,
        job: Job,
        started: float,
    ) -> None:
        index = 0
        async for token, text, finish in self.sim.streamed_tokens(request, response, job):
            index += 1
            if finish is None:
                event = {
                    "index": index,
                    "token": _token_json(token, text),
                    "generated_text": None,
                    "details": None,
                }
                await response.write(sse(event))
                continue
            # TGI records success before it yields the final event.
            self.sim.record_success(job, started)
            generated = "".join(job.generated)
            if req.return_full_text:
                generated = req.inputs + generated
            details = None
            if req.details:
                details = {
                    "finish_reason": finish,
                    "generated_tokens": job.emitted,
                    "seed": job.seed if req.sampling else None,
                    "input_length": job.input_length,
                }
            final = {
                "index": index,
                "token": _token_json(token, text),
                "generated_text": generated,
                "details": details,
            }
            await self.sim.end_stream(response, sse(final))

    async def _generate(
        self, request: web.Request, req: GenerateRequest, *, as_list: bool = False
    ) -> web.StreamResponse:
        started = asyncio.get_running_loop().time()
        self.sim.count_request()
        best_of = req.best_of if req.best_of is not None else 1
        with self.sim.request_jobs() as jobs:
            try:
                if best_of > MAX_BEST_OF:
                    raise validation_error(
                        f"`best_of` must be > 0 and <= {MAX_BEST_OF}. Given: {best_of}"
                    )
                n = max(best_of, 1)
                # A best_of=n request holds n permits, as in TGI.
                with self.sim.permit(n):
                    jobs.extend(await self.sim.start_jobs(req, n))
                    outcomes = await self._collect_all(request, jobs)
                    for job in jobs:
                        self.sim.record_success(job, started)
            except InferError as error:
                self.sim.record_failure(error)
                return json_response(error.body(), status=error.status)
            except SimulatedDrop:
                self.sim.stats.faults += 1
                abort(request)
                return web.Response()  # goes nowhere: the connection is closed
            except ClientGone:
                self.sim.record_drop()
                return web.Response()

        # Like best_of in TGI: the most likely sequence wins, the others come as extras.
        ranked = sorted(
            zip(jobs, outcomes, strict=True),
            key=lambda pair: sum(token.logprob for token, _ in pair[1]),
            reverse=True,
        )
        best_job, best_tokens = ranked[0]
        prefix = req.inputs if req.return_full_text else ""
        payload: dict[str, Any] = {"generated_text": prefix + "".join(best_job.generated)}
        if req.details or req.decoder_input_details:
            details = self._details(req, best_job, best_tokens)
            if best_of > 1:
                details["best_of_sequences"] = [
                    {"generated_text": prefix + "".join(job.generated)}
                    | self._details(req, job, tokens)
                    for job, tokens in ranked[1:]
                ]
            payload["details"] = details
        timing = request_timing(best_job, started, asyncio.get_running_loop().time())
        headers = {
            "x-compute-type": _compute_type(),
            "x-compute-time": repr(timing.total),
            "x-compute-characters": str(len(req.inputs)),
            "x-total-time": _millis(timing.total),
            "x-validation-time": _millis(timing.validation),
            "x-queue-time": _millis(timing.queue),
            "x-inference-time": _millis(timing.inference),
            "x-time-per-token": _millis(timing.per_token),
            "x-prompt-tokens": str(best_job.input_length),
            "x-generated-tokens": str(best_job.emitted),
        }
        # The compat route wraps the GenerateResponse in a list, as api-inference does.
        return json_response([payload] if as_list else payload, headers=headers)

    def _details(
        self, req: GenerateRequest, job: Job, tokens: list[tuple[SimToken, str]]
    ) -> dict[str, Any]:
        return {
            "finish_reason": job.finish_reason,
            "generated_tokens": job.emitted,
            "seed": job.seed if req.sampling else None,
            # Prefill logprobs need TGI's --enable-prefill-logprobs; without it, this is empty.
            "prefill": [],
            "tokens": [_token_json(token, text) for token, text in tokens],
        }

    async def _collect_all(
        self, request: web.Request, jobs: list[Job]
    ) -> list[list[tuple[SimToken, str]]]:
        if len(jobs) == 1:
            return [await self.sim.collect(request, jobs[0])]
        tasks = [asyncio.ensure_future(self.sim.collect(request, job)) for job in jobs]
        try:
            return await asyncio.gather(*tasks)
        finally:
            # gather leaves the other sequences running when one fails.
            for task in tasks:
                task.cancel()


def _token_json(token: SimToken, text: str) -> dict[str, Any]:
    return {"id": token.id, "text": text, "logprob": token.logprob, "special": token.special}


def _millis(seconds: float) -> str:
    return str(int(seconds * 1000))


def _compute_type() -> str:
    return os.environ.get("COMPUTE_TYPE", "gpu+optimized")
