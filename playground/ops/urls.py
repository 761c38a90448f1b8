"""/ops/: the operators' dashboard and its controls (/metrics is in playground/urls.py, at the
site's root where Prometheus expects it)."""

from __future__ import annotations

from django.urls import path

from playground.ops import views

app_name = "ops"
urlpatterns = [
    path("", views.index, name="dashboard"),
    path("data", views.data, name="data"),
    path("pause", views.pause, name="pause"),
    path("resume", views.resume, name="resume"),
    path("drain", views.drain, name="drain"),
    path("undrain", views.undrain, name="undrain"),
    path("backends/concurrency", views.concurrency, name="concurrency"),
    path("backends/state", views.backend_state, name="backend_state"),
    path("messages/cancel", views.cancel_message, name="cancel"),
    path("blocks", views.block, name="block"),
    path("blocks/<int:block_id>/lift", views.lift_block, name="lift_block"),
]
