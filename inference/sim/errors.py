"""How a request can fail: TGI's error answers, axum's rejections of a body it cannot read, and
the ways a request ends without an answer (its client left, or a fault cut the connection)."""

from __future__ import annotations

from aiohttp import web


class InferError(Exception):
    """An error TGI reports as ErrorResponse: an HTTP status, or a final SSE event on streams."""

    def __init__(self, status: int, error_type: str, message: str, metric: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.metric = metric

    def body(self) -> dict[str, str]:
        return {"error": self.message, "error_type": self.error_type}


def validation_error(detail: str) -> InferError:
    return InferError(422, "validation", f"Input validation error: {detail}", "validation")


def overloaded_error() -> InferError:
    return InferError(429, "overloaded", "Model is overloaded", "overloaded")


def generation_error(detail: str) -> InferError:
    return InferError(
        424, "generation", f"Request failed during generation: {detail}", "generation"
    )


class Rejection(Exception):
    """A request that axum's JSON extractor rejects before TGI's code runs: plain text."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text

    def response(self) -> web.Response:
        return web.Response(status=self.status, text=self.text, content_type="text/plain")


class ClientGone(Exception):
    """The client closed the connection before the generation ended."""


class SimulatedDrop(Exception):
    """The fault injection asks to cut the connection."""
