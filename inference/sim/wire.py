"""Bytes on the wire, as both simulated servers write and read them: compact JSON, Server-Sent
Events, request bodies read as axum's JSON extractor reads them, and a connection cut short."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .errors import Rejection


def json_bytes(payload: Any) -> bytes:
    # serde_json writes compact JSON and leaves non-ASCII characters as they are.
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sse(payload: Any) -> bytes:
    return b"data: " + json_bytes(payload) + b"\n\n"


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status, body=json_bytes(payload), content_type="application/json", headers=headers
    )


async def read_json(request: web.Request) -> Any:
    """Read the body as axum's Json extractor would, with its plain-text rejections."""
    mime = request.content_type.lower()
    if not (
        mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))
    ):
        raise Rejection(415, "Expected request with `Content-Type: application/json`")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise Rejection(413, "Failed to buffer the request body: length limit exceeded") from exc
    try:
        return json.loads(raw, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejection(400, f"Failed to parse the request body as JSON: {exc}") from exc


def _not_json(constant: str) -> Any:
    # Python accepts NaN and Infinity; serde_json (and the JSON spec) do not.
    raise ValueError(f"invalid number {constant}")


def abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
