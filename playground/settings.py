"""Settings for Reflection Playground.

Every knob comes from an environment variable with a safe default; values are parsed strictly
(see ``playground/env.py``) so a typo stops the process at start-up with a clear message.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from playground.env import (
    env_backend_urls,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_networks,
    env_rate,
    env_str,
    env_urls_per_backend,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR") or BASE_DIR / "var")

# PRODUCTION=1 is the switch for a real deployment: it refuses to start without a real secret
# or with debug on, and turns on secure cookies, HTTPS redirects, HSTS and hashed static files
# (README, "Production settings"). Off, `make run` and `make test` work on a fresh machine.
PRODUCTION = env_bool("PRODUCTION", False)
DEBUG = env_bool("DEBUG", False)
if PRODUCTION and DEBUG:
    # Debug pages show settings and source to anyone who triggers an error; never in production.
    raise ImproperlyConfigured(
        "DEBUG=1 is refused with PRODUCTION=1: debug pages expose settings and source code. "
        "Unset DEBUG (or set DEBUG=0)."
    )

# Django's own deployment check (security.W009) asks the same of a key.
SECRET_KEY_MIN_LENGTH = 50
SECRET_KEY_MIN_UNIQUE_CHARACTERS = 5


def _production_secret_key(configured: str) -> str:
    how = (
        "Set SECRET_KEY to a random value of at least "
        f"{SECRET_KEY_MIN_LENGTH} characters, the same in every web and worker process, e.g. "
        "the output of: python -c 'import secrets; print(secrets.token_urlsafe(50))'."
    )
    if not configured:
        # No generated-file fallback: each replica would make its own key and log visitors out.
        raise ImproperlyConfigured(f"SECRET_KEY is not set and PRODUCTION=1 requires it. {how}")
    weak = (
        len(configured) < SECRET_KEY_MIN_LENGTH
        or len(set(configured)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
        or configured.startswith("django-insecure-")
    )
    if weak:
        # The value itself is never echoed: it may be a real secret that is merely too short.
        raise ImproperlyConfigured(
            f"SECRET_KEY is too weak for PRODUCTION=1 ({len(configured)} characters, "
            f"{len(set(configured))} distinct). {how}"
        )
    return configured


def _secret_key() -> str:
    configured = env_str("SECRET_KEY")
    if PRODUCTION:
        return _production_secret_key(configured)
    if configured:
        return configured
    # A fresh machine has no secret configured. Rather than ship a well-known key, keep a
    # random one next to the SQLite database so sessions survive restarts of `make run`.
    key_file = VAR_DIR / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    key_file.write_text(key)
    key_file.chmod(0o600)
    return key


SECRET_KEY = _secret_key()
SECRET_KEY_FROM_ENV = bool(env_str("SECRET_KEY"))

# The default serves `make run` on this machine only; production must name its public host(s)
# (a system check refuses the default there). WebSocket origins are checked against the same
# list (playground/asgi.py), so "*" would let any site's page open a visitor's streams.
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "playground",
]

MIDDLEWARE = [
    # First, so that every other middleware's log lines carry the request's id.
    "playground.logs.request_id_middleware",
    "django.middleware.security.SecurityMiddleware",
    # Before WhiteNoise, so static files (an SVG, say) get the policy too.
    "playground.security.content_security_policy_middleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "playground.ops.language.operators_in_english_middleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so it is the first to see a view's exception: an unreachable Redis answers 503.
    "playground.outage.RedisOutageMiddleware",
]

ROOT_URLCONF = "playground.urls"
ASGI_APPLICATION = "playground.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "playground.controls.banner_context",
            ],
        },
    },
]


# Requests one web process takes through middleware and views at once (playground/handlers.py):
# each takes a thread, and they share one interpreter lock, so a few is fastest for all.
WEB_VIEWS_AT_ONCE = env_int("WEB_VIEWS_AT_ONCE", 4, minimum=1, maximum=256)

# Connections each web or worker process may hold at once (PostgreSQL only): together, every
# process's pool must stay below the server's max_connections.
DATABASE_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 20, minimum=2, maximum=1000)


# Web, worker threads and tests write to SQLite concurrently: WAL lets readers proceed during a
# write and commits without waiting for the disk (a rollback journal synced every commit: 4 ms
# each, twice on the way to an idle visitor's first token), IMMEDIATE transactions avoid upgrade
# deadlocks, and the timeout absorbs bursts.
SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
}


def _database() -> dict:
    url = env_str("DATABASE_URL")
    if url:
        # No persistent connections: they were kept per thread, and under ASGI each request
        # used to run in a thread of its own, so a connection kept for reuse was never reused,
        # only left open; a rush of a hundred visitors exhausted PostgreSQL's max_connections.
        # A per-process pool instead lends a connection to a request or task and takes it back
        # when Django closes it.
        config = dj_database_url.parse(url, conn_max_age=0)
        if config["ENGINE"] == "django.db.backends.postgresql":
            config.setdefault("OPTIONS", {})["pool"] = {
                "min_size": 2,
                "max_size": DATABASE_POOL_SIZE,
                # Past this a request fails: long enough to ride out a burst, short enough
                # that a leak shows as an error, not as a hung site.
                "timeout": 30,
            }
        elif config["ENGINE"] == "django.db.backends.sqlite3":
            # A sqlite:// URL names the file; it needs the same settings as the default one.
            config["OPTIONS"] = {**SQLITE_OPTIONS, **config.get("OPTIONS", {})}
        return config
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": VAR_DIR / "db.sqlite3",
        "OPTIONS": dict(SQLITE_OPTIONS),
        "TEST": {"NAME": VAR_DIR / "test-db.sqlite3"},
    }


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

SESSION_COOKIE_AGE = 60 * 60 * 24 * 90
SESSION_SAVE_EVERY_REQUEST = False
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_FAILURE_VIEW = "playground.views.csrf_failure"

# Visitors' pages in English or Simplified Chinese: from Accept-Language, or the choice made
# with the switch in the header (a cookie, kept a year). Operators' pages stay in English.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGE_COOKIE_AGE = 60 * 60 * 24 * 365
LANGUAGE_COOKIE_SAMESITE = "Lax"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT") or BASE_DIR / "staticfiles")
# WhiteNoise warns about a missing root on every start; an empty one is harmless.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Serve straight from the source folders when nothing was collected (a fresh `make run`).
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG
if PRODUCTION:
    # `manage.py collectstatic` writes compressed files with content hashes in their names, so
    # WhiteNoise can let browsers cache them for a year; nothing is served from the source tree.
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "playground.storage.StaticFilesStorage"},
    }

# --- Redis, channels and Celery -------------------------------------------------------------
# `make run` and the test suite start an embedded redis-server and pass its URL here.
REDIS_URL = env_str("REDIS_URL")

CHANNEL_LAYERS = {
    "default": {
        # Pub/sub: a group message is one PUBLISH whatever the number of viewers, so a thousand
        # people watching one shared answer cost the publisher nothing extra. Messages missed
        # while disconnected are recovered from the persisted delta log (seq numbers).
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL or "redis://127.0.0.1:6379/0"]},
    }
}

CELERY_BROKER_URL = REDIS_URL
# Tasks are acknowledged on receipt. The database, not the broker, is the record of what is
# queued or running (services.reconcile requeues work whose worker vanished), so late acks
# would add nothing but a second, hour-late redelivery path; and kombu's redis transport
# crashes the worker when it must restore unacked messages after losing its connection.
CELERY_TASK_ACKS_LATE = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = "playground"
# Should a task ever be delivered twice, it finds its message already claimed (mark_running).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- The model backends and the queue in front of them ---------------------------------------
TGI_URLS = env_backend_urls("TGI_URL")
TGI_API_KEY = env_str("TGI_API_KEY") or None
TGI_CONNECT_TIMEOUT = env_float("TGI_CONNECT_TIMEOUT", 5.0, minimum=0.1)
TGI_READ_TIMEOUT = env_float("TGI_READ_TIMEOUT", 120.0, minimum=1.0)
# How long queued work waits out a backend outage before it is told plainly that it failed.
BACKEND_OUTAGE_PATIENCE = env_float("BACKEND_OUTAGE_PATIENCE", 120.0, minimum=0.0)
# A waiting visitor with no open stream and no poll for this long has left: their message is
# dropped from the line instead of taking a GPU slot nobody will read.
ABANDON_GRACE_SECONDS = env_float("ABANDON_GRACE_SECONDS", 60.0, minimum=1.0)
# A generation renews its slot lease while it runs; a dead worker's slot frees after this.
SLOT_LEASE_SECONDS = env_int("SLOT_LEASE_SECONDS", 30, minimum=2, maximum=3600)
GENERATION_CONCURRENCY = env_int("GENERATION_CONCURRENCY", 16, minimum=1, maximum=1024)
QUEUE_MAX_WAITING = env_int("QUEUE_MAX_WAITING", 500, minimum=1)
IP_MAX_ACTIVE = env_int("IP_MAX_ACTIVE", 3, minimum=1)
IP_RATE_LIMIT = env_rate("IP_RATE_LIMIT", "20/m")
# Stream sockets open at once from one client address, over all web processes: a visitor's
# page opens one per answer being written; a share link watched by an office behind one
# address needs more; a script opening hundreds is refused.
IP_MAX_WEBSOCKETS = env_int("IP_MAX_WEBSOCKETS", 50, minimum=1)
PROMPT_MAX_CHARS = env_int("PROMPT_MAX_CHARS", 4000, minimum=1)
# Fonts for shared conversations' link-preview pictures, first match first (missing files are
# skipped; Pillow's own Latin font comes last). The defaults are Debian's DejaVu Sans and
# WenQuanYi Micro Hei (Chinese), which the image installs.
PREVIEW_FONTS = tuple(
    env_list(
        "PREVIEW_FONTS",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf,"
        "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    )
)
MAX_NEW_TOKENS = env_int("MAX_NEW_TOKENS", 2048, minimum=1)
SYSTEM_PROMPT = env_str("SYSTEM_PROMPT") or None
# How often, at most, a generation publishes coalesced deltas. Tokens that arrive further apart
# than this go out at once; only bursts are merged, so the channel layer never floods.
STREAM_FLUSH_INTERVAL = env_float("STREAM_FLUSH_INTERVAL", 0.02, minimum=0.0, maximum=1.0)
# The most WebSocket frames one answer's deltas make in a second over all the sockets watching
# it: an answer watched by a crowd (a viral share link) is published less often, in larger
# deltas (realtime.crowds), so its viewers' delay stays short however many they are.
STREAM_CROWD_FRAMES_PER_SECOND = env_int(
    "STREAM_CROWD_FRAMES_PER_SECOND", 20_000, minimum=100, maximum=10_000_000
)
# Behind N reverse proxies, the client address is the N-th entry from the right of
# X-Forwarded-For. 0 means the header is ignored (it is trivially forged without a proxy).
NUM_PROXIES = env_int("NUM_PROXIES", 0, minimum=0, maximum=10)

# --- HTTPS, cookies and browser protections --------------------------------------------------
# Behind a proxy, the proxy terminates TLS and says so in X-Forwarded-Proto (it must set the
# header itself, overwriting a client's). Without a declared proxy the header is ignored, as
# X-Forwarded-For is. The Host header is passed through by the proxy, so USE_X_FORWARDED_HOST
# stays off (a forged X-Forwarded-Host could otherwise pick the host of redirects and links).
if NUM_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Plain HTTP is redirected to HTTPS, except the probes a container runtime or Prometheus sends
# to the process directly over the private network (no proxy, no TLS in between).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# HSTS: browsers that saw the site over HTTPS refuse plain HTTP to it for this long (a year).
# It is sent only on HTTPS responses. Subdomains and the preload list reach beyond this site
# (and preloading is hard to undo), so they are the operator's explicit choice.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if PRODUCTION else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Cookies only over HTTPS in production; `make run` serves plain HTTP on 127.0.0.1.
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", PRODUCTION)
SECURE_CONTENT_TYPE_NOSNIFF = True
# Share links carry their token in the path: never send a URL of ours to another site.
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Django's deployment check warns while HSTS leaves out subdomains (W005) or the preload list
# (W021). Both are deliberate defaults (README, "Production settings"); the variables above
# turn them on.
SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W021"]

# Sent on every response by playground/security.py, in development too, so a change that needs
# an inline script fails in the tests rather than in production. No inline scripts, no eval:
# every script is a file under static/. The page's own host is added to connect-src for its
# WebSocket (ws:/wss: of the same host). Style attributes are allowed for KaTeX's layout (see
# README); <style> elements are not.
CONTENT_SECURITY_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "style-src-attr": ["'unsafe-inline'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}

# --- Operators: the dashboard (/ops/), GPU metrics and the Prometheus endpoint --------------
# Per backend, in TGI_URL's order (or one for all): a DCGM exporter's /metrics. Unset: the
# simulator's simulated GPUs, and NVML when this process runs on the GPU host.
GPU_METRICS_URLS = env_urls_per_backend("GPU_METRICS_URL", TGI_URLS)
# Each backend and GPU endpoint gets this long; an unreachable one must not stall the page.
OPS_SCRAPE_TIMEOUT = env_float("OPS_SCRAPE_TIMEOUT", 1.5, minimum=0.1, maximum=10.0)
# /metrics answers a bearer token or a client address in these networks (either suffices).
METRICS_TOKEN = env_str("METRICS_TOKEN") or None
METRICS_ALLOWED_NETWORKS = env_networks("METRICS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")

# Conversations untouched for this many days are deleted by the daily purge (0 keeps them).
CONVERSATION_RETENTION_DAYS = env_int("CONVERSATION_RETENTION_DAYS", 30, minimum=0)

# `plain` for a terminal; `json` (production's compose file) writes one object per line for a
# log store. Either way each line carries the id of the request it belongs to (playground/logs.py).
LOG_FORMATTERS = {
    "plain": {"()": "playground.logs.PlainFormatter"},
    "json": {"()": "playground.logs.JsonFormatter"},
}
LOG_FORMAT = env_str("LOG_FORMAT").lower() or "plain"
if LOG_FORMAT not in LOG_FORMATTERS:
    raise ImproperlyConfigured(
        f"LOG_FORMAT={env_str('LOG_FORMAT')!r} is invalid: expected plain or json."
    )

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"chosen": LOG_FORMATTERS[LOG_FORMAT]},
    "filters": {"request_id": {"()": "playground.logs.RequestIdFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "chosen",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        # uvicorn sets up handlers and levels of its own before it loads the site; its lines
        # go through this handler instead, in the chosen format, at the chosen level.
        "uvicorn": {"handlers": ["console"], "propagate": False, "level": LOG_LEVEL},
        "uvicorn.access": {"handlers": ["console"], "propagate": False, "level": LOG_LEVEL},
    },
}
