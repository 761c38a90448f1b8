"""Server-rendered pages. Forms post here and redirect; htmx boosts them into page swaps."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST
from django.views.i18n import JavaScriptCatalog

from playground import api, exports, inputs, presenters, preview_image, rotation, services, slots
from playground.durations import format_wait
from playground.models import Conversation, Message
from playground.realtime import redis_clients
from playground.services import PlaygroundError
from playground.visitors import client_ip, session_key


def _status_context() -> dict[str, Any]:
    status = services.queue_status(recent=True)
    return {"status": status, "wait_text": format_wait(status["queue"]["eta_seconds"])}


def _home_context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    return {
        "samples": services.samples(),
        "history": services.history(request.session.session_key),
        "prompt_max_chars": settings.PROMPT_MAX_CHARS,
        **_status_context(),
        **extra,
    }


@require_GET
@ensure_csrf_cookie
def home(request: HttpRequest) -> HttpResponse:
    session_key(request)
    return render(request, "playground/home.html", _home_context(request))


@require_GET
def status_partial(request: HttpRequest) -> HttpResponse:
    return render(request, "playground/_status.html", _status_context())


@require_POST
def new_conversation(request: HttpRequest) -> HttpResponse:
    typed = request.POST.get("prompt") or ""
    try:
        asked = inputs.form_question(request.POST)
        message = services.submit(
            session_key=session_key(request),
            client_ip=client_ip(request),
            prompt=asked.prompt,
            sample=asked.sample,
        )
    except PlaygroundError as exc:
        context = _home_context(request, error=exc, prompt=typed)
        response = render(request, "playground/home.html", context, status=exc.status)
        if exc.retry_after is not None:
            response["Retry-After"] = str(exc.retry_after)
        return response
    return redirect("conversation", conversation_id=message.conversation_id)


def _conversation_context(
    request: HttpRequest, conversation: Conversation, **extra: Any
) -> dict[str, Any]:
    shown_turns = presenters.turns(conversation)
    return {
        "conversation": conversation,
        "turns": shown_turns,
        "title_repeats_question": presenters.title_repeats_question(conversation, shown_turns),
        "history": services.history(request.session.session_key),
        "share_url": services.share_url(conversation),
        "prompt_max_chars": settings.PROMPT_MAX_CHARS,
        **extra,
    }


@require_GET
@ensure_csrf_cookie
def conversation(request: HttpRequest, conversation_id: str) -> HttpResponse:
    try:
        found = services.get_owned_conversation(conversation_id, session_key(request))
    except PlaygroundError:
        return render(request, "playground/not_found.html", status=404)
    services.note_presence(list(found.messages.all()))
    return render(request, "playground/conversation.html", _conversation_context(request, found))


@require_POST
def send_message(request: HttpRequest, conversation_id: str) -> HttpResponse:
    try:
        found = services.get_owned_conversation(conversation_id, session_key(request))
    except PlaygroundError:
        return render(request, "playground/not_found.html", status=404)
    prompt = request.POST.get("prompt")
    try:
        answer = services.submit(
            session_key=session_key(request),
            client_ip=client_ip(request),
            prompt=prompt,
            conversation=found,
        )
    except PlaygroundError as exc:
        context = _conversation_context(request, found, error=exc, prompt=prompt or "")
        return render(request, "playground/conversation.html", context, status=exc.status)
    return _back(found.pk, answer)


@require_GET
def shared(request: HttpRequest, token: str) -> HttpResponse:
    try:
        found = services.get_shared_conversation(token)
    except PlaygroundError:
        return render(request, "playground/not_found.html", status=404)
    shown_turns = presenters.turns(found, share_token=found.share_token)
    context = {
        "conversation": found,
        "turns": shown_turns,
        "shared": True,
        "preview": presenters.page_preview(found, shown_turns),
        "preview_image": request.build_absolute_uri(
            reverse("shared_preview_image", kwargs={"token": token})
        ),
    }
    return render(request, "playground/conversation.html", context)


@require_GET
def shared_preview_image(request: HttpRequest, token: str) -> HttpResponse:
    """The shared conversation's link-preview picture (its page's og:image)."""
    try:
        found = services.get_shared_conversation(token)
    except PlaygroundError:
        return HttpResponseNotFound(content_type="text/plain")
    card = presenters.preview_card(found, presenters.turns(found, share_token=found.share_token))
    png = preview_image.render(card, preview_image.usable_fonts(settings.PREVIEW_FONTS))
    response = HttpResponse(png, content_type="image/png")
    # Previewers fetch it once per share; five minutes keeps a turned-off link from lingering.
    response["Cache-Control"] = "max-age=300"
    return response


ConversationView = Callable[[HttpRequest, Conversation], HttpResponse]


def _owned(request: HttpRequest, conversation_id: str) -> Conversation:
    return services.get_owned_conversation(conversation_id, session_key(request))


def _back(conversation_id: str, message: Message | None = None) -> HttpResponse:
    """The conversation page; at `message` when an action made or chose an answer or a
    question's version, so the page opens where the visitor acted instead of at the top (htmx
    keeps the place itself: stream.js)."""
    url = reverse("conversation", kwargs={"conversation_id": conversation_id})
    if message is None:
        return redirect(url)
    kind = "question" if message.role == Message.Role.USER else "answer"
    return redirect(f"{url}#{kind}-{message.pk}")


def _conversation_action(view: ConversationView) -> Callable[..., HttpResponse]:
    """POST-only actions on one's own conversation; someone else's is a 404 page."""

    @require_POST
    @wraps(view)
    def wrapper(request: HttpRequest, conversation_id: str) -> HttpResponse:
        try:
            found = _owned(request, conversation_id)
        except PlaygroundError:
            return render(request, "playground/not_found.html", status=404)
        try:
            return view(request, found)
        except PlaygroundError as exc:
            context = _conversation_context(request, found, error=exc)
            return render(request, "playground/conversation.html", context, status=exc.status)

    return wrapper


@_conversation_action
def rename(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    services.rename(conversation, request.POST.get("title"))
    return _back(conversation.pk)


@_conversation_action
def delete(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    services.delete_conversation(conversation)
    return redirect("home")


@_conversation_action
def new_share_link(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    services.new_share_link(conversation)
    return _back(conversation.pk)


@_conversation_action
def revoke_share_link(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    services.revoke_share_link(conversation)
    return _back(conversation.pk)


@_conversation_action
def edit_question(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    answer = services.edit_question(
        conversation,
        session_key=session_key(request),
        client_ip=client_ip(request),
        prompt=inputs.required_text(request.POST, "prompt"),
        question_id=inputs.message_id(request.POST, "message"),
    )
    return _back(conversation.pk, answer)


@require_GET
def export(request: HttpRequest, conversation_id: str, kind: str) -> HttpResponse:
    try:
        found = _owned(request, conversation_id)
    except PlaygroundError:
        return render(request, "playground/not_found.html", status=404)
    return exports.download(found, kind)


def _message_action(
    view: Callable[[HttpRequest, Message], Message | None],
) -> Callable[..., HttpResponse]:
    """POST actions on one of one's messages; the page opens at the message `view` returns."""

    @require_POST
    @wraps(view)
    def wrapper(request: HttpRequest, message_id: str) -> HttpResponse:
        try:
            message = services.get_owned_message(message_id, session_key(request))
        except PlaygroundError:
            return render(request, "playground/not_found.html", status=404)
        try:
            shown = view(request, message)
        except PlaygroundError as exc:
            context = _conversation_context(request, message.conversation, error=exc)
            return render(request, "playground/conversation.html", context, status=exc.status)
        return _back(message.conversation_id, shown)

    return wrapper


@_message_action
def cancel_message(request: HttpRequest, message: Message) -> Message:
    return services.cancel(message)


@_message_action
def regenerate(request: HttpRequest, message: Message) -> Message:
    return services.regenerate(
        message, session_key=session_key(request), client_ip=client_ip(request)
    )


@_message_action
def select(request: HttpRequest, message: Message) -> Message:
    services.select(message)
    return message


def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> HttpResponse:
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means "not ready"
        checks["database"] = f"error: {exc.__class__.__name__}"
    try:
        redis_clients.redis_client().ping()
        checks["redis"] = "ok"
        # Readiness is about health; a backend an operator disabled is still a healthy one.
        healthy = slots.healthy_backends(include_disabled=True)
        checks["backends"] = f"{len(healthy)}/{len(rotation.backends())} healthy"
        if not healthy:
            checks["backends"] = "error: " + checks["backends"]
    except Exception as exc:
        checks["redis"] = f"error: {exc.__class__.__name__}"
    ready = all(not value.startswith("error") for value in checks.values())
    return JsonResponse({"ready": ready, "checks": checks}, status=200 if ready else 503)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    message = gettext(
        "The form expired or the CSRF token is missing. Reload the page and try again."
    )
    if request.path.startswith("/api/"):
        return api.error_response("csrf", message, 403)
    return render(request, "playground/error.html", {"message": message}, status=403)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's refusals before any view runs: a body over DATA_UPLOAD_MAX_MEMORY_SIZE, too many
    form fields, a malformed multipart body."""
    if isinstance(exception, RequestDataTooBig):
        code, message = "prompt_too_long", gettext("The request body is too large.")
    elif isinstance(exception, TooManyFieldsSent | TooManyFilesSent):
        code, message = "invalid_params", gettext("The request has too many fields.")
    else:
        code, message = "bad_request", gettext("The request could not be read.")
    if request.path.startswith("/api/"):
        return api.error_response(code, message, 400)
    return render(request, "playground/error.html", {"message": message}, status=400)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return api.not_found(request)
    return render(request, "playground/not_found.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    message = gettext("Something went wrong on our side.")
    if request.path.startswith("/api/"):
        return api.error_response("server_error", message, 500)
    return render(request, "playground/error.html", {"message": message}, status=500)


# The page scripts' translations (domain djangojs, from LOCALE_PATHS only: not the admin's).
_catalog = JavaScriptCatalog.as_view(packages=["playground"])


@require_GET
def javascript_catalog(request: HttpRequest, language: str) -> HttpResponse:
    """One URL per language, named by the page that loads it: a browser that cached one
    language's catalog never serves it to a page in the other after a switch."""
    with translation.override(language):
        return _catalog(request)
