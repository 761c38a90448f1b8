"""System checks for configuration that would only show up as odd behaviour later."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def check_playground_settings(app_configs: Any, **kwargs: Any) -> list[Any]:
    problems: list[Any] = []
    if not settings.REDIS_URL:
        problems.append(
            Warning(
                "REDIS_URL is not set.",
                hint="`make run` starts an embedded redis-server and sets it for you; "
                "in production point it at your Redis.",
                id="playground.W001",
            )
        )
    if not settings.TGI_URLS:
        problems.append(
            Warning(
                "TGI_URL is not set: no model backend is configured.",
                hint="`make run` starts the simulator when TGI_URL is unset; in production "
                "set TGI_URL to one or more comma-separated TGI base URLs.",
                id="playground.W002",
            )
        )
    if len(set(settings.TGI_URLS)) != len(settings.TGI_URLS):
        problems.append(Error("TGI_URL lists the same backend twice.", id="playground.E001"))
    if not settings.DEBUG and not settings.SECRET_KEY_FROM_ENV:
        problems.append(
            Warning(
                "SECRET_KEY is not set; a generated key stored in VAR_DIR is used.",
                hint="Set SECRET_KEY in production so every web process shares it.",
                id="playground.W003",
            )
        )
    return problems
