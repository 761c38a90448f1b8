"""PRODUCTION=1: the settings a public deployment needs, proven on real processes.

Settings are read once per process, so production is started the way an operator would start
it: `manage.py` in a subprocess with a production environment. The Content-Security-Policy and
the WebSocket origin check apply in development too and are tested in this process.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_HOST = "play.example.com"
# Variables that change what production means; the test runner's own values must not leak in.
SECURITY_VARIABLES = (
    "DEBUG",
    "PRODUCTION",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "NUM_PROXIES",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "STATIC_ROOT",
    "DATABASE_URL",
)


def production_env(base: Path, **overrides: str | None) -> dict[str, str]:
    """What an operator sets (README, Deployment), with files under `base`."""
    env = {name: value for name, value in os.environ.items() if name not in SECURITY_VARIABLES}
    env.update(
        {
            "PRODUCTION": "1",
            "SECRET_KEY": secrets.token_urlsafe(48),  # 64 characters
            "ALLOWED_HOSTS": PUBLIC_HOST,
            "CSRF_TRUSTED_ORIGINS": f"https://{PUBLIC_HOST}",
            "NUM_PROXIES": "1",
            "DATABASE_URL": f"sqlite:///{base / 'db.sqlite3'}",
            # The test session's Redis (pages read the intake banner); loopback, never remote.
            "REDIS_URL": os.environ["REDIS_URL"],
            "TGI_URL": "http://127.0.0.1:9",  # nothing listens there: refused at once
            "VAR_DIR": str(base / "var"),
            "STATIC_ROOT": str(base / "static"),
        }
    )
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A production environment with its static files collected and its database migrated."""
    env = production_env(tmp_path_factory.mktemp("production"))
    for command in (("collectstatic", "--noinput"), ("migrate", "--noinput")):
        result = manage(env, *command)
        assert result.returncode == 0, result.stdout + result.stderr
    return env


# --- start-up refusals ------------------------------------------------------------------------


def test_production_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    env = production_env(tmp_path, SECRET_KEY=None)
    result = manage(env, "check")
    assert result.returncode != 0
    assert "SECRET_KEY is not set and PRODUCTION=1 requires it" in result.stderr
    assert not (tmp_path / "var" / "secret_key").exists(), "no generated-file fallback"


@pytest.mark.parametrize(
    "weak",
    [
        "too-short-" + "x" * 20,
        "django-insecure-" + secrets.token_urlsafe(48),
        "ab" * 40,
    ],
    ids=["short", "django-insecure", "few-distinct-characters"],
)
def test_production_refuses_a_weak_secret_key_without_printing_it(
    tmp_path: Path, weak: str
) -> None:
    result = manage(production_env(tmp_path, SECRET_KEY=weak), "check")
    assert result.returncode != 0
    assert "SECRET_KEY is too weak for PRODUCTION=1" in result.stderr
    assert weak not in result.stderr + result.stdout


def test_production_refuses_to_start_with_debug_on(tmp_path: Path) -> None:
    result = manage(production_env(tmp_path, DEBUG="1"), "check")
    assert result.returncode != 0
    assert "DEBUG=1 is refused with PRODUCTION=1" in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PRODUCTION", "maybe"),
        ("SECURE_HSTS_SECONDS", "-1"),
        ("SECURE_HSTS_SECONDS", "a year"),
        ("SECURE_SSL_REDIRECT", "sometimes"),
        ("SESSION_COOKIE_SECURE", "2"),
        ("SECURE_HSTS_PRELOAD", "yess"),
    ],
)
def test_a_misspelt_security_variable_stops_start_up_naming_it(
    tmp_path: Path, name: str, value: str
) -> None:
    result = manage(production_env(tmp_path, **{name: value}), "check")
    assert result.returncode != 0
    assert f"{name}={value!r} is invalid" in result.stderr


def test_the_development_default_hosts_are_refused_in_production(tmp_path: Path) -> None:
    result = manage(production_env(tmp_path, ALLOWED_HOSTS=None), "check")
    assert result.returncode != 0
    assert "playground.E002" in result.stderr


# --- the deployment check and static files ----------------------------------------------------


def production_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("### Production settings")
    return readme[start : readme.index("\n## ", start)]


def test_the_deployment_check_finds_nothing_to_warn_about(deployment: dict[str, str]) -> None:
    result = manage(deployment, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    # The only silenced checks are the ones the README justifies.
    silenced = re.search(r"\((\d+) silenced\)", result.stdout)
    count = int(silenced.group(1)) if silenced else 0
    assert count == len(django_settings.SILENCED_SYSTEM_CHECKS)
    section = production_section()
    for check_id in django_settings.SILENCED_SYSTEM_CHECKS:
        assert f"`{check_id}`" in section, f"{check_id} is silenced without a reason in README"


def test_the_deployment_check_asks_for_collectstatic_until_it_ran(tmp_path: Path) -> None:
    result = manage(production_env(tmp_path), "check", "--deploy")
    assert result.returncode == 0, result.stderr  # a warning, not an error
    assert "playground.W007" in result.stderr


def test_collectstatic_writes_hashed_and_compressed_files(deployment: dict[str, str]) -> None:
    static = Path(deployment["STATIC_ROOT"])
    manifest = json.loads((static / "staticfiles.json").read_text())["paths"]
    hashed = manifest["js/stream.js"]
    assert re.fullmatch(r"js/stream\.[0-9a-f]{12}\.js", hashed)
    assert (static / f"{hashed}.gz").is_file()
    # KaTeX's stylesheet names its fonts by their hashed names, and every one was collected.
    css = (static / manifest["vendor/katex/katex.min.css"]).read_text()
    fonts = re.findall(r"url\(\"?(fonts/[^\")]+)\"?\)", css)
    assert fonts
    for font in fonts:
        assert re.search(r"\.[0-9a-f]{12}\.(woff2?|ttf)$", font), font
        assert (static / "vendor/katex" / font).is_file(), font


# --- responses of a production process --------------------------------------------------------

REQUESTS = r"""
import json
from django.contrib.auth import get_user_model
from django.test import Client

HOST = "play.example.com"
report = {}

def describe(response, body=False):
    cookies = {
        name: {"secure": bool(morsel["secure"]), "httponly": bool(morsel["httponly"]),
               "samesite": morsel["samesite"]}
        for name, morsel in response.cookies.items()
    }
    found = {
        "status": response.status_code,
        "headers": {name.lower(): value for name, value in response.headers.items()},
        "cookies": cookies,
    }
    if body:
        found["body"] = response.content.decode()
    return found

proxied = Client(HTTP_HOST=HOST, HTTP_X_FORWARDED_PROTO="https")
report["home"] = describe(proxied.get("/"), body=True)
get_user_model().objects.create_superuser("ops", "ops@example.com", "operator-password")
proxied.get("/admin/login/")
report["login"] = describe(proxied.post(
    "/admin/login/", {"username": "ops", "password": "operator-password", "next": "/ops/"}
))
plain = Client(HTTP_HOST=HOST)
report["plain_home"] = describe(plain.get("/"))
report["plain_healthz"] = describe(plain.get("/healthz"))
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def served(deployment: dict[str, str]) -> dict[str, Any]:
    result = manage(deployment, "shell", "-v", "0", "-c", REQUESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_cookies_are_secure_only(served: dict[str, Any]) -> None:
    home = served["home"]
    assert home["status"] == 200
    assert home["cookies"]["csrftoken"]["secure"]
    assert home["cookies"]["sessionid"]["secure"]
    assert home["cookies"]["sessionid"]["httponly"]
    assert home["cookies"]["sessionid"]["samesite"] == "Lax"
    login = served["login"]
    assert login["status"] == 302, "the operator logged in"
    assert login["cookies"]["sessionid"]["secure"]


def test_production_sends_hsts_and_the_browser_protections(served: dict[str, Any]) -> None:
    headers = served["home"]["headers"]
    # A year; subdomains and preloading are the operator's choice (README).
    assert headers["strict-transport-security"] == "max-age=31536000"
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["cross-origin-opener-policy"] == "same-origin"
    policy = directives(headers["content-security-policy"])
    assert policy["connect-src"] == ["'self'", f"ws://{PUBLIC_HOST}", f"wss://{PUBLIC_HOST}"]


def test_plain_http_is_redirected_except_the_health_probes(served: dict[str, Any]) -> None:
    assert served["plain_home"]["status"] == 301
    assert served["plain_home"]["headers"]["location"] == f"https://{PUBLIC_HOST}/"
    assert "strict-transport-security" not in served["plain_home"]["headers"]
    assert served["plain_healthz"]["status"] == 200
    for probe in ("healthz", "readyz", "metrics"):
        assert any(re.match(pattern, probe) for pattern in django_settings.SECURE_REDIRECT_EXEMPT)


def test_pages_name_static_files_by_their_hashed_names(served: dict[str, Any]) -> None:
    scripts = re.findall(r'<script src="([^"]+)"', served["home"]["body"])
    assert scripts
    # The scripts' translations are a view, one per language, not a static file.
    assert scripts.count("/jsi18n/en/") == 1
    for src in scripts:
        if src != "/jsi18n/en/":
            assert re.fullmatch(r"/static/[\w/.-]+\.[0-9a-f]{12}\.js", src), src


# --- the Content-Security-Policy, in every mode -----------------------------------------------


def directives(policy: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        parsed[name] = sources
    return parsed


def test_every_page_gets_a_policy_without_inline_scripts(db: None, backend: str) -> None:
    response = Client().get("/")
    assert response.status_code == 200
    policy = directives(response["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"], "no <style> elements, only our stylesheets"
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]
    assert policy["connect-src"] == ["'self'", "ws://testserver", "wss://testserver"]
    unsafe = [f"{name} {source}" for name, sources in policy.items() for source in sources]
    assert [entry for entry in unsafe if "unsafe" in entry] == ["style-src-attr 'unsafe-inline'"]


def test_the_admin_login_page_has_no_inline_script_and_gets_the_policy(db: None) -> None:
    response = Client().get("/admin/login/")
    assert response.status_code == 200
    assert "script-src 'self';" in response["Content-Security-Policy"]
    for attributes in re.findall(r"<script\b([^>]*)>", response.content.decode()):
        assert re.search(r'\bsrc="/static/', attributes), attributes


def test_pages_carry_no_inline_script_or_event_handler(
    db: None, backend: str, visitor: Client, enqueued: list[str]
) -> None:
    response = visitor.post("/c/new", {"prompt": "Is 9.11 bigger than 9.9?"}, follow=True)
    for html in (Client().get("/").content.decode(), response.content.decode()):
        for attributes in re.findall(r"<script\b([^>]*)>", html):
            data = 'type="application/json"' in attributes
            ours = re.search(r'\bsrc="/(?:static/|jsi18n/en/")', attributes)
            assert data or ours, attributes
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", html), "inline event handler"
        assert "javascript:" not in html


def test_a_request_for_a_foreign_host_gets_the_policy_without_that_host(db: None) -> None:
    response = Client(HTTP_HOST="evil.example").get("/")
    assert response.status_code == 400
    policy = directives(response["Content-Security-Policy"])
    assert policy["connect-src"] == ["'self'"]


def test_static_files_get_the_policy_too(db: None) -> None:
    response = Client().get("/static/js/stream.js")
    assert response.status_code == 200
    assert "default-src 'self'" in response["Content-Security-Policy"]


# --- WebSocket origins ------------------------------------------------------------------------


def connects(origin: str | None) -> bool:
    """Whether the real ASGI application lets a WebSocket with this Origin reach the consumer."""
    from playground.asgi import application

    async def attempt() -> bool:
        headers = [(b"host", b"localhost:8000")]
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        socket = WebsocketCommunicator(application, "/ws/messages/nosuchmessage/", headers)
        connected, _ = await socket.connect(timeout=5)
        await socket.disconnect()
        return connected

    return asyncio.run(attempt())


@pytest.mark.django_db(transaction=True)
def test_a_websocket_from_another_sites_page_is_refused() -> None:
    assert not connects("https://evil.example")
    assert not connects("null")  # a sandboxed frame or a file:// page
    assert connects("http://localhost:8000")


@pytest.mark.django_db(transaction=True)
def test_websocket_origins_follow_allowed_hosts(settings: Any) -> None:
    settings.ALLOWED_HOSTS = [PUBLIC_HOST]
    assert connects(f"https://{PUBLIC_HOST}")
    assert not connects("http://localhost:8000")
    assert not connects(f"https://{PUBLIC_HOST}.evil.example")
    assert not connects(f"https://evil.{PUBLIC_HOST}")


@pytest.mark.django_db(transaction=True)
def test_a_websocket_without_origin_is_an_api_client_and_is_let_through() -> None:
    # Browsers always send Origin; a script that omits it could as well send a forged one.
    assert connects(None)
