"""The operators' pages: the live dashboard (/ops/), its controls, and /metrics for Prometheus.

Every view under /ops/ is for staff only: an anonymous visitor is sent to the admin login, a
logged-in non-staff user gets a 403. Controls are small POST forms (CSRF-checked like any
form), each applied by ops/actions.py and answered with a redirect back to the dashboard, or
with the dashboard and a clear error (400) when the input is wrong.

A control that stops something for visitors (pausing intake, draining, disabling a backend,
cancelling an answer, a block) is checked first and then asked about once more: a POST
without `confirmed=yes` changes nothing and answers with a page that says what will happen
and repeats the form, confirmed. The dashboard's script asks in a dialog instead and sends
the form confirmed, so the question is the same with or without JavaScript.
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

from playground import controls
from playground.ops import actions, dashboard, gauges, prometheus, units

View = Callable[..., HttpResponse]

CONFIRMED_FIELD = "confirmed"


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
    data = dashboard.snapshot()
    context = {
        "data": data,
        "latency_text": units.latency_texts(data["latency"]),
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


def _ask_first(
    request: HttpRequest, question: str, consequence: str, button: str, quote: str = ""
) -> HttpResponse | None:
    """None once the operator confirmed; until then, the page that asks (changing nothing)."""
    if request.POST.get(CONFIRMED_FIELD) == "yes":
        return None
    fields = [
        (name, value)
        for name, values in request.POST.lists()
        if name not in ("csrfmiddlewaretoken", CONFIRMED_FIELD)
        for value in values
    ]
    context = {
        "question": question,
        "consequence": consequence,
        "button": button,
        "quote": quote,
        "action": request.path,
        "fields": fields,
        "confirmed_field": CONFIRMED_FIELD,
    }
    return render(request, "ops/confirm.html", context)


@control
def pause(request: HttpRequest) -> HttpResponse:
    banner = actions.clean_banner(request.POST.get("banner"))
    # The same form changes the banner while paused: only closing intake is asked about.
    if controls.pause_banner() is None and (
        asked := _ask_first(
            request,
            "Pause intake?",
            "New visitors see the banner below and cannot ask; queued and running answers "
            "continue.",
            "Pause intake",
            quote=banner,
        )
    ):
        return asked
    actions.pause(request.user, banner)
    return _done(request, "Intake paused: new visitors see the banner; queued work continues.")


@control
def resume(request: HttpRequest) -> HttpResponse:
    actions.resume(request.user)
    return _done(request, "Intake resumed.")


@control
def drain(request: HttpRequest) -> HttpResponse:
    if asked := _ask_first(
        request,
        "Drain?",
        "No new generation starts until you stop draining; running answers finish and the "
        "line keeps its order.",
        "Drain",
    ):
        return asked
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
    url = actions.clean_backend(request.POST.get("backend"))
    if not enable and (
        asked := _ask_first(
            request,
            f"Take {url} out of rotation?",
            "Answers running there finish; nothing new starts there until you enable it.",
            "Disable",
        )
    ):
        return asked
    actions.set_backend_enabled(request.user, url, enable)
    if enable:
        return _done(request, f"{url} is back in rotation.")
    return _done(request, f"{url} is out of rotation; what runs there finishes.")


@control
def cancel_message(request: HttpRequest) -> HttpResponse:
    message = actions.find_answer(request.POST.get("message_id"))
    if message.is_final:
        return _done(request, f"Answer {message.pk} had already ended ({message.status}).")
    where = f" (backend {message.backend})" if message.backend else ""
    if asked := _ask_first(
        request,
        f"Cancel answer {message.pk}?",
        f"It is {message.status}{where}. The visitor sees it stop, with what was written so far.",
        "Cancel the answer",
        quote=message.prompt[:200],
    ):
        return asked
    result = actions.cancel(request.user, message)
    return _done(request, f"Answer {message.pk} is {result.status}.")


@control
def block(request: HttpRequest) -> HttpResponse:
    wanted = actions.clean_block(
        kind=request.POST.get("kind"),
        value=request.POST.get("value"),
        duration=request.POST.get("duration"),
        reason=request.POST.get("reason"),
    )
    if asked := _ask_first(
        request,
        f"Block {wanted.label} for {wanted.length_text}?",
        "Their new questions are refused (403 blocked) until then; a block can be lifted early.",
        "Block",
        quote=wanted.reason,
    ):
        return asked
    created = actions.block(request.user, wanted)
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
