"""The JSON API of DESIGN 4.2: thin views over services."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext, pgettext
from django.views.decorators.csrf import ensure_csrf_cookie

from playground import exports, inputs, services
from playground.services import PlaygroundError
from playground.visitors import client_ip, session_key

View = Callable[..., HttpResponse]


def error_response(
    code: str, message: str, status: int, retry_after: int | None = None
) -> JsonResponse:
    response = JsonResponse({"error": {"code": code, "message": message}}, status=status)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def api_view(*methods: str) -> Callable[[View], View]:
    """Allow only `methods`, make sure the visitor has a session, and turn refusals into JSON."""

    def decorate(view: View) -> View:
        @wraps(view)
        @ensure_csrf_cookie
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                either = pgettext("between two HTTP methods", "or")
                allowed = f" {either} ".join(methods)
                message = gettext("Use %(methods)s here.") % {"methods": allowed}
                response = error_response("method_not_allowed", message, 405)
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return view(request, *args, **kwargs)
            except PlaygroundError as exc:
                return error_response(exc.code, exc.message, exc.status, exc.retry_after)

        return wrapper

    return decorate


FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def read_json(request: HttpRequest) -> dict[str, Any]:
    """The request's fields: a JSON object, or form fields (`curl -F prompt=…`) as strings."""
    try:
        if request.content_type in FORM_TYPES:
            # Django has parsed (and, for multipart, consumed) the body already: the CSRF
            # check reads the form's token.
            return {key: request.POST.get(key) for key in request.POST}
        body = request.body
    except RequestDataTooBig:
        raise PlaygroundError(
            "prompt_too_long", gettext("The request body is too large.")
        ) from None
    try:
        data = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        raise PlaygroundError(
            "invalid_json", gettext("The request body is not valid JSON.")
        ) from None
    if not isinstance(data, dict):
        raise PlaygroundError("invalid_params", gettext("The request body must be a JSON object."))
    return data


@api_view("GET")
def samples(request: HttpRequest) -> HttpResponse:
    data = [{"slug": s.slug, "title": s.title, "prompt": s.prompt} for s in services.samples()]
    return JsonResponse(data, safe=False)


@api_view("GET")
def status(request: HttpRequest) -> HttpResponse:
    return JsonResponse(services.queue_status())


@api_view("GET", "POST")
def conversations(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        found = services.history(session_key(request))
        return JsonResponse({"conversations": [services.conversation_summary(c) for c in found]})
    return create_conversation(request)


def create_conversation(request: HttpRequest) -> HttpResponse:
    asked = inputs.question(read_json(request))
    message = services.submit(
        session_key=session_key(request),
        client_ip=client_ip(request),
        prompt=asked.prompt,
        sample=asked.sample,
    )
    conversation = message.conversation
    return JsonResponse(
        {
            "id": conversation.pk,
            "share_url": services.share_url(conversation),
            "message": services.message_payload(message),
        },
        status=201,
    )


@api_view("GET", "PATCH", "DELETE")
def conversation(request: HttpRequest, conversation_id: str) -> HttpResponse:
    found = services.get_owned_conversation(conversation_id, session_key(request))
    if request.method == "DELETE":
        services.delete_conversation(found)
        return JsonResponse({"deleted": conversation_id})
    if request.method == "PATCH":
        services.rename(found, inputs.text(read_json(request), "title"))
        return JsonResponse(services.conversation_summary(found))
    services.note_presence(list(found.messages.all()))
    return JsonResponse(services.conversation_payload(found))


@api_view("POST")
def edit_question(request: HttpRequest, conversation_id: str) -> HttpResponse:
    found = services.get_owned_conversation(conversation_id, session_key(request))
    body = read_json(request)
    message = services.edit_question(
        found,
        session_key=session_key(request),
        client_ip=client_ip(request),
        prompt=inputs.required_text(body, "prompt"),
        question_id=inputs.message_id(body, "message"),
    )
    return JsonResponse({"message": services.message_payload(message)}, status=201)


@api_view("POST", "DELETE")
def share_link(request: HttpRequest, conversation_id: str) -> HttpResponse:
    """POST makes a new link (the old one stops working); DELETE revokes the link."""
    found = services.get_owned_conversation(conversation_id, session_key(request))
    if request.method == "DELETE":
        services.revoke_share_link(found)
        return JsonResponse({"share_url": None})
    return JsonResponse({"share_url": services.new_share_link(found)})


@api_view("GET")
def export(request: HttpRequest, conversation_id: str) -> HttpResponse:
    found = services.get_owned_conversation(conversation_id, session_key(request))
    kind = request.GET.get("format", "json")
    if kind not in ("json", "md"):
        raise PlaygroundError("invalid_params", gettext("The format must be json or md."))
    return exports.download(found, kind)


@api_view("POST")
def create_message(request: HttpRequest, conversation_id: str) -> HttpResponse:
    found = services.get_owned_conversation(conversation_id, session_key(request))
    message = services.submit(
        session_key=session_key(request),
        client_ip=client_ip(request),
        prompt=inputs.text(read_json(request), "prompt"),
        conversation=found,
    )
    return JsonResponse({"message": services.message_payload(message)}, status=201)


@api_view("GET")
def message(request: HttpRequest, message_id: str) -> HttpResponse:
    found = services.get_owned_message(message_id, session_key(request))
    services.note_presence([found])
    return JsonResponse(services.message_payload(found))


@api_view("POST")
def regenerate(request: HttpRequest, message_id: str) -> HttpResponse:
    found = services.get_owned_message(message_id, session_key(request))
    message = services.regenerate(
        found, session_key=session_key(request), client_ip=client_ip(request)
    )
    return JsonResponse({"message": services.message_payload(message)}, status=201)


@api_view("POST")
def select(request: HttpRequest, message_id: str) -> HttpResponse:
    found = services.get_owned_message(message_id, session_key(request))
    services.select(found)
    return JsonResponse(services.message_payload(found))


@api_view("POST")
def cancel_message(request: HttpRequest, message_id: str) -> HttpResponse:
    found = services.get_owned_message(message_id, session_key(request))
    return JsonResponse(services.message_payload(services.cancel(found)))


@api_view("GET")
def shared(request: HttpRequest, token: str) -> HttpResponse:
    found = services.get_shared_conversation(token)
    return JsonResponse(services.shared_payload(found))


def not_found(request: HttpRequest) -> HttpResponse:
    return error_response("not_found", gettext("There is nothing here."), 404)
