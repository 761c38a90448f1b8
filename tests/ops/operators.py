"""Operators and their browsers for the dashboard's tests: a staff client that sends the CSRF
token as the dashboard's forms do, and a backend nobody answers on."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from devtools.processes import free_port


@pytest.fixture
def dead_backend(settings: Any) -> str:
    """A backend on a closed loopback port: scrapes fail at once, slots work (Redis)."""
    url = f"http://127.0.0.1:{free_port()}"
    settings.TGI_URLS = [url]
    settings.GENERATION_CONCURRENCY = 2
    settings.GPU_METRICS_URLS = []
    return url


def logged_in(*, staff: bool, csrf: bool = False) -> Client:
    user = get_user_model().objects.create_user(
        "operator" if staff else "visitor", password="unused-password", is_staff=staff
    )
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


@pytest.fixture
def operator(db: None) -> Client:
    """A staff browser that sends the CSRF token like the dashboard's forms do."""
    client = logged_in(staff=True, csrf=True)
    client.get("/ops/")  # the page with the forms sets the CSRF cookie
    client.token = client.cookies["csrftoken"].value  # type: ignore[attr-defined]
    return client


def post(
    client: Client, url: str, data: dict[str, Any] | None = None, *, confirmed: bool = True
) -> Any:
    """A control's form as the dashboard sends it: confirmed, unless told otherwise."""
    fields = {**(data or {}), "csrfmiddlewaretoken": client.token}  # type: ignore[attr-defined]
    if confirmed:
        fields["confirmed"] = "yes"
    return client.post(url, fields)
