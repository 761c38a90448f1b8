"""The system checks of playground/checks.py: production misconfiguration is named at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from playground.checks import (
    check_playground_settings,
    check_production_settings,
    check_services_configured,
    check_static_files_collected,
)


def ids(problems: list[Any]) -> set[str]:
    return {problem.id for problem in problems}


@pytest.fixture
def production(settings: Any) -> Any:
    """Settings as a correct production deployment has them."""
    settings.PRODUCTION = True
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["play.example.com"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://play.example.com"]
    settings.NUM_PROXIES = 1
    settings.SECURE_SSL_REDIRECT = True
    return settings


def test_a_correct_production_configuration_passes(production: Any) -> None:
    assert check_production_settings(None) == []


def test_development_is_not_held_to_production_rules(settings: Any) -> None:
    settings.PRODUCTION = False
    settings.ALLOWED_HOSTS = ["localhost"]
    settings.CSRF_TRUSTED_ORIGINS = []
    assert check_production_settings(None) == []
    assert check_static_files_collected(None) == []


@pytest.mark.parametrize(
    "hosts", [["127.0.0.1", "localhost", "[::1]"], [], ["127.0.0.2"], ["LOCALHOST"]]
)
def test_production_refuses_hosts_that_only_reach_this_machine(
    production: Any, hosts: list[str]
) -> None:
    production.ALLOWED_HOSTS = hosts
    assert ids(check_production_settings(None)) == {"playground.E002"}


def test_production_refuses_any_host(production: Any) -> None:
    production.ALLOWED_HOSTS = ["play.example.com", "*"]
    assert ids(check_production_settings(None)) == {"playground.E003"}


def test_the_production_check_refuses_debug_on(production: Any) -> None:
    production.DEBUG = True
    assert ids(check_production_settings(None)) == {"playground.E004"}


def test_production_warns_without_trusted_origins(production: Any) -> None:
    production.CSRF_TRUSTED_ORIGINS = []
    assert ids(check_production_settings(None)) == {"playground.W004"}


def test_production_warns_about_a_plain_http_trusted_origin(production: Any) -> None:
    production.CSRF_TRUSTED_ORIGINS = ["https://play.example.com", "http://play.example.com"]
    [problem] = check_production_settings(None)
    assert problem.id == "playground.W005"
    assert "http://play.example.com" in problem.msg


def test_production_warns_that_a_redirect_without_a_proxy_loops(production: Any) -> None:
    production.NUM_PROXIES = 0
    assert ids(check_production_settings(None)) == {"playground.W006"}
    production.SECURE_SSL_REDIRECT = False  # e.g. the proxy redirects itself
    assert check_production_settings(None) == []


def test_the_deployment_check_asks_for_collected_static_files(
    production: Any, tmp_path: Path
) -> None:
    production.STATIC_ROOT = str(tmp_path)
    production.STORAGES = {
        **production.STORAGES,
        "staticfiles": {"BACKEND": "playground.storage.StaticFilesStorage"},
    }
    assert ids(check_static_files_collected(None)) == {"playground.W007"}
    (tmp_path / "staticfiles.json").write_text('{"paths": {}, "version": "1.1"}')
    assert check_static_files_collected(None) == []


@pytest.mark.parametrize(
    ("engine", "views_at_once", "named"),
    [("postgresql", 8, True), ("postgresql", 4, False), ("sqlite3", 8, False)],
)
def test_more_views_at_once_than_database_connections_is_named_on_postgresql(
    settings: Any, monkeypatch: pytest.MonkeyPatch, engine: str, views_at_once: int, named: bool
) -> None:
    # SQLite has no connection pool to run out of.
    monkeypatch.setitem(settings.DATABASES["default"], "ENGINE", f"django.db.backends.{engine}")
    settings.DATABASE_POOL_SIZE = 4
    settings.WEB_VIEWS_AT_ONCE = views_at_once

    assert ("playground.W008" in ids(check_playground_settings(None))) is named


def test_unset_services_are_named_by_the_deploy_check_only(settings: Any) -> None:
    from django.core.checks import run_checks

    settings.REDIS_URL = ""
    settings.TGI_URLS = []
    settings.DEBUG = False
    settings.SECRET_KEY_FROM_ENV = False
    named = {"playground.W001", "playground.W002", "playground.W003"}

    assert ids(check_services_configured(None)) == named
    # A command run beside `make run` (createsuperuser, say) does not warn about them.
    assert ids(run_checks()) & named == set()
    assert ids(run_checks(include_deployment_checks=True)) >= named
