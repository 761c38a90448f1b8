"""The operators' side stays in English whatever the browser asks for: its pages, the admin
and /metrics are for the site's own staff, and their texts are not translated."""

from __future__ import annotations

from collections.abc import Callable
from inspect import iscoroutinefunction
from typing import Any

from django.http import HttpRequest
from django.utils import translation
from django.utils.decorators import sync_and_async_middleware

OPERATOR_PATHS = ("/ops/", "/admin/", "/metrics")

Handler = Callable[[HttpRequest], Any]


def _in_english(request: HttpRequest) -> None:
    if request.path.startswith(OPERATOR_PATHS):
        translation.activate("en")
        request.LANGUAGE_CODE = "en"  # type: ignore[attr-defined]


@sync_and_async_middleware
def operators_in_english_middleware(get_response: Handler) -> Handler:
    """After LocaleMiddleware: undoes its choice of language on the operators' paths."""
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> Any:
            _in_english(request)
            return await get_response(request)

        return middleware

    def sync_middleware(request: HttpRequest) -> Any:
        _in_english(request)
        return get_response(request)

    return sync_middleware
