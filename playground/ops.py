"""The operators' pages: the live dashboard (/ops/), its controls, and /metrics for Prometheus.

Every view under /ops/ is for staff only: an anonymous visitor is sent to the admin login, a
logged-in non-staff user gets a 403. Controls are small POST forms (CSRF-checked like any
form), each validated, applied, recorded in the audit log and answered with a redirect back
to the dashboard, or with the dashboard and a clear error (400) when the input is wrong.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from playground import controls, metrics, monitoring, services
from playground.controls import ControlError
from playground.models import Block, Conversation, Message
from playground.visitors import client_ip

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
        "data": monitoring.snapshot(),
        "backends": settings.TGI_URLS,
        "blocks": monitoring.active_blocks(),
        "default_concurrency": settings.GENERATION_CONCURRENCY,
        "banner_max": controls.BANNER_MAX_CHARS,
        "error": error,
        "form": request.POST if error else {},
    }
    return render(request, "ops/dashboard.html", context, status=status)


@staff_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
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
    return JsonResponse(monitoring.snapshot(since))


# --- controls -------------------------------------------------------------------------------


def _refused(request: HttpRequest, exc: ControlError) -> HttpResponse:
    return _dashboard(request, error=exc.message, status=400)


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
        except ControlError as exc:
            return _refused(request, exc)

    return wrapper


@control
def pause(request: HttpRequest) -> HttpResponse:
    banner = controls.clean_banner(request.POST.get("banner"))
    controls.set_paused(banner)
    controls.audit(request.user, "pause", banner=banner)
    return _done(request, "Intake paused: new visitors see the banner; queued work continues.")


@control
def resume(request: HttpRequest) -> HttpResponse:
    controls.set_paused(None)
    controls.audit(request.user, "resume")
    return _done(request, "Intake resumed.")


@control
def drain(request: HttpRequest) -> HttpResponse:
    controls.set_draining(True)
    controls.audit(request.user, "drain")
    return _done(request, "Draining: running answers finish, nothing new starts.")


@control
def undrain(request: HttpRequest) -> HttpResponse:
    controls.set_draining(False)
    controls.audit(request.user, "undrain")
    started = services.dispatch()
    return _done(request, f"Dispatch resumed ({started} started at once).")


@control
def concurrency(request: HttpRequest) -> HttpResponse:
    backend = controls.clean_backend(request.POST.get("backend"))
    before = controls.concurrency_override(backend)
    if "reset" in request.POST:
        controls.set_concurrency(backend, None)
        controls.audit(request.user, "concurrency_reset", backend, before=before)
        text = f"{backend} is back to GENERATION_CONCURRENCY ({settings.GENERATION_CONCURRENCY})."
    else:
        limit = controls.clean_concurrency(request.POST.get("concurrency"))
        controls.set_concurrency(backend, limit)
        controls.audit(request.user, "concurrency", backend, before=before, after=limit)
        text = f"{backend} now runs up to {limit} generations at once."
    services.dispatch()  # more room: the line moves at once, not at the next reconcile
    return _done(request, text)


@control
def backend_state(request: HttpRequest) -> HttpResponse:
    backend = controls.clean_backend(request.POST.get("backend"))
    enable = request.POST.get("action") == "enable"
    controls.set_backend_enabled(backend, enable)
    controls.audit(request.user, "enable_backend" if enable else "disable_backend", backend)
    if enable:
        services.dispatch()
        return _done(request, f"{backend} is back in rotation.")
    return _done(request, f"{backend} is out of rotation; what runs there finishes.")


@control
def cancel_message(request: HttpRequest) -> HttpResponse:
    message_id = str(request.POST.get("message_id") or "").strip()
    message = (
        Message.objects.filter(pk=message_id[:48], role=Message.Role.ASSISTANT).first()
        if message_id
        else None
    )
    if message is None:
        raise ControlError("No answer has that id.")
    if message.is_final:
        return _done(request, f"Answer {message.pk} had already ended ({message.status}).")
    result = services.cancel(message)
    controls.audit(request.user, "cancel", message.pk, status=result.status)
    return _done(request, f"Answer {message.pk} is {result.status}.")


def _session_of(reference: str) -> tuple[str, str]:
    """(session key, label) of the visitor behind a conversation or message id."""
    conversation = Conversation.objects.filter(pk=reference).first()
    if conversation is not None:
        return conversation.session_key, f"session of conversation {conversation.pk}"
    message = Message.objects.filter(pk=reference).first()
    if message is not None and message.session_key:
        return message.session_key, f"session of conversation {message.conversation_id}"
    raise ControlError("No conversation or message has that id.")


@control
def block(request: HttpRequest) -> HttpResponse:
    kind = request.POST.get("kind")
    value = str(request.POST.get("value") or "").strip()
    duration = controls.clean_duration(request.POST.get("duration"))
    reason = controls.clean_reason(request.POST.get("reason"))
    if kind == Block.Kind.IP:
        key = label = controls.clean_ip(value)
    elif kind == Block.Kind.SESSION:
        if not value:
            raise ControlError("Give the id of a conversation or message of that visitor.")
        key, label = _session_of(value[:48])
    else:
        raise ControlError("Block an IP address or a session.")
    created = controls.add_block(
        kind=kind, value=key, label=label, duration=duration, reason=reason, actor=request.user
    )
    controls.audit(
        request.user,
        "block",
        label,
        kind=kind,
        until=created.expires.isoformat(),
        reason=reason,
        block=created.pk,
    )
    return _done(request, f"Blocked {label} until {created.expires:%Y-%m-%d %H:%M} UTC.")


@control
def lift_block(request: HttpRequest, block_id: int) -> HttpResponse:
    found = Block.objects.filter(pk=block_id).first()
    if found is None:
        raise ControlError("No such block.")
    if found.active:
        found.expires = timezone.now()
        found.save(update_fields=["expires"])
        controls.audit(request.user, "lift_block", found.label or found.kind, block=found.pk)
    return _done(request, f"Block on {found.label or found.kind} lifted.")


# --- Prometheus -----------------------------------------------------------------------------


def _from_allowed_network(request: HttpRequest) -> bool:
    if not settings.NUM_PROXIES and "HTTP_X_FORWARDED_FOR" in request.META:
        # Relayed by a proxy we were not told about: its own (often local) address says
        # nothing about the client, so the network list cannot vouch for it.
        return False
    address = client_ip(request)
    if address is None:
        return False
    ip = ipaddress.ip_address(address)
    return any(ip in network for network in settings.METRICS_ALLOWED_NETWORKS)


def _bearer_matches(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


@never_cache
@require_GET
def prometheus(request: HttpRequest) -> HttpResponse:
    """Prometheus text for the whole playground (every process's numbers, from Redis)."""
    if not (_from_allowed_network(request) or _bearer_matches(request)):
        if settings.METRICS_TOKEN:
            response = HttpResponse(
                "A valid bearer token is required.\n", status=401, content_type="text/plain"
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        return HttpResponse(
            "Metrics are not available from this address.\n", status=403, content_type="text/plain"
        )
    body = metrics.render_prometheus(monitoring.current_gauges())
    return HttpResponse(body, content_type=metrics.PROMETHEUS_CONTENT_TYPE)


app_name = "ops"
urlpatterns = [
    path("", dashboard, name="dashboard"),
    path("data", data, name="data"),
    path("pause", pause, name="pause"),
    path("resume", resume, name="resume"),
    path("drain", drain, name="drain"),
    path("undrain", undrain, name="undrain"),
    path("backends/concurrency", concurrency, name="concurrency"),
    path("backends/state", backend_state, name="backend_state"),
    path("messages/cancel", cancel_message, name="cancel"),
    path("blocks", block, name="block"),
    path("blocks/<int:block_id>/lift", lift_block, name="lift_block"),
]
