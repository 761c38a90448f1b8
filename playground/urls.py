from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path
from django.views.decorators.cache import cache_page

from playground import api, views
from playground.ops import views as ops_views

ID = r"(?P<{}>[A-Za-z0-9_-]{{1,48}})"

api_patterns = [
    path("api/v1/samples", api.samples),
    path("api/v1/status", api.status),
    path("api/v1/conversations", api.conversations),
    re_path(rf"^api/v1/conversations/{ID.format('conversation_id')}$", api.conversation),
    re_path(rf"^api/v1/conversations/{ID.format('conversation_id')}/edit$", api.edit_question),
    re_path(rf"^api/v1/conversations/{ID.format('conversation_id')}/share$", api.share_link),
    re_path(rf"^api/v1/conversations/{ID.format('conversation_id')}/export$", api.export),
    re_path(rf"^api/v1/conversations/{ID.format('conversation_id')}/messages$", api.create_message),
    re_path(rf"^api/v1/messages/{ID.format('message_id')}$", api.message),
    re_path(rf"^api/v1/messages/{ID.format('message_id')}/cancel$", api.cancel_message),
    re_path(rf"^api/v1/messages/{ID.format('message_id')}/regenerate$", api.regenerate),
    re_path(rf"^api/v1/messages/{ID.format('message_id')}/select$", api.select),
    re_path(rf"^api/v1/shared/{ID.format('token')}$", api.shared),
]

page_patterns = [
    path("", views.home, name="home"),
    # The language switch (a POST that sets the language cookie) and the pages' scripts'
    # translations (djangojs), cached per language like any static file.
    path("i18n/", include("django.conf.urls.i18n")),
    re_path(
        r"^jsi18n/(?P<language>en|zh-hans)/$",
        cache_page(60 * 60)(views.javascript_catalog),
        name="javascript-catalog",
    ),
    path("status", views.status_partial, name="status_partial"),
    path("c/new", views.new_conversation, name="new_conversation"),
    re_path(rf"^c/{ID.format('conversation_id')}/$", views.conversation, name="conversation"),
    re_path(rf"^c/{ID.format('conversation_id')}/send$", views.send_message, name="send_message"),
    re_path(rf"^c/{ID.format('conversation_id')}/rename$", views.rename, name="rename"),
    re_path(rf"^c/{ID.format('conversation_id')}/delete$", views.delete, name="delete"),
    re_path(rf"^c/{ID.format('conversation_id')}/edit$", views.edit_question, name="edit"),
    re_path(
        rf"^c/{ID.format('conversation_id')}/share/new$", views.new_share_link, name="share_new"
    ),
    re_path(
        rf"^c/{ID.format('conversation_id')}/share/revoke$",
        views.revoke_share_link,
        name="share_revoke",
    ),
    re_path(
        rf"^c/{ID.format('conversation_id')}/export\.(?P<kind>md|json)$",
        views.export,
        name="export",
    ),
    re_path(rf"^m/{ID.format('message_id')}/cancel$", views.cancel_message, name="cancel"),
    re_path(rf"^m/{ID.format('message_id')}/regenerate$", views.regenerate, name="regenerate"),
    re_path(rf"^m/{ID.format('message_id')}/select$", views.select, name="select"),
    re_path(rf"^s/{ID.format('token')}/$", views.shared, name="shared"),
    re_path(
        rf"^s/{ID.format('token')}/preview\.png$",
        views.shared_preview_image,
        name="shared_preview_image",
    ),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", ops_views.prometheus_metrics, name="metrics"),
    path("ops/", include("playground.ops.urls")),
    path("admin/", admin.site.urls),
]

urlpatterns = api_patterns + page_patterns

handler400 = "playground.views.bad_request"
handler404 = "playground.views.page_not_found"
handler500 = "playground.views.server_error"
