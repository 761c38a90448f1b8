"""The command line: `python -m inference.sim`, one flag per `SimConfig` field plus the address."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
import sys
from typing import Any

from aiohttp import web

from .app import create_app
from .config import SimConfig

_HELP = {
    "model_id": "model id reported by /info (say that it is a simulator)",
    "tokens_per_second": "decode speed of a single stream (batch of 1)",
    "batch_slowdown": "alpha in t(B) = t(1) * (1 + alpha * (B - 1)) for B streams in the batch",
    "prefill_tokens_per_second": "prompt tokens per second of prefill (time to first token)",
    "validation_ms": "time spent validating each request",
    "stream_end_ms": "delay from a stream's final event to the end of its response (slot kept)",
    "max_concurrent_requests": "requests beyond this fail at once with `overloaded`",
    "max_input_tokens": "longest accepted prompt, in tokens (about 4 UTF-8 bytes each)",
    "max_total_tokens": "prompt plus min(max_new_tokens, 1024) must fit in this",
    "seed": "makes token splitting, request seeds and fault choice repeatable",
    "stamp_emission_times": "prefix each non-special token text with ⟦unix time⟧ when emitted",
    "split_tags": "emit the Reflection tags as ordinary text pieces, not special tokens",
    "fault_error_after_tokens": "send a `generation` error event after N tokens",
    "fault_drop_after_tokens": "close the connection after N tokens, without a final event",
    "fault_slow_start_seconds": "extra delay before the first token",
    "fault_rate": "probability that a request gets the configured faults",
}


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("", "none") else int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inference.sim",
        description="A TGI-compatible simulator of a Reflection-style model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on; 0 picks one")
    for spec in dataclasses.fields(SimConfig):
        flag = "--" + spec.name.replace("_", "-")
        options: dict[str, Any] = {"default": spec.default, "help": _HELP[spec.name]}
        # Annotations are strings here (from __future__ import annotations).
        if spec.type == "bool":
            options["action"] = argparse.BooleanOptionalAction
        elif spec.type == "int | None":
            options.update(type=_optional_int, metavar="N")
        elif spec.type == "float":
            options.update(type=float, metavar="X")
        elif spec.type == "int":
            options.update(type=int, metavar="N")
        parser.add_argument(flag, **options)
    return parser


async def _serve(config: SimConfig, host: str, port: int) -> None:
    app = create_app(config)
    # Cancelling a handler when its client disconnects is how a dropped stream frees its
    # slot even while it waits for its first token.
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=2.0, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        print(f"simulator listening on http://{shown}:{bound}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until Ctrl-C or SIGTERM."""
    args = vars(_parser().parse_args(argv))
    host = args.pop("host")
    port = args.pop("port")
    try:
        config = SimConfig(**args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config, host, port))
