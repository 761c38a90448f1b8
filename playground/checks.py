"""System checks for configuration that would only show up as odd behaviour later."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

# ALLOWED_HOSTS entries that only ever reach this machine (the development default).
LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}


@register(deploy=True)
def check_services_configured(app_configs: Any, **kwargs: Any) -> list[Any]:
    """Where the site's services are, for `check --deploy`. Not in every command's checks:
    beside `make run`, which sets Redis and the simulator up for its own processes only, a
    `manage.py createsuperuser` would warn about them to every newcomer."""
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
    if not settings.DEBUG and not settings.SECRET_KEY_FROM_ENV:
        problems.append(
            Warning(
                "SECRET_KEY is not set; a generated key stored in VAR_DIR is used.",
                hint="Set SECRET_KEY in production so every web process shares it.",
                id="playground.W003",
            )
        )
    return problems


@register()
def check_playground_settings(app_configs: Any, **kwargs: Any) -> list[Any]:
    problems: list[Any] = []
    if len(set(settings.TGI_URLS)) != len(settings.TGI_URLS):
        problems.append(Error("TGI_URL lists the same backend twice.", id="playground.E001"))
    on_postgresql = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    if on_postgresql and settings.WEB_VIEWS_AT_ONCE > settings.DATABASE_POOL_SIZE:
        problems.append(
            Warning(
                f"WEB_VIEWS_AT_ONCE ({settings.WEB_VIEWS_AT_ONCE}) is larger than "
                f"DATABASE_POOL_SIZE ({settings.DATABASE_POOL_SIZE}): requests admitted to the "
                "views would wait for a database connection, and fail after 30 s.",
                hint="Raise DATABASE_POOL_SIZE or lower WEB_VIEWS_AT_ONCE.",
                id="playground.W008",
            )
        )
    return problems


def _is_local(host: str) -> bool:
    return host.lower() in LOCAL_HOSTS or host.startswith("127.")


@register()
def check_production_settings(app_configs: Any, **kwargs: Any) -> list[Any]:
    """With PRODUCTION=1: the settings a public deployment cannot do without."""
    if not settings.PRODUCTION:
        return []
    problems: list[Any] = []
    if settings.DEBUG:
        problems.append(
            Error(
                "DEBUG is on with PRODUCTION=1.",
                hint="Debug pages show settings and source code to anyone; unset DEBUG.",
                id="playground.E004",
            )
        )
    hosts = settings.ALLOWED_HOSTS
    if all(_is_local(host) for host in hosts):
        problems.append(
            Error(
                "ALLOWED_HOSTS names only this machine (the development default) with "
                "PRODUCTION=1: every request to the public host would be refused with 400.",
                hint="Set ALLOWED_HOSTS to the public host name(s), e.g. play.example.com.",
                id="playground.E002",
            )
        )
    if "*" in hosts:
        problems.append(
            Error(
                "ALLOWED_HOSTS contains '*' with PRODUCTION=1.",
                hint="Name the public host(s): the Host header picks the host of redirects, "
                "and WebSocket origins are checked against this list, so '*' would let any "
                "site's page open a visitor's streams.",
                id="playground.E003",
            )
        )
    origins = settings.CSRF_TRUSTED_ORIGINS
    if not origins:
        problems.append(
            Warning(
                "CSRF_TRUSTED_ORIGINS is empty with PRODUCTION=1.",
                hint="Set it to the public origin(s), e.g. https://play.example.com, so form "
                "posts pass the CSRF origin check whatever the proxy forwards.",
                id="playground.W004",
            )
        )
    plain = [origin for origin in origins if not origin.lower().startswith("https://")]
    if plain:
        problems.append(
            Warning(
                f"CSRF_TRUSTED_ORIGINS trusts plain-HTTP origins with PRODUCTION=1: {plain}.",
                hint="A page served over plain HTTP can be altered on its way to the browser; "
                "trust only https:// origins.",
                id="playground.W005",
            )
        )
    if settings.SECURE_SSL_REDIRECT and not settings.NUM_PROXIES:
        problems.append(
            Warning(
                "SECURE_SSL_REDIRECT is on but NUM_PROXIES=0: no proxy is trusted to say a "
                "request came over HTTPS, so every request would be redirected, forever.",
                hint="Behind a TLS-terminating proxy set NUM_PROXIES (it must set "
                "X-Forwarded-Proto); if uvicorn terminates TLS itself, silence this check.",
                id="playground.W006",
            )
        )
    return problems


@register(Tags.staticfiles, deploy=True)
def check_static_files_collected(app_configs: Any, **kwargs: Any) -> list[Any]:
    """With PRODUCTION=1 pages name static files by their hashed names, read from the manifest
    collectstatic writes; without it every page fails."""
    if not settings.PRODUCTION:
        return []
    from django.contrib.staticfiles.storage import staticfiles_storage

    manifest = getattr(staticfiles_storage, "manifest_name", None)
    if manifest is None or staticfiles_storage.exists(manifest):
        return []
    return [
        Warning(
            f"Static files have not been collected into STATIC_ROOT ({settings.STATIC_ROOT}).",
            hint="Run `manage.py collectstatic --noinput` before starting the web processes.",
            id="playground.W007",
        )
    ]
