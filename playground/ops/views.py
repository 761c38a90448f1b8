"""The operators' pages: the live dashboard (/ops/), its controls, and /metrics for Prometheus.

Every view under /ops/ is for staff only: an anonymous visitor is sent to the admin login, a
logged-in non-staff user gets a 403. Controls are small POST forms (CSRF-checked like any
form), each applied by ops/actions.py and answered with a redirect back to the dashboard, or
with the dashboard and a clear error (400) when the input is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from playground.ops import actions, dashboard, gauges, prometheus

View = Callable[..., HttpResponse]


def staff_required(view: View) -> View:
    """Anonymous: to the admin login (and back). Logged in but not staff: 403."""

    @wraps(view)
    @never_cache
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        if not (user.is_active and user.is_staff):
            return render(
                request,
                "playground/error.html",
                {"message": "The operators' dashboard is for staff accounts only."},
                status=403,
            )
        return view(request, *args, **kwargs)

    return wrapper


# --- the dashboard --------------------------------------------------------------------------


def _dashboard(
    request: HttpRequest, *, error: str | None = None, status: int = 200
) -> HttpResponse:
    context = {
        "data": dashboard.snapshot(),
        "backends": settings.TGI_URLS,
        "blocks": dashboard.active_blocks(),
        "default_concurrency": settings.GENERATION_CONCURRENCY,
        "banner_max": actions.BANNER_MAX_CHARS,
        "error": error,
        "form": request.POST if error else {},
    }
    return render(request, "ops/dashboard.html", context, status=status)


@staff_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return _dashboard(request)


@staff_required
@require_GET
def data(request: HttpRequest) -> HttpResponse:
    """The dashboard's numbers as JSON; `?since=<t>` limits the series to newer points."""
    try:
        since = float(request.GET["since"]) if request.GET.get("since") else None
    except ValueError:
        since = None
    if since is not None and not math.isfinite(since):
        since = None  # "nan" parses as a float but is no bound Redis accepts
    return JsonResponse(dashboard.snapshot(since))


# --- controls -------------------------------------------------------------------------------


def _done(request: HttpRequest, text: str) -> HttpResponse:
    messages.success(request, text)
    return redirect("ops:dashboard")


def control(view: View) -> View:
    """Staff only, POST only, and bad input answered with the dashboard and the error."""

    @staff_required
    @require_POST
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except actions.ControlError as exc:
            return _dashboard(request, error=exc.message, status=400)

    return wrapper


@control
def pause(request: HttpRequest) -> HttpResponse:
    actions.pause(request.user, request.POST.get("banner"))
    return _done(request, "Intake paused: new visitors see the banner; queued work continues.")


@control
def resume(request: HttpRequest) -> HttpResponse:
    actions.resume(request.user)
    return _done(request, "Intake resumed.")


@control
def drain(request: HttpRequest) -> HttpResponse:
    actions.drain(request.user)
    return _done(request, "Draining: running answers finish, nothing new starts.")


@control
def undrain(request: HttpRequest) -> HttpResponse:
    started = actions.undrain(request.user)
    return _done(request, f"Dispatch resumed ({started} started at once).")


@control
def concurrency(request: HttpRequest) -> HttpResponse:
    backend = request.POST.get("backend")
    if "reset" in request.POST:
        url = actions.reset_concurrency(request.user, backend)
        limit = settings.GENERATION_CONCURRENCY
        return _done(request, f"{url} is back to GENERATION_CONCURRENCY ({limit}).")
    url, limit = actions.set_concurrency(request.user, backend, request.POST.get("concurrency"))
    return _done(request, f"{url} now runs up to {limit} generations at once.")


@control
def backend_state(request: HttpRequest) -> HttpResponse:
    enable = request.POST.get("action") == "enable"
    url = actions.set_backend_enabled(request.user, request.POST.get("backend"), enable)
    if enable:
        return _done(request, f"{url} is back in rotation.")
    return _done(request, f"{url} is out of rotation; what runs there finishes.")


@control
def cancel_message(request: HttpRequest) -> HttpResponse:
    message = actions.find_answer(request.POST.get("message_id"))
    if message.is_final:
        return _done(request, f"Answer {message.pk} had already ended ({message.status}).")
    result = actions.cancel(request.user, message)
    return _done(request, f"Answer {message.pk} is {result.status}.")


@control
def block(request: HttpRequest) -> HttpResponse:
    created = actions.block(
        request.user,
        kind=request.POST.get("kind"),
        value=request.POST.get("value"),
        duration=request.POST.get("duration"),
        reason=request.POST.get("reason"),
    )
    return _done(request, f"Blocked {created.label} until {created.expires:%Y-%m-%d %H:%M} UTC.")


@control
def lift_block(request: HttpRequest, block_id: int) -> HttpResponse:
    lifted = actions.lift_block(request.user, block_id)
    return _done(request, f"Block on {lifted.label or lifted.kind} lifted.")


# --- Prometheus -----------------------------------------------------------------------------


@never_cache
@require_GET
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text for the whole playground (every process's numbers, from Redis)."""
    if not prometheus.may_read(request):
        if settings.METRICS_TOKEN:
            response = HttpResponse(
                "A valid bearer token is required.\n", status=401, content_type="text/plain"
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        return HttpResponse(
            "Metrics are not available from this address.\n", status=403, content_type="text/plain"
        )
    body = prometheus.render(gauges.current())
    return HttpResponse(body, content_type=prometheus.CONTENT_TYPE)
