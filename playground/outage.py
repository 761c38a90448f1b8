"""A Redis that cannot be reached is an outage of ours, not a visitor's mistake: 503, not 500.

Redis holds the line's slots, the rate limits, the live logs and Celery's queue. While it is
away (a restart, a network cut) a request that needs it gets a 503 with a sentence saying so
and a Retry-After, as JSON under /api/, as a page elsewhere, and as plain text for /metrics.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.deprecation import MiddlewareMixin
from django.utils.translation import gettext_lazy

from playground import services

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
MESSAGE = gettext_lazy(
    "The playground cannot take or show questions for a moment: a service it relies on is "
    "restarting. Please try again in a few seconds."
)


class RedisOutageMiddleware(MiddlewareMixin):
    """Turns an unreachable Redis (or Celery broker) in a view into a 503."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, services.OUTAGE_ERRORS):
            return None
        # redis-py's repr of its errors leaves out their message ("network:TimeoutError").
        log.warning(
            "%s %s: Redis is unreachable: %s: %s",
            request.method,
            request.path,
            type(exception).__name__,
            exception,
        )
        response = unavailable_response(request)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response


def unavailable_response(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"error": {"code": "unavailable", "message": MESSAGE}}, status=503)
    if request.path.startswith("/metrics"):
        return HttpResponse(f"{MESSAGE}\n", status=503, content_type="text/plain")
    return render(request, "playground/error.html", {"message": MESSAGE}, status=503)
